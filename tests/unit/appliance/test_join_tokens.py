"""Join tokens: records do not pile up (deleted a day after expiry, used or not), and a used
token admits only a repeat of its own admission."""

from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from appliance.api.problems import ApiError
from appliance.bootstrap import OpenedNode
from appliance.cluster.hlc import HybridClock
from appliance.cluster.join import (
    ADMIT_RETRY_WINDOW,
    JOIN_TOKEN_KIND,
    USED_TOKEN_RETENTION,
    JoinRequest,
    JoinService,
    decode_token,
)
from appliance.identity import pki
from appliance.store.config import ConfigStore
from tests.unit.appliance.conftest import FakeClock


def test_expired_join_tokens_are_pruned_a_day_after_expiry(node: OpenedNode, clock: FakeClock) -> None:
    store = ConfigStore(node.db, HybridClock(node.node_id, clock), wall=clock)
    joins = JoinService(
        store=store, identity=node.identity, cluster_id=node.cluster_id, api_seeds=lambda: ["127.0.0.1:1"], clock=clock
    )
    short = joins.create_token(created_by="admin", ttl=60)
    long = joins.create_token(created_by="admin", ttl=3 * 24 * 3600)
    assert joins.prune() == 0
    clock.advance(60 + USED_TOKEN_RETENTION - 1)
    assert joins.prune() == 0  # expired, but kept a day so a late attempt is told why it fails
    clock.advance(2)
    assert joins.prune() == 1
    remaining = [key for key, _ in store.items(JOIN_TOKEN_KIND)]
    assert remaining == [long.id]
    assert store.entry(JOIN_TOKEN_KIND, short.id) is not None  # a tombstone, so other nodes delete it too


def admission(joins: JoinService, token: str, name: str, key: ec.EllipticCurvePrivateKey) -> JoinRequest:
    parsed = decode_token(token)
    csr = pki.new_csr(key, name).public_bytes(serialization.Encoding.PEM).decode()
    return JoinRequest(
        token_id=parsed.id, secret=parsed.secret, name=name, csr_pem=csr,
        gossip_address="192.0.2.20:7946", api_address="192.0.2.20:8443",
    )  # fmt: skip


def test_a_joiner_whose_answer_was_lost_is_admitted_again_but_nobody_else_is(
    node: OpenedNode, clock: FakeClock
) -> None:
    store = ConfigStore(node.db, HybridClock(node.node_id, clock), wall=clock)
    joins = JoinService(
        store=store, identity=node.identity, cluster_id=node.cluster_id, api_seeds=lambda: ["127.0.0.1:1"], clock=clock
    )
    token = joins.create_token(created_by="admin", ttl=60).token
    key = pki.new_key()
    request = admission(joins, token, "n7", key)
    members: set[str] = set()
    first = joins.admit(request, name_in_use=members.__contains__, gossip_seeds=[])
    members.add("n7")  # say it got as far as gossiping
    clock.advance(30)
    again = joins.admit(request, name_in_use=members.__contains__, gossip_seeds=[])  # the answer was lost
    for response in (first, again):
        cert = x509.load_pem_x509_certificate(response.node_cert_pem.encode())
        assert pki.public_keys_match(key, cert)
    # Another key under the same name, or another name, is refused: the token is used.
    for other in (admission(joins, token, "n7", pki.new_key()), admission(joins, token, "n8", key)):
        with pytest.raises(ApiError, match="already used"):
            joins.admit(other, name_in_use=members.__contains__, gossip_seeds=[])
    # And the repeat is allowed only for a while after the first admission.
    clock.advance(ADMIT_RETRY_WINDOW)
    with pytest.raises(ApiError, match="already used"):
        joins.admit(request, name_in_use=members.__contains__, gossip_seeds=[])
