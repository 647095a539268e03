"""Who a forwarded caller is, decided by the receiving node's records; token roles re-capped
at use; the audit entry's credential, forwarding node and source.

The app under test is node n1; assertions are signed by a member n2 whose certificate n1's
CA issued, as a real member's would be.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import msgspec
import pytest
from litestar.testing import TestClient

from appliance.api.forward import Forwarder
from appliance.app import Appliance
from appliance.audit.log import AuditQuery
from appliance.auth.permissions import Role
from appliance.auth.principal import CredentialKind, Principal
from appliance.bootstrap import OpenedNode
from appliance.identity import pki
from appliance.identity.store import NodeIdentity
from tests.kit.clock import FakeClock

PASSWORD = "correct horse battery"
SOURCE = "198.51.100.7"


@pytest.fixture
def member(node: OpenedNode, appliance: Appliance, clock: FakeClock) -> Forwarder:
    """Member n2 of n1's cluster, as far as signing assertions goes: its certificate is issued
    by n1's CA and recorded in n1's certificate registry, as a real member's would be."""
    ca_key = node.identity.ca_key
    assert ca_key is not None
    key = pki.new_key()
    now = dt.datetime.fromtimestamp(clock(), dt.UTC)
    cert = pki.issue_node_cert(ca_key, node.identity.ca_cert, key.public_key(), name="n2", addresses=[], now=now)
    appliance.cluster.registry.register(cert, issued_by="n1", now=clock())
    paths = node.identity.ca_cert_path
    identity = NodeIdentity("n2", node.identity.ca_cert, None, cert, key, paths, paths, paths)
    return Forwarder(
        identity=identity,
        member_api=lambda _n: None,
        refusal=lambda *_: None,
        accept_nonce=lambda *_: True,
        clock=clock,
    )


def vouch(
    member: Forwarder, user: str, claimed: Role, credential: tuple[CredentialKind, str], request: str
) -> dict[str, str]:
    """Headers of `request` ("METHOD /path") forwarded by n2 for `user` with `credential` (kind, id)."""
    method, path = request.split(" ")
    caller = Principal(user, claimed, credential[0], credential[1], False, source=SOURCE)
    return member._assertion_headers(caller, "n1", method, path)


def token_of(appliance: Appliance, owner: str, role: Role) -> str:
    record, _ = appliance.accounts.create_token(owner=owner, name="t", role=role, expires_at=None)
    return record.id


def demote_without_revoking(appliance: Appliance, name: str, role: Role) -> None:
    """The demoted user record as replication applies it before the tokens' revocations arrive."""
    record = appliance.accounts.user(name)
    assert record is not None
    appliance.accounts._save_user(msgspec.structs.replace(record, role=role))


def test_a_forged_role_claim_acts_as_the_tokens_real_role_and_is_audited(
    appliance: Appliance, anonymous: TestClient[Any], member: Forwarder
) -> None:
    appliance.accounts.create_user("watcher", Role.VIEWER, PASSWORD)
    token = token_of(appliance, "watcher", Role.VIEWER)
    listing = anonymous.get(
        "/api/v1/users", headers=vouch(member, "watcher", Role.ADMIN, ("token", token), "GET /api/v1/users")
    )
    assert listing.status_code == 403, listing.text
    assert "role viewer lacks permission users:manage" in listing.json()["detail"]
    body = {"name": "mallory", "role": "admin", "password": PASSWORD}
    headers = vouch(member, "watcher", Role.ADMIN, ("token", token), "POST /api/v1/users")
    created = anonymous.post("/api/v1/users", json=body, headers=headers)
    assert created.status_code == 403
    assert appliance.accounts.user("mallory") is None
    [entry] = appliance.audit.query(AuditQuery(action="user.create"), 10)
    assert (entry.user, entry.outcome, entry.forwarded_by, entry.credential, entry.source) == (
        "watcher", "denied", "n2", f"token:{token}", SOURCE
    )  # fmt: skip
    assert "role viewer lacks permission users:manage" in entry.detail


def test_a_forwarded_session_acts_with_the_users_current_role(
    appliance: Appliance, anonymous: TestClient[Any], member: Forwarder
) -> None:
    appliance.accounts.create_user("ops", Role.OPERATOR, PASSWORD)
    headers = vouch(member, "ops", Role.ADMIN, ("session", "s1"), "GET /api/v1/users")
    assert anonymous.get("/api/v1/users", headers=headers).status_code == 403
    headers = vouch(member, "ops", Role.ADMIN, ("session", "s1"), "GET /api/v1/auth/whoami")
    whoami = anonymous.get("/api/v1/auth/whoami", headers=headers).json()
    assert (whoami["user"], whoami["role"], whoami["via"]) == ("ops", "operator", "forwarded")


def test_a_lower_claimed_role_lowers_the_derived_one(
    appliance: Appliance, anonymous: TestClient[Any], member: Forwarder
) -> None:
    token = token_of(appliance, "admin", Role.ADMIN)
    headers = vouch(member, "admin", Role.VIEWER, ("token", token), "GET /api/v1/users")
    assert anonymous.get("/api/v1/users", headers=headers).status_code == 403
    headers = vouch(member, "admin", Role.ADMIN, ("token", token), "GET /api/v1/users")
    assert anonymous.get("/api/v1/users", headers=headers).status_code == 200


REFUSALS = {
    "unknown token": "unknown or revoked here",
    "someone else's token": "unknown or revoked here",
    "expired token": "has expired",
    "owner demoted": "exceeds its owner's current role viewer",
    "owner disabled": "owner no longer exists or is disabled",
    "unknown user": "does not exist or is disabled",
    "must change password": "must change their password",
}


@pytest.mark.parametrize("case", REFUSALS)
def test_forwarded_credentials_the_records_do_not_back_are_refused(
    appliance: Appliance, anonymous: TestClient[Any], member: Forwarder, clock: FakeClock, case: str
) -> None:
    appliance.accounts.create_user("ops", Role.OPERATOR, PASSWORD)
    appliance.accounts.create_user("other", Role.OPERATOR, PASSWORD)
    token = token_of(appliance, "ops", Role.OPERATOR)
    user, kind, credential = "ops", "token", token
    if case == "unknown token":
        credential = "feedfacefeedface"
    elif case == "someone else's token":
        user = "other"
    elif case == "expired token":
        record, _ = appliance.accounts.create_token(owner="ops", name="e", role=None, expires_at=clock() + 60)
        credential = record.id
        clock.advance(61)
    elif case == "owner demoted":
        demote_without_revoking(appliance, "ops", Role.VIEWER)
    elif case == "owner disabled":
        appliance.accounts.update_user("ops", enabled=False)  # keeps the token record
    elif case == "unknown user":
        user, kind = "nobody", "session"
    elif case == "must change password":
        appliance.accounts.set_password("ops", PASSWORD + "!", must_change=True)
        kind = "session"
    headers = vouch(member, user, Role.VIEWER, (kind, credential), "GET /api/v1/node")  # type: ignore[arg-type]
    refused = anonymous.get("/api/v1/node", headers=headers)
    assert refused.status_code == 401, refused.text
    assert REFUSALS[case] in refused.json()["detail"]


def test_a_token_outranking_its_demoted_owner_is_refused_at_direct_use(
    appliance: Appliance, anonymous: TestClient[Any]
) -> None:
    appliance.accounts.create_user("ops", Role.OPERATOR, PASSWORD)
    _, secret = appliance.accounts.create_token(owner="ops", name="ci", role=Role.OPERATOR, expires_at=None)
    bearer = {"Authorization": f"Bearer {secret}"}
    assert anonymous.get("/api/v1/node", headers=bearer).status_code == 200
    demote_without_revoking(appliance, "ops", Role.VIEWER)
    refused = anonymous.get("/api/v1/node", headers=bearer)
    assert refused.status_code == 401
    assert "role operator exceeds its owner's current role viewer" in refused.json()["detail"]
    # A token within the owner's new role keeps working.
    _, narrow = appliance.accounts.create_token(owner="ops", name="ro", role=Role.VIEWER, expires_at=None)
    assert anonymous.get("/api/v1/node", headers={"Authorization": f"Bearer {narrow}"}).status_code == 200


def test_direct_requests_record_their_credential(appliance: Appliance, anonymous: TestClient[Any]) -> None:
    record, secret = appliance.accounts.create_token(owner="admin", name="ci", role=None, expires_at=None)
    changed = anonymous.put("/api/v1/node", json={"description": "x"}, headers={"Authorization": f"Bearer {secret}"})
    assert changed.status_code == 200
    [entry] = appliance.audit.query(AuditQuery(action="put /api/v1/node"), 10)
    assert (entry.credential, entry.forwarded_by, entry.source) == (f"token:{record.id}", "", "testclient")
    assert appliance.audit.verify().bad_seq is None
