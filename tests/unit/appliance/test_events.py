"""The event bus (isolation, bounded queues, resume) and the events WebSocket's gate, in process."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from litestar.exceptions import WebSocketDisconnect
from litestar.testing import TestClient

from appliance.app import Appliance
from appliance.audit.chain import AuditEntry
from appliance.auth import access
from appliance.auth.permissions import EVENT_PERMISSIONS, Role
from appliance.bootstrap import OpenedNode
from appliance.cluster.messages import StateEntry
from appliance.cluster.nodestate import NodeStateStore
from appliance.events import sources
from appliance.events.bus import EventBus
from appliance.events.controller import parse_since
from appliance.events.types import (
    TYPE_NAMES,
    AuditAppended,
    ConfigChanged,
    Event,
    FactsChanged,
    NetworkChanged,
    PxeEnlisted,
)
from appliance.store.config import ConfigStore
from appliance.store.hlc import HybridClock
from tests.unit.appliance.conftest import BASE, admin_token


def test_every_event_type_has_a_permission() -> None:
    assert set(EVENT_PERMISSIONS) == TYPE_NAMES


async def test_a_raising_subscriber_never_breaks_a_replication_merge(node: OpenedNode) -> None:
    bus = EventBus("n1")
    store = ConfigStore(node.db, HybridClock("n1-id", lambda: 1_800_000_000.0))
    store.on_change(sources.config_listener(bus, lambda kind, key: store.get(kind, key) is None))
    seen: list[Event] = []

    def broken(event: Event) -> None:
        raise RuntimeError("a reconciler bug")

    def broken_listener(kind: str, key: str, local: bool) -> None:
        raise RuntimeError("a listener bug")

    bus.subscribe(broken, [ConfigChanged], name="broken")
    bus.subscribe(seen.append, [ConfigChanged], name="good")
    store.on_change(broken_listener)  # a synchronous listener that raises is isolated too
    bus.start()
    try:
        remote = HybridClock("n2-id", lambda: 1_800_000_001.0).now().encode()
        assert store.merge("user", "alice", b"{}", remote) is True
        assert store.get("user", "alice") == b"{}"  # applied, whatever the listeners did
        for _ in range(100):
            if seen:
                break
            await asyncio.sleep(0.01)
        assert [(e.kind, e.key, e.local) for e in seen if isinstance(e, ConfigChanged)] == [("user", "alice", False)]
        assert bus.handler_errors == 1
        assert seen[0].permission == "audit:read"
        assert seen[0].node == "n1"
        assert seen[0].id > 0
    finally:
        await bus.stop()


def test_a_slow_subscription_lags_without_slowing_the_publisher_or_others() -> None:
    bus = EventBus("n1", ring_size=8)
    slow = bus.stream(maxsize=3)
    fast = bus.stream(maxsize=100)
    for i in range(20):
        bus.publish(FactsChanged(owner="n1", keys=[str(i)]))
    assert slow.lagged
    assert not fast.lagged
    ids = [e.id for e in fast._items]
    assert len(ids) == 20
    assert ids == sorted(ids)
    assert len(set(ids)) == 20
    held, complete = bus.since(ids[15])
    assert [e.id for e in held] == ids[16:]
    assert complete
    held, complete = bus.since(ids[2])  # pushed out of the 8-event ring
    assert not complete
    assert parse_since(["n1:5", "n-2:7"]) == {"n1": 5, "n-2": 7}


def _token(appliance: Appliance, role: Role) -> str:
    appliance.accounts.create_user(f"u-{role.value}", role, "a long enough password")
    _, secret = appliance.accounts.create_token(owner=f"u-{role.value}", name="ws", role=None, expires_at=None)
    return secret


def _read_until(socket: Any, wanted: str, limit: int = 50) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    for _ in range(limit):
        for line in socket.receive_text().splitlines():
            seen.append(json.loads(line))
        if any(m["type"] == wanted for m in seen):
            return seen
    raise AssertionError(f"no {wanted} message in {seen}")


def test_unauthenticated_and_unprivileged_upgrades_are_refused(appliance: Appliance) -> None:
    with TestClient(appliance.asgi, base_url=BASE) as client:
        with pytest.raises(WebSocketDisconnect) as refused, client.websocket_connect("/api/v1/events"):
            pass
        assert refused.value.code == 4401
        with (
            pytest.raises(WebSocketDisconnect) as refused,
            client.websocket_connect("/api/v1/events", headers={"Authorization": "Bearer nonsense"}),
        ):
            pass
        assert refused.value.code == 4401
        # The member stream answers only a signed node call.
        with pytest.raises(WebSocketDisconnect) as refused, client.websocket_connect("/api/v1/cluster/internal/events"):
            pass
        assert refused.value.code == 4401


def test_a_viewer_never_receives_audit_events(appliance: Appliance) -> None:
    viewer = _token(appliance, Role.VIEWER)
    admin = admin_token(appliance)
    with TestClient(appliance.asgi, base_url=BASE) as client:
        with (
            client.websocket_connect("/api/v1/events", headers={"Authorization": f"Bearer {viewer}"}) as seen_by_viewer,
            client.websocket_connect("/api/v1/events", headers={"Authorization": f"Bearer {admin}"}) as seen_by_admin,
        ):
            created = client.post(
                "/api/v1/users",
                json={"name": "bob", "role": "viewer", "password": "a long enough password"},
                headers={"Authorization": f"Bearer {admin}"},
            )
            assert created.status_code == 201
            appliance.cluster.publish({"probe": b"1"})  # a facts event, which viewers may read
            admin_saw = _read_until(seen_by_admin, "facts")
            viewer_saw = _read_until(seen_by_viewer, "facts")
        with (
            pytest.raises(WebSocketDisconnect) as refused,
            client.websocket_connect("/api/v1/events?type=audit", headers={"Authorization": f"Bearer {viewer}"}) as ws,
        ):
            ws.receive_text()
    assert any(m["type"] == "audit" and m["action"] == "user.create" for m in admin_saw)
    assert any(m["type"] == "config" and m["key"] == "bob" for m in admin_saw)
    assert "audit:read" not in {m.get("permission") for m in viewer_saw}
    assert refused.value.code == 4403  # asking for audit events outright
    assert {m["type"] for m in viewer_saw} <= {"facts", "membership", "network", "heartbeat"}


def test_session_websockets_check_the_origin(appliance: Appliance, node: OpenedNode) -> None:
    with TestClient(appliance.asgi, base_url=BASE) as client:
        appliance.accounts.create_user("carol", Role.OPERATOR, "a long enough password")
        login = client.post("/api/v1/auth/login", json={"username": "carol", "password": "a long enough password"})
        assert login.status_code == 200
        host = BASE.split("://", 1)[1]
        cookie = "; ".join(f"{k}={v}" for k, v in client.cookies.items())
        with (
            pytest.raises(WebSocketDisconnect) as refused,
            client.websocket_connect("/api/v1/events", headers={"Origin": "https://evil.example", "Cookie": cookie}),
        ):
            pass
        assert refused.value.code == 4403
        with (
            pytest.raises(WebSocketDisconnect) as refused,
            client.websocket_connect("/api/v1/events", headers={"Cookie": cookie}),
        ):
            pass  # a browser always sends Origin; no Origin with a cookie is refused too
        assert refused.value.code == 4403
        with client.websocket_connect(
            "/api/v1/events?type=facts", headers={"Origin": f"https://{host}", "Host": host, "Cookie": cookie}
        ) as socket:
            appliance.cluster.publish({"probe": b"2"})
            assert any(m["type"] == "facts" for m in _read_until(socket, "facts"))


def test_a_socket_is_closed_once_its_token_is_revoked(appliance: Appliance, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(access, "WEBSOCKET_RECHECK_SECONDS", 0.05)
    record, secret = appliance.accounts.create_token(owner="admin", name="short", role=None, expires_at=None)
    with TestClient(appliance.asgi, base_url=BASE) as client:
        with client.websocket_connect("/api/v1/events", headers={"Authorization": f"Bearer {secret}"}) as socket:
            appliance.accounts.revoke_token(record.id)

            def read_on() -> None:
                for _ in range(100):
                    socket.receive_text()

            with pytest.raises(WebSocketDisconnect) as closed:
                read_on()
        assert closed.value.code == 4401


def test_resume_replays_what_came_after_the_last_id(appliance: Appliance) -> None:
    admin = {"Authorization": f"Bearer {admin_token(appliance)}"}
    with TestClient(appliance.asgi, base_url=BASE) as client:
        with client.websocket_connect("/api/v1/events?type=facts", headers=admin) as socket:
            appliance.cluster.publish({"probe": b"a"})
            first = next(m for m in _read_until(socket, "facts") if m["type"] == "facts")
        appliance.cluster.publish({"probe": b"b"})
        appliance.cluster.publish({"probe": b"c"})
        with client.websocket_connect(f"/api/v1/events?type=facts&since=n1:{first['id']}", headers=admin) as socket:
            replayed = [m for m in _read_until(socket, "facts") if m["type"] == "facts"]
            while len(replayed) < 2:
                replayed += [m for m in _read_until(socket, "facts") if m["type"] == "facts"]
        with client.websocket_connect("/api/v1/events?since=n1:5", headers=admin) as socket:
            gap = _read_until(socket, "gap")
    assert [m["id"] for m in replayed][:2] == sorted(m["id"] for m in replayed[:2])
    assert all(m["id"] > first["id"] for m in replayed)
    assert any(m["type"] == "gap" and m["node"] == "n1" for m in gap)


def test_network_changes_and_enlistments_are_read_off_their_audit_entries() -> None:
    def entry(action: str, user: str = "admin") -> AuditEntry:
        return AuditEntry(
            seq=1, ts=1.0, node="n1", user=user, source="192.0.2.9", action=action, target="node n1",
            outcome="success", detail="4 CPUs", prev_hash="", hash="",
        )  # fmt: skip

    applied = entry("network.apply")
    assert isinstance(sources.audit_appended(applied), AuditAppended)
    network = sources.network_changed(applied)
    assert isinstance(network, NetworkChanged)
    assert network.action == "apply"
    assert sources.pxe_enlisted(applied) is None
    enlisted = sources.pxe_enlisted(entry("pxe.enlist", user="machine:52:54:00:12:34:56"))
    assert isinstance(enlisted, PxeEnlisted)
    assert enlisted.mac == "52:54:00:12:34:56"
    other = entry("user.create")
    assert sources.network_changed(other) is None
    assert sources.pxe_enlisted(other) is None


def test_a_raising_node_state_listener_never_breaks_a_merge(node: OpenedNode) -> None:
    store = NodeStateStore(node.db, "n1")
    bus = EventBus("n1")
    seen = bus.stream()

    def broken(entries: list[StateEntry]) -> None:
        raise RuntimeError("a listener bug")

    store.on_change(broken)
    store.on_change(sources.node_state_listener(bus))
    fresh = store.merge([StateEntry("n2", "facts", b"{}", 5)])
    assert [e.key for e in fresh] == ["facts"]
    assert store.items("n2") == {"facts": b"{}"}
    assert [(e.owner, e.keys) for e in seen._items if isinstance(e, FactsChanged)] == [("n2", ["facts"])]
