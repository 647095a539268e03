"""Forwarded identity is checked, not believed: attacks on a real two-node cluster.

Two real `debvisor serve` nodes in network namespaces. The attacker owns member n0: they
read its node key and certificate from its data dir and sign forwarding assertions of their
own, as n0's forwarder would, and send them to n1's API.

(a) A viewer's assertion claiming role admin acts as the viewer, and n1's audit trail shows
    the refused attempt with the forwarding node and the credential.
(b) An assertion n1 accepted, replayed after n1 restarts (within the freshness window), is
    refused: nonces survive the restart.
(c) An assertion made for n1 is refused at n0.
(d) An API token whose owner was demoted is refused at use, also on a node that has the
    demoted user record but not yet the token's revocation.
"""

from __future__ import annotations

import base64
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from appliance.api.forward import (
    ASSERTION_HEADER,
    CERT_HEADER,
    MAX_SKEW_SECONDS,
    SIGNATURE_HEADER,
    ForwardedIdentity,
)
from appliance.auth.accounts import USER_KIND
from appliance.auth.permissions import Role
from appliance.auth.types import UserRecord
from appliance.bootstrap import open_local_state
from appliance.identity import pki
from appliance.store.config import ConfigStore
from appliance.store.hlc import HybridClock
from tests.clusterlab import ClusterLab, ClusterNode, running_cluster
from tests.kit.wait import wait_until
from tests.nsclient import NamespaceClient

pytestmark = [pytest.mark.integration, pytest.mark.privileged]

PASSWORD = "a long enough password"
ATTACKER_SOURCE = "203.0.113.66"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterLab]:
    with running_cluster(tmp_path_factory, 2, label="forwarding") as cluster:
        yield cluster


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def forge(
    signer: ClusterNode, *, target: str, user: str, role: str, via: str, credential_id: str, request: str
) -> dict[str, str]:
    """Assertion headers for `request` ("METHOD /path"), signed with `signer`'s own key and
    certificate as read from its data dir (what an attacker who owns that node holds)."""
    pki_dir = signer.data_dir / "pki"
    key = pki.key_from_pem((pki_dir / "node.key").read_bytes())
    cert = pki.cert_from_pem((pki_dir / "node.crt").read_bytes())
    method, path = request.split(" ")
    claim = msgspec.json.encode(
        ForwardedIdentity(
            node=signer.name, target=target, user=user, role=Role(role), via=via,  # type: ignore[arg-type]
            credential_id=credential_id, source=ATTACKER_SOURCE, method=method, path=path,
            at=time.time(), nonce=secrets.token_hex(12),
        )
    )  # fmt: skip
    return {
        ASSERTION_HEADER: _b64(claim),
        SIGNATURE_HEADER: _b64(key.sign(claim, ec.ECDSA(hashes.SHA256()))),
        CERT_HEADER: _b64(cert.public_bytes(serialization.Encoding.DER)),
    }


def attacker_at(owned: ClusterNode, victim: ClusterNode) -> NamespaceClient:
    """A client without credentials, from the owned node's namespace to the victim's API."""
    return NamespaceClient(owned.host.netns, victim.url, owned.data_dir / "pki" / "ca.crt")


def token_id(secret: str) -> str:
    return secret.split("_")[1]


def user_with_token(node: ClusterNode, name: str, role: str) -> tuple[str, str]:
    """Create `name` with `role` through the admin API, log in as them, make an API token;
    return (token id, secret)."""
    created = node.client().post("/api/v1/users", json={"name": name, "role": role, "password": PASSWORD})
    assert created.status_code == 201, created.text

    def make(client: httpx.Client) -> dict[str, Any]:
        login = client.post("/api/v1/auth/login", json={"username": name, "password": PASSWORD})
        login.raise_for_status()
        made = client.post("/api/v1/tokens", json={"name": "t"}, headers={"X-CSRF-Token": login.json()["csrf_token"]})
        made.raise_for_status()
        return dict(made.json())

    with NamespaceClient(node.host.netns, node.url, node.data_dir / "pki" / "ca.crt") as browser:
        made = browser.call(make)
    return str(made["token"]["id"]), str(made["secret"])


def works_at(node: ClusterNode, secret: str) -> bool:
    with NamespaceClient(node.host.netns, node.url, node.data_dir / "pki" / "ca.crt", secret) as program:
        return program.get("/api/v1/node").status_code == 200


def test_a_forged_role_claim_acts_as_the_real_role_and_is_audited(cluster: ClusterLab) -> None:
    n0, n1 = cluster.nodes
    watcher_token, secret = user_with_token(n0, "watcher", "viewer")
    wait_until(lambda: works_at(n1, secret), timeout=15, interval=0.1)  # replicated to n1

    def as_admin(request: str, via: str = "token", credential: str = watcher_token) -> dict[str, str]:
        return forge(n0, target="n1", user="watcher", role="admin", via=via, credential_id=credential, request=request)

    with attacker_at(n0, n1) as attacker:
        listing = attacker.get("/api/v1/users", headers=as_admin("GET /api/v1/users"))
        assert listing.status_code == 403, listing.text
        assert "role viewer lacks permission users:manage" in listing.json()["detail"]
        body = {"name": "mallory", "role": "admin", "password": PASSWORD}
        created = attacker.post("/api/v1/users", json=body, headers=as_admin("POST /api/v1/users"))
        assert created.status_code == 403, created.text
        # Claiming a session (which n1 cannot check) gets no more than the user's own role.
        by_session = attacker.post("/api/v1/users", json=body, headers=as_admin("POST /api/v1/users", "session", "s"))
        assert by_session.status_code == 403, by_session.text
        whoami = attacker.get("/api/v1/auth/whoami", headers=as_admin("GET /api/v1/auth/whoami")).json()
        assert (whoami["user"], whoami["role"]) == ("watcher", "viewer")
    assert n1.client().get("/api/v1/users/mallory").status_code == 404
    assert n0.client().get("/api/v1/users/mallory").status_code == 404

    audit = n1.client().get("/api/v1/audit", params={"action": "user.create", "user": "watcher"}).json()
    attempts = [(e["node"], e["outcome"], e["forwarded_by"], e["credential"], e["source"]) for e in audit["entries"]]
    assert attempts == [
        ("n1", "denied", "n0", f"token:{watcher_token}", ATTACKER_SOURCE),
        ("n1", "denied", "n0", "session:s", ATTACKER_SOURCE),
    ]
    assert all("lacks permission users:manage" in e["detail"] for e in audit["entries"])


def test_an_accepted_assertion_replayed_after_a_restart_is_refused(cluster: ClusterLab) -> None:
    n0, n1 = cluster.nodes
    assert n0.token is not None
    captured = forge(
        n0, target="n1", user="admin", role="admin", via="token", credential_id=token_id(n0.token),
        request="GET /api/v1/nodes/n1",
    )  # fmt: skip
    made = time.monotonic()
    with attacker_at(n0, n1) as attacker:
        first = attacker.get("/api/v1/nodes/n1", headers=captured)
        assert first.status_code == 200, first.text  # the real request, accepted once
        assert attacker.get("/api/v1/nodes/n1", headers=captured).status_code == 401
    n1.stop()
    n1.start()
    n1.wait_ready()
    with attacker_at(n0, n1) as attacker:
        replayed = attacker.get("/api/v1/nodes/n1", headers=captured)
        assert time.monotonic() - made < MAX_SKEW_SECONDS, "the restart took longer than the freshness window"
        assert replayed.status_code == 401, replayed.text
        assert "replayed" in replayed.json()["detail"]
        fresh = forge(
            n0, target="n1", user="admin", role="admin", via="token", credential_id=token_id(n0.token),
            request="GET /api/v1/nodes/n1",
        )  # fmt: skip
        assert attacker.get("/api/v1/nodes/n1", headers=fresh).status_code == 200
    # Real forwarding through n0 reaches the restarted n1 again (its answering certificate passes).
    wait_until(lambda: n0.client().get("/api/v1/nodes/n1").status_code == 200, timeout=15, interval=0.1)


def test_an_assertion_for_one_node_is_refused_at_another(cluster: ClusterLab) -> None:
    n0, n1 = cluster.nodes
    assert n0.token is not None
    for_n1 = forge(
        n0, target="n1", user="admin", role="admin", via="token", credential_id=token_id(n0.token),
        request="GET /api/v1/node",
    )  # fmt: skip
    with attacker_at(n0, n0) as attacker:
        elsewhere = attacker.get("/api/v1/node", headers=for_n1)
    assert elsewhere.status_code == 401
    assert "is for node 'n1', not this node ('n0')" in elsewhere.json()["detail"]
    with attacker_at(n0, n1) as attacker:
        assert attacker.get("/api/v1/node", headers=for_n1).json()["name"] == "n1"  # valid where it belongs


def _demote_in_database(data_dir: Path, name: str, role: Role) -> None:
    """Write `name`'s record demoted into a node's database the way replication applies a
    change from a peer, without the token revocations that go with a demotion."""
    state = open_local_state(data_dir)
    try:
        store = ConfigStore(state.db, HybridClock(state.node_id))
        record = msgspec.json.decode(dict(store.items(USER_KIND))[name], type=UserRecord)
        store.put(USER_KIND, name, msgspec.json.encode(msgspec.structs.replace(record, role=role)))
    finally:
        state.close()


def test_a_token_whose_owner_was_demoted_is_refused_at_use(cluster: ClusterLab) -> None:
    n0, n1 = cluster.nodes
    # Through the API: the demotion revokes the token everywhere.
    _, secret = user_with_token(n0, "ops", "operator")
    wait_until(lambda: works_at(n1, secret), timeout=15, interval=0.1)
    assert n0.client().patch("/api/v1/users/ops", json={"role": "viewer"}).status_code == 200
    assert not works_at(n0, secret)
    wait_until(lambda: not works_at(n1, secret), timeout=15, interval=0.1)

    # The demoted record arrived at n1 before the token's revocation (or never will): the
    # token is refused by its owner's current role, not by a revocation.
    ops2_token, secret2 = user_with_token(n0, "ops2", "operator")
    wait_until(lambda: works_at(n1, secret2), timeout=15, interval=0.1)
    _demote_in_database(n1.data_dir, "ops2", Role.VIEWER)

    def refused_at_n1() -> bool:
        with NamespaceClient(n1.host.netns, n1.url, n1.data_dir / "pki" / "ca.crt", secret2) as program:
            response = program.get("/api/v1/node")
        return response.status_code == 401 and "exceeds its owner's current role viewer" in response.json()["detail"]

    wait_until(refused_at_n1, timeout=10, interval=0.1)
    tokens = n1.client().get("/api/v1/tokens", params={"all": "true"})
    assert ops2_token in tokens.text  # not revoked: the cap refused it
