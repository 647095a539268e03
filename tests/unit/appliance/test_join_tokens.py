"""Join tokens: records do not pile up (deleted a day after expiry, used or not), a used
token admits only a repeat of its own admission, only the issuing node redeems a token, and
an admission hands out a registered certificate and never the CA key."""

from __future__ import annotations

import dataclasses

import msgspec
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from litestar.testing import TestClient

from appliance.api.problems import ApiError
from appliance.app import Appliance
from appliance.auth.permissions import Role
from appliance.bootstrap import OpenedNode
from appliance.cluster.authority import FOUNDER_SLOTS_KEY, Authorities
from appliance.cluster.join import (
    ADMIT_RETRY_WINDOW,
    JOIN_TOKEN_KIND,
    USED_TOKEN_RETENTION,
    JoinRequest,
    JoinService,
    decode_token,
)
from appliance.identity import pki
from appliance.identity.registry import CertRegistry
from appliance.store.config import ConfigStore
from appliance.store.hlc import HybridClock
from tests.kit.clock import FakeClock
from tests.unit.appliance.conftest import BASE

JOIN_TOKENS = "/api/v1/cluster/join-tokens"


def service(node: OpenedNode, store: ConfigStore, clock: FakeClock, *, name: str | None = None) -> JoinService:
    identity = node.identity if name is None else dataclasses.replace(node.identity, name=name)
    return JoinService(
        store=store, db=node.db, identity=identity, cluster_id=node.cluster_id,
        api_seeds=lambda: ["127.0.0.1:1"], clock=clock,
    )  # fmt: skip


def test_expired_join_tokens_are_pruned_a_day_after_expiry(node: OpenedNode, clock: FakeClock) -> None:
    store = ConfigStore(node.db, HybridClock(node.node_id, clock), wall=clock)
    joins = service(node, store, clock)
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
    joins = service(node, store, clock)
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


def test_an_admission_answers_without_the_ca_key_and_registers_the_certificate(
    node: OpenedNode, clock: FakeClock
) -> None:
    store = ConfigStore(node.db, HybridClock(node.node_id, clock), wall=clock)
    joins = service(node, store, clock)
    names = ["j1", "j2", "j3"]
    answers = []
    for name in names:
        token = joins.create_token(created_by="admin", ttl=60).token
        answers.append(
            joins.admit(admission(joins, token, name, pki.new_key()), name_in_use=lambda _: False, gossip_seeds=[])
        )
    raw = msgspec.json.encode(answers[0])
    assert b"PRIVATE KEY" not in raw
    assert b"ca_key" not in raw
    registry = CertRegistry(store)
    for name, answer in zip(names, answers, strict=True):
        cert = x509.load_pem_x509_certificate(answer.node_cert_pem.encode())
        record = registry.get(pki.fingerprint(cert))
        assert record is not None
        assert record.name == name
        assert record.issued_by == node.name
        assert registry.refusal(pki.fingerprint(cert), name, clock()) is None
    # The registry reaches the new node with its answer, so it accepts its seeds at once.
    assert any(e.kind == "cert" for e in answers[-1].config)
    # By default the founder and the next two nodes are the authorities; the third joiner is not.
    assert Authorities(store, node.identity.ca_cert, node.cluster_id).names() == sorted([node.name, "j1", "j2"])


def test_a_token_is_redeemed_only_at_the_node_that_issued_it(node: OpenedNode, clock: FakeClock) -> None:
    store = ConfigStore(node.db, HybridClock(node.node_id, clock), wall=clock)
    issuer = service(node, store, clock)
    token = issuer.create_token(created_by="admin", ttl=60).token
    elsewhere = service(node, store, clock, name="other-node")  # the record arrived there by gossip
    with pytest.raises(ApiError, match=f"only at node '{node.name}'") as refused:
        elsewhere.admit(admission(elsewhere, token, "n9", pki.new_key()), name_in_use=lambda _: False, gossip_seeds=[])
    assert refused.value.status_code == 409


def test_single_use_is_decided_by_the_issuers_database_not_the_replicated_record(
    node: OpenedNode, clock: FakeClock
) -> None:
    store = ConfigStore(node.db, HybridClock(node.node_id, clock), wall=clock)
    joins = service(node, store, clock)
    created = joins.create_token(created_by="admin", ttl=60)
    unused = store.get(JOIN_TOKEN_KIND, created.id)
    assert unused is not None
    joins.admit(admission(joins, created.token, "n5", pki.new_key()), name_in_use=lambda _: False, gossip_seeds=[])
    # A stale copy of the record (without "used") wins a merge: the token still stays used.
    store.put(JOIN_TOKEN_KIND, created.id, unused)
    with pytest.raises(ApiError, match="already used"):
        joins.admit(admission(joins, created.token, "n6", pki.new_key()), name_in_use=lambda _: False, gossip_seeds=[])


def test_a_node_without_the_ca_key_issues_no_tokens_and_admits_nobody(node: OpenedNode, clock: FakeClock) -> None:
    store = ConfigStore(node.db, HybridClock(node.node_id, clock), wall=clock)
    keys = [node.identity.ca_key]
    joins = JoinService(
        store=store, db=node.db, identity=node.identity, cluster_id=node.cluster_id,
        api_seeds=lambda: ["127.0.0.1:1"], ca_key=lambda: keys[0], clock=clock,
    )  # fmt: skip
    token = joins.create_token(created_by="admin", ttl=60).token
    keys[0] = None  # taken out of the authority set: the key was deleted
    with pytest.raises(ApiError, match="not a certificate authority"):
        joins.create_token(created_by="admin", ttl=60)
    with pytest.raises(ApiError, match="no longer a certificate authority"):
        joins.admit(admission(joins, token, "n4", pki.new_key()), name_in_use=lambda _: False, gossip_seeds=[])


def test_only_the_founder_designates_by_default_and_only_its_first_two_joiners(
    node: OpenedNode, clock: FakeClock
) -> None:
    """The count is the founder's own (node_meta): a shrunken replicated set is not refilled."""
    store = ConfigStore(node.db, HybridClock(node.node_id, clock), wall=clock)
    joins = service(node, store, clock)
    authorities = Authorities(store, node.identity.ca_cert, node.cluster_id)

    def join(name: str) -> None:
        token = joins.create_token(created_by="admin", ttl=60).token
        joins.admit(admission(joins, token, name, pki.new_key()), name_in_use=lambda _: False, gossip_seeds=[])

    for name in ("a1", "a2", "a3"):
        join(name)
    assert authorities.names() == sorted([node.name, "a1", "a2"])
    # A member deletes designations (the map replicates its tombstones): the set has one entry,
    # and the next joiners are still ordinary nodes.
    authorities.withdraw("a1")
    authorities.withdraw("a2")
    join("a4")
    assert authorities.names() == [node.name]
    # Another authority (a node whose node_meta has no founder count) never designates.
    node.db.set_meta(FOUNDER_SLOTS_KEY, "0")
    other = service(node, store, clock, name="a1")
    token = other.create_token(created_by="admin", ttl=60).token
    other.admit(admission(other, token, "a5", pki.new_key()), name_in_use=lambda _: False, gossip_seeds=[])
    assert authorities.names() == [node.name]


def test_only_admins_create_join_tokens_and_a_refusal_carries_no_token(appliance: Appliance) -> None:
    """docs/security.md's role matrix: `cluster:manage` (join tokens) is admin-only. An operator's
    token gets a problem without a `token` field, so the docs' `jq -er .token` fails instead of
    keeping `null` as a machine's join token; an admin's gets a `dvj_` token."""
    with TestClient(appliance.asgi, base_url=BASE) as api:
        for role in (Role.OPERATOR, Role.VIEWER, Role.DEVELOPER):
            _, secret = appliance.accounts.create_token(owner="admin", name=str(role), role=role, expires_at=None)
            refused = api.post(JOIN_TOKENS, json={}, headers={"Authorization": f"Bearer {secret}"})
            assert refused.status_code == 403, (role, refused.text)
            assert refused.headers["content-type"].startswith("application/problem+json")
            assert "token" not in refused.json()
        _, secret = appliance.accounts.create_token(owner="admin", name="admin", role=Role.ADMIN, expires_at=None)
        created = api.post(JOIN_TOKENS, json={}, headers={"Authorization": f"Bearer {secret}"})
        assert created.status_code == 201, created.text
        assert created.json()["token"].startswith("dvj_")
