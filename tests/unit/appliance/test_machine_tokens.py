"""Join tokens for approved PXE machines: who makes them, the internal route an authority
answers for other members (signed calls only), and what it records."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import time
from collections.abc import Iterator
from typing import Any

import pytest
from litestar.testing import TestClient

from appliance.app import Appliance, create_app
from appliance.audit.log import AuditQuery
from appliance.bootstrap import OpenedNode
from appliance.cli_client import machine_state
from appliance.cluster.join import JoinService, decode_token
from appliance.cluster.machine_tokens import (
    MACHINE_TOKEN_PATH,
    MachineTokens,
    NoAuthority,
    live_authorities,
    machine_created_by,
)
from appliance.cluster.nodeauth import NodeCaller, sign_headers
from appliance.identity import pki
from appliance.settings import AuthSettings
from appliance.store.config import ConfigStore
from appliance.store.hlc import HybridClock
from tests.unit.appliance.conftest import BASE, FakeHost

MAC = "52:54:00:aa:bb:01"


def test_the_token_record_names_the_machine_its_approver_and_the_asking_node() -> None:
    assert machine_created_by(MAC, "alice", None) == f"pxe:{MAC} approved by alice"
    assert machine_created_by(MAC, "policy", "rack1-n4") == f"pxe:{MAC} approved by policy via rack1-n4"
    for mac, approver in (
        (MAC.upper(), "alice"),
        ("52:54:00:aa:bb", "alice"),
        (MAC, ""),
        (MAC, "a\nb"),
        (MAC, "Alice; drop"),
        (MAC, "x" * 65),
    ):
        with pytest.raises(ValueError, match=r"^(mac|approver): "):
            machine_created_by(mac, approver, "n1")


def test_only_alive_key_holders_other_than_this_node_are_asked() -> None:
    members = {
        "n0": ("alive", "10.0.0.10:8443"),  # this node
        "n1": ("alive", "10.0.0.11:8443"),
        "n2": ("dead", "10.0.0.12:8443"),
        "n3": ("suspect", "10.0.0.13:8443"),  # may be gone: a join there could fail
        "n4": ("alive", ""),  # announced no API address
    }
    assert live_authorities(["n0", "n1", "n2", "n3", "n4", "n5"], "n0", members.get) == [("n1", "10.0.0.11:8443")]
    assert live_authorities([], "n0", members.get) == []


def _joins(node: OpenedNode, *, authority: bool) -> JoinService:
    return JoinService(
        store=ConfigStore(node.db, HybridClock(node.node_id)),
        db=node.db,
        identity=node.identity,
        cluster_id=node.cluster_id,
        api_seeds=lambda: ["192.0.2.10:8443"],
        ca_key=lambda: node.identity.ca_key if authority else None,
    )


def test_an_authority_makes_the_token_itself_and_another_node_waits_when_none_is_alive(node: OpenedNode) -> None:
    caller = NodeCaller(node.identity)
    here = MachineTokens(
        joins=_joins(node, authority=True), holders=lambda: [], member_api=lambda _: None, caller=caller, ttl=900
    )
    created = asyncio.run(here.issue(MAC, "alice"))
    assert decode_token(created.token).seeds == ["192.0.2.10:8443"]
    assert created.expires_at - time.time() == pytest.approx(900, abs=5)

    elsewhere = MachineTokens(
        joins=_joins(node, authority=False),
        holders=lambda: ["n7"],
        member_api=lambda _: ("dead", "192.0.2.17:8443"),
        caller=caller,
        ttl=900,
    )
    with pytest.raises(NoAuthority, match=r"waiting for a certificate authority: none is alive \(authorities: n7\)"):
        asyncio.run(elsewhere.issue(MAC, "alice"))


@pytest.fixture
def app(node: OpenedNode) -> Appliance:
    return create_app(node, host=FakeHost(), auth=AuthSettings(rate_limit=0))


@pytest.fixture
def anonymous(app: Appliance) -> Iterator[TestClient[Any]]:
    with TestClient(app.asgi, base_url=BASE) as client:
        yield client


def _signed(cert: Any, key: Any, body: bytes) -> dict[str, str]:
    headers = sign_headers(cert, key, method="POST", path=MACHINE_TOKEN_PATH, body=body, now=time.time())
    return headers | {"content-type": "application/json"}


def test_the_route_answers_a_registered_member_and_audits_the_token(
    anonymous: TestClient[Any], app: Appliance, node: OpenedNode
) -> None:
    body = b'{"mac": "52:54:00:aa:bb:01", "approver": "alice"}'
    # The node's own certificate is registered (at founding): a member's signed call.
    answer = anonymous.post(
        MACHINE_TOKEN_PATH, content=body, headers=_signed(node.identity.node_cert, node.identity.node_key, body)
    )
    assert answer.status_code == 201, answer.text
    created = answer.json()
    assert created["token"].startswith("dvj_")
    assert created["issuer"] == "n1"
    [entry] = [e for e in app.audit.query(AuditQuery(action="cluster.token.create"), 100) if e.outcome == "success"]
    assert (entry.user, entry.target) == ("node:n1", f"join token {created['id']}")
    assert entry.detail == f"for PXE machine {MAC} approved by alice, asked by node n1; valid 900 s"
    assert created["token"] not in str(app.audit.query(AuditQuery(), 1000))


def test_the_route_refuses_unsigned_unregistered_and_malformed_calls(
    anonymous: TestClient[Any], app: Appliance, node: OpenedNode
) -> None:
    body = b'{"mac": "52:54:00:aa:bb:01", "approver": "alice"}'
    unsigned = anonymous.post(MACHINE_TOKEN_PATH, content=body, headers={"content-type": "application/json"})
    assert unsigned.status_code == 401
    # A certificate the CA signed that was never registered (someone with a copy of the CA key).
    key = pki.new_key()
    assert node.identity.ca_key is not None
    minted = pki.issue_node_cert(
        node.identity.ca_key, node.identity.ca_cert, key.public_key(), name="rogue",
        addresses=[ipaddress.ip_address("192.0.2.66")], now=dt.datetime.now(dt.UTC),
    )  # fmt: skip
    refused = anonymous.post(MACHINE_TOKEN_PATH, content=body, headers=_signed(minted, key, body))
    assert refused.status_code == 401
    assert "not registered" in refused.json()["detail"]
    bad = b'{"mac": "52:54:00:AA:BB:01; rm", "approver": "alice"}'
    malformed = anonymous.post(
        MACHINE_TOKEN_PATH, content=bad, headers=_signed(node.identity.node_cert, node.identity.node_key, bad)
    )
    assert malformed.status_code == 422
    entries = app.audit.query(AuditQuery(action="cluster.token.create"), 100)
    assert [(e.user, e.outcome) for e in entries] == [("node:?", "denied"), ("node:?", "denied"), ("node:n1", "denied")]


def test_the_cli_machine_list_says_when_an_approved_machine_waits_for_an_authority() -> None:
    waiting = {"state": "approved", "enrolment": {"waiting": "waiting for a certificate authority: none is alive"}}
    assert machine_state(waiting) == "approved (waiting for a certificate authority)"
    assert machine_state({"state": "approved", "enrolment": {"waiting": None}}) == "approved"
    assert machine_state({"state": "unknown", "enrolment": None}) == "unknown"
