"""Accounts, sessions, tokens, RBAC, rate limits and the audit trail through the HTTP API."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from litestar.routes import WebSocketRoute
from litestar.testing import TestClient

from appliance.app import Appliance
from appliance.auth.permissions import ROLE_PERMISSIONS, Role, declared_permission
from appliance.bootstrap import OpenedNode
from tests.kit.clock import FakeClock
from tests.unit.appliance.conftest import BASE, another_browser

PASSWORD = "correct horse battery"


def login(client: httpx.Client, user: str, password: str) -> dict[str, Any]:
    response = client.post("/api/v1/auth/login", json={"username": user, "password": password})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def make_user(appliance: Appliance, name: str, role: Role, password: str = PASSWORD) -> None:
    appliance.accounts.create_user(name, role, password)


def csrf(body: dict[str, Any]) -> dict[str, str]:
    return {"X-CSRF-Token": body["csrf_token"]}


# -- login, the bootstrap admin, sessions --------------------------------------------------


def test_bootstrap_admin_must_change_password_first(anonymous: TestClient[Any], node: OpenedNode) -> None:
    assert node.initial_admin_password is not None
    session = login(anonymous, "admin", node.initial_admin_password)
    assert session["must_change_password"] is True
    blocked = anonymous.get("/api/v1/node")
    assert blocked.status_code == 403
    assert "change your password first" in blocked.json()["detail"]
    assert anonymous.get("/api/v1/auth/whoami").json()["must_change_password"] is True
    changed = anonymous.post(
        "/api/v1/users/admin/password",
        json={"current_password": node.initial_admin_password, "new_password": "a much better password"},
        headers=csrf(session),
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["session"]["must_change_password"] is False
    assert anonymous.get("/api/v1/node").status_code == 200
    assert login(anonymous, "admin", "a much better password")["must_change_password"] is False


def test_session_cookie_is_httponly_secure_strict(anonymous: TestClient[Any], appliance: Appliance) -> None:
    make_user(appliance, "ops", Role.OPERATOR)
    response = anonymous.post("/api/v1/auth/login", json={"username": "ops", "password": PASSWORD})
    cookie = response.headers["set-cookie"]
    assert cookie.startswith("dv_session=")
    for attribute in ("HttpOnly", "Secure", "SameSite=Strict", "Path=/"):
        assert attribute.lower() in cookie.lower()
    assert PASSWORD not in response.text


def test_wrong_password_and_unknown_user_look_the_same(anonymous: TestClient[Any], appliance: Appliance) -> None:
    make_user(appliance, "ops", Role.OPERATOR)
    wrong = anonymous.post("/api/v1/auth/login", json={"username": "ops", "password": "nope nope nope"})
    unknown = anonymous.post("/api/v1/auth/login", json={"username": "ghost", "password": "nope nope nope"})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json()["detail"] == unknown.json()["detail"]


def test_csrf_token_required_for_unsafe_requests_by_cookie(anonymous: TestClient[Any], appliance: Appliance) -> None:
    make_user(appliance, "ops", Role.OPERATOR)
    session = login(anonymous, "ops", PASSWORD)
    body = {"description": "x"}
    missing = anonymous.put("/api/v1/node", json=body)
    assert missing.status_code == 403
    assert "CSRF" in missing.json()["detail"]
    assert anonymous.put("/api/v1/node", json=body, headers={"X-CSRF-Token": "forged"}).status_code == 403
    assert anonymous.put("/api/v1/node", json=body, headers=csrf(session)).status_code == 200
    assert anonymous.get("/api/v1/node").status_code == 200  # safe methods need no token


def test_session_idle_timeout_on_the_injected_clock(
    anonymous: TestClient[Any], appliance: Appliance, clock: FakeClock
) -> None:
    make_user(appliance, "ops", Role.OPERATOR)
    login(anonymous, "ops", PASSWORD)
    clock.advance(14 * 60)
    assert anonymous.get("/api/v1/node").status_code == 200  # activity resets the idle timer
    clock.advance(14 * 60)
    assert anonymous.get("/api/v1/node").status_code == 200
    clock.advance(15 * 60)
    expired = anonymous.get("/api/v1/node")
    assert expired.status_code == 401
    assert "log in again" in expired.json()["detail"]


def test_session_absolute_lifetime(anonymous: TestClient[Any], appliance: Appliance, clock: FakeClock) -> None:
    make_user(appliance, "ops", Role.OPERATOR)
    login(anonymous, "ops", PASSWORD)
    for _ in range(71):  # 11 h 50 min of activity every 10 minutes
        clock.advance(10 * 60)
        assert anonymous.get("/api/v1/node").status_code == 200
    clock.advance(10 * 60)
    assert anonymous.get("/api/v1/node").status_code == 401


def test_logout_and_listing_and_revoking_sessions(anonymous: TestClient[Any], appliance: Appliance) -> None:
    make_user(appliance, "ops", Role.OPERATOR)
    laptop = anonymous
    with another_browser(anonymous) as phone:
        first = login(laptop, "ops", PASSWORD)
        second = login(phone, "ops", PASSWORD)
        listed = laptop.get("/api/v1/auth/sessions").json()
        assert {s["id"] for s in listed} == {first["session_id"], second["session_id"]}
        assert [s["current"] for s in listed if s["id"] == first["session_id"]] == [True]
        revoked = laptop.delete(f"/api/v1/auth/sessions/{second['session_id']}", headers=csrf(first))
        assert revoked.status_code == 204
        assert phone.get("/api/v1/node").status_code == 401
        assert laptop.post("/api/v1/auth/logout", headers=csrf(first)).status_code == 204
        assert laptop.get("/api/v1/node").status_code == 401


def test_cannot_revoke_someone_elses_session(anonymous: TestClient[Any], appliance: Appliance) -> None:
    make_user(appliance, "ops", Role.OPERATOR)
    make_user(appliance, "eve", Role.OPERATOR)
    ops = anonymous
    with another_browser(anonymous) as eve:
        victim = login(ops, "ops", PASSWORD)
        attacker = login(eve, "eve", PASSWORD)
        response = eve.delete(f"/api/v1/auth/sessions/{victim['session_id']}", headers=csrf(attacker))
        assert response.status_code == 404
        assert ops.get("/api/v1/node").status_code == 200


# -- API tokens ----------------------------------------------------------------------------


def test_token_lifecycle(anonymous: TestClient[Any], appliance: Appliance, clock: FakeClock) -> None:
    make_user(appliance, "ops", Role.OPERATOR)
    session = login(anonymous, "ops", PASSWORD)
    created = anonymous.post(
        "/api/v1/tokens", json={"name": "ci", "role": "viewer", "expires_in_seconds": 3600}, headers=csrf(session)
    )
    assert created.status_code == 201, created.text
    secret = created.json()["secret"]
    token_id = created.json()["token"]["id"]
    with another_browser(anonymous) as program:
        program.headers["Authorization"] = f"Bearer {secret}"
        assert program.get("/api/v1/node").status_code == 200
        assert program.put("/api/v1/node", json={}).status_code == 403  # a viewer token cannot write
        listed = anonymous.get("/api/v1/tokens").json()
        assert [t["id"] for t in listed] == [token_id]
        assert listed[0]["last_used"] == clock.now
        assert "secret" not in listed[0]
        assert secret not in anonymous.get("/api/v1/tokens").text
        clock.advance(3601)
        expired = program.get("/api/v1/node")
        assert expired.status_code == 401
        assert expired.headers["www-authenticate"].startswith("Bearer")


def test_revoked_token_is_refused(anonymous: TestClient[Any], appliance: Appliance) -> None:
    make_user(appliance, "ops", Role.OPERATOR)
    session = login(anonymous, "ops", PASSWORD)
    created = anonymous.post("/api/v1/tokens", json={"name": "ci"}, headers=csrf(session)).json()
    assert anonymous.delete(f"/api/v1/tokens/{created['token']['id']}", headers=csrf(session)).status_code == 204
    with another_browser(anonymous) as program:
        refused = program.get("/api/v1/node", headers={"Authorization": f"Bearer {created['secret']}"})
        assert refused.status_code == 401


def test_token_role_may_not_exceed_its_owner(anonymous: TestClient[Any], appliance: Appliance) -> None:
    make_user(appliance, "ops", Role.OPERATOR)
    make_user(appliance, "dev", Role.DEVELOPER)
    session = login(anonymous, "ops", PASSWORD)
    refused = anonymous.post("/api/v1/tokens", json={"name": "x", "role": "admin"}, headers=csrf(session))
    assert refused.status_code == 403
    assert "may not exceed" in refused.json()["detail"]
    default = anonymous.post("/api/v1/tokens", json={"name": "x"}, headers=csrf(session))
    assert default.json()["token"]["role"] == "operator"
    session = login(anonymous, "dev", PASSWORD)
    for role in ("operator", "viewer", "admin"):  # a viewer may read metrics, which a developer may not
        refused = anonymous.post("/api/v1/tokens", json={"name": "x", "role": role}, headers=csrf(session))
        assert refused.status_code == 403, role


def test_tokens_cannot_mint_tokens(client: TestClient[Any]) -> None:
    assert client.post("/api/v1/tokens", json={"name": "again"}).status_code == 403


@pytest.mark.parametrize(
    "presented", ["", "Basic abc", "Bearer ", "Bearer dvt_short_x", "Bearer dvt_0123456789abcdef_x"]
)
def test_malformed_or_unknown_credentials_are_401(anonymous: TestClient[Any], presented: str) -> None:
    response = anonymous.get("/api/v1/node", headers={"Authorization": presented} if presented else {})
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("application/problem+json")


# -- users -----------------------------------------------------------------------------------


def test_admin_manages_users(client: TestClient[Any], appliance: Appliance) -> None:
    created = client.post("/api/v1/users", json={"name": "ops", "role": "operator", "password": PASSWORD})
    assert created.status_code == 201, created.text
    assert "password" not in created.json()
    assert client.post("/api/v1/users", json={"name": "ops", "role": "viewer", "password": PASSWORD}).status_code == 409
    assert [u["name"] for u in client.get("/api/v1/users").json()] == ["admin", "ops"]
    assert client.patch("/api/v1/users/ops", json={"role": "viewer"}).json()["role"] == "viewer"
    assert client.get("/api/v1/users/ops").json()["role"] == "viewer"
    assert client.delete("/api/v1/users/ops").status_code == 204
    assert client.get("/api/v1/users/ops").status_code == 404


def test_last_admin_cannot_be_removed_or_demoted(client: TestClient[Any], appliance: Appliance) -> None:
    make_user(appliance, "root2", Role.OPERATOR)
    assert client.patch("/api/v1/users/admin", json={"role": "operator"}).status_code == 409
    assert client.patch("/api/v1/users/admin", json={"enabled": False}).status_code == 409
    client.patch("/api/v1/users/root2", json={"role": "admin"})
    assert client.patch("/api/v1/users/admin", json={"role": "operator"}).status_code == 200


def test_disabled_or_deleted_user_loses_sessions_and_tokens(client: TestClient[Any], appliance: Appliance) -> None:
    make_user(appliance, "ops", Role.OPERATOR)
    with another_browser(client) as ops:
        session = login(ops, "ops", PASSWORD)
        secret = ops.post("/api/v1/tokens", json={"name": "t"}, headers=csrf(session)).json()["secret"]
        assert client.patch("/api/v1/users/ops", json={"enabled": False}).status_code == 200
        assert ops.get("/api/v1/node").status_code == 401
        assert ops.get("/api/v1/node", headers={"Authorization": f"Bearer {secret}"}).status_code == 401
        assert ops.post("/api/v1/auth/login", json={"username": "ops", "password": PASSWORD}).status_code == 401
        client.patch("/api/v1/users/ops", json={"enabled": True})
        assert client.delete("/api/v1/users/ops").status_code == 204
        assert appliance.accounts.tokens(owner="ops") == []


def test_admin_reset_password_forces_a_change_and_ends_sessions(client: TestClient[Any], appliance: Appliance) -> None:
    make_user(appliance, "ops", Role.OPERATOR)
    with another_browser(client) as ops:
        login(ops, "ops", PASSWORD)
        reset = client.post("/api/v1/users/ops/password", json={"new_password": "temporary password 1"})
        assert reset.status_code == 200
        assert reset.json()["sessions_ended"] == 1
        assert ops.get("/api/v1/node").status_code == 401
        assert login(ops, "ops", "temporary password 1")["must_change_password"] is True


def test_changing_own_password_needs_the_current_one(anonymous: TestClient[Any], appliance: Appliance) -> None:
    make_user(appliance, "ops", Role.OPERATOR)
    session = login(anonymous, "ops", PASSWORD)
    for body, status in [
        ({"new_password": "another good password"}, 422),
        ({"current_password": "wrong wrong wrong", "new_password": "another good password"}, 403),
        ({"current_password": PASSWORD, "new_password": "short"}, 422),
        ({"current_password": PASSWORD, "new_password": PASSWORD}, 422),
    ]:
        assert anonymous.post("/api/v1/users/ops/password", json=body, headers=csrf(session)).status_code == status
    other = anonymous.post("/api/v1/users/admin/password", json={"new_password": "x" * 20}, headers=csrf(session))
    assert other.status_code == 403


# -- throttling ----------------------------------------------------------------------------


def test_failed_logins_back_off_per_user_and_are_audited(
    anonymous: TestClient[Any], appliance: Appliance, clock: FakeClock
) -> None:
    make_user(appliance, "ops", Role.OPERATOR)
    statuses = [
        anonymous.post("/api/v1/auth/login", json={"username": "ops", "password": "bad bad bad"}).status_code
        for _ in range(5)
    ]
    assert statuses == [401] * 5
    throttled = anonymous.post("/api/v1/auth/login", json={"username": "ops", "password": PASSWORD})
    assert throttled.status_code == 429
    assert throttled.headers["retry-after"] == "1"
    clock.advance(1.1)
    anonymous.post("/api/v1/auth/login", json={"username": "ops", "password": "bad bad bad"})
    assert (
        anonymous.post("/api/v1/auth/login", json={"username": "ops", "password": PASSWORD}).headers["retry-after"]
        == "2"
    )
    clock.advance(2.1)
    assert anonymous.post("/api/v1/auth/login", json={"username": "ops", "password": PASSWORD}).status_code == 200
    outcomes = [e.outcome for e in appliance.audit.query(_q(action="auth.login"), 100)]
    assert outcomes == ["denied"] * 5 + ["throttled", "denied", "throttled", "success"]


def test_failed_logins_back_off_per_source_address(anonymous: TestClient[Any], appliance: Appliance) -> None:
    make_user(appliance, "ops", Role.OPERATOR)
    for i in range(10):
        anonymous.post("/api/v1/auth/login", json={"username": f"guess{i}", "password": "bad bad bad"})
    response = anonymous.post("/api/v1/auth/login", json={"username": "ops", "password": PASSWORD})
    assert response.status_code == 429


def test_unknown_and_existing_names_are_throttled_alike(anonymous: TestClient[Any], appliance: Appliance) -> None:
    make_user(appliance, "ops", Role.OPERATOR)
    answers = {}
    for name in ("ops", "ghost"):
        appliance.login_throttle.reset()
        replies = [
            anonymous.post("/api/v1/auth/login", json={"username": name, "password": "bad bad bad"}) for _ in range(6)
        ]
        answers[name] = [(r.status_code, r.headers.get("retry-after"), r.json()["detail"]) for r in replies]
    assert answers["ops"] == answers["ghost"]
    assert [a[0] for a in answers["ops"]] == [401] * 5 + [429]


def test_changing_own_password_shares_the_login_back_off(
    anonymous: TestClient[Any], appliance: Appliance, clock: FakeClock
) -> None:
    make_user(appliance, "ops", Role.OPERATOR)
    session = login(anonymous, "ops", PASSWORD)

    def change(current: str) -> httpx.Response:
        body = {"current_password": current, "new_password": "another good password"}
        return anonymous.post("/api/v1/users/ops/password", json=body, headers=csrf(session))

    assert [change("wrong wrong wrong").status_code for _ in range(5)] == [403] * 5
    held = change(PASSWORD)  # even the right one is not checked while held
    assert held.status_code == 429
    assert held.headers["retry-after"] == "1"
    assert anonymous.post("/api/v1/auth/login", json={"username": "ops", "password": PASSWORD}).status_code == 429
    entries = appliance.audit.query(_q(action="user.password"), 100)
    assert [e.outcome for e in entries] == ["denied"] * 5 + ["throttled"]
    assert "login back-off: 5 failures" in entries[-1].detail
    assert PASSWORD not in str(entries)
    assert "wrong wrong wrong" not in str(entries)
    clock.advance(1.1)
    assert change(PASSWORD).status_code == 200


def test_an_api_token_cannot_change_its_owners_password(anonymous: TestClient[Any], appliance: Appliance) -> None:
    make_user(appliance, "ops", Role.OPERATOR)
    _, secret = appliance.accounts.create_token(owner="ops", name="leaked", role=Role.VIEWER, expires_at=None)
    body = {"current_password": PASSWORD, "new_password": "another good password"}  # even the right one
    response = anonymous.post("/api/v1/users/ops/password", json=body, headers={"Authorization": f"Bearer {secret}"})
    assert response.status_code == 403
    assert "not with an API token" in response.json()["detail"]
    assert appliance.login_throttle.counts("ops", "testclient") == (0, 0, 0)  # no password was checked
    login(anonymous, "ops", PASSWORD)  # unchanged


def test_per_user_rate_limit_answers_429_and_is_audited(node: OpenedNode, clock: FakeClock) -> None:
    from appliance.app import create_app
    from appliance.settings import AuthSettings
    from tests.unit.appliance.conftest import FakeHost, admin_token

    limited = create_app(
        node, host=FakeHost(), auth=AuthSettings(rate_limit=10, rate_burst=10), clock=clock, monotonic=clock
    )
    with TestClient(limited.asgi, base_url=BASE) as client:
        client.headers["Authorization"] = f"Bearer {admin_token(limited)}"
        statuses = [client.get("/api/v1/node").status_code for _ in range(12)]
        assert statuses == [200] * 10 + [429] * 2
        assert client.get("/api/v1/node").headers["retry-after"] == "1"
        clock.advance(0.5)
        assert [client.get("/api/v1/node").status_code for _ in range(5)] == [200] * 5
    rate_entries = limited.audit.query(_q(action="auth.rate_limited"), 10)
    assert len(rate_entries) == 1  # once per minute per user, not per refused request
    assert rate_entries[0].user == "admin"


# -- RBAC: every route, every role ----------------------------------------------------------


def _routes(appliance: Appliance) -> list[tuple[str, str, Any]]:
    found = []
    for route in appliance.litestar.routes:
        if isinstance(route, WebSocketRoute):
            continue  # tests/unit/events/test_websocket_gate.py
        for handler in route.route_handlers:  # type: ignore[union-attr]
            permission = declared_permission(handler)
            for method in sorted(handler.http_methods):
                if method in {"OPTIONS", "HEAD"} or permission is None:
                    continue
                found.append((method, route.path_format, permission))
    return found


def test_every_role_on_every_route(anonymous: TestClient[Any], appliance: Appliance) -> None:
    routes = _routes(appliance)
    assert len(routes) >= 15
    for role in Role:
        make_user(appliance, f"u-{role.value}", role)
    checked = 0
    for role in Role:
        name = f"u-{role.value}"
        allowed = ROLE_PERMISSIONS[role]
        for method, path, permission in routes:
            with another_browser(anonymous) as client:
                session = login(client, name, PASSWORD)
                url = re.sub(r"\{name\}", name, path)
                url = re.sub(r"\{[a-z_]+\}", "none", url)
                response = client.request(method, url, json={}, headers=csrf(session))
                denied_by_role = response.status_code == 403 and "lacks permission" in response.json()["detail"]
                assert response.status_code != 401, (role, method, path, response.text)
                assert denied_by_role == (permission not in allowed), (role, method, path, response.text)
                checked += 1
    assert checked == len(routes) * len(Role)


# -- audit ----------------------------------------------------------------------------------


def _q(**kw: Any) -> Any:
    from appliance.audit.log import AuditQuery

    return AuditQuery(**kw)


def test_changes_and_auth_events_are_audited_without_secrets(
    anonymous: TestClient[Any], appliance: Appliance, node: OpenedNode
) -> None:
    make_user(appliance, "ops", Role.OPERATOR)
    session = login(anonymous, "ops", PASSWORD)
    anonymous.put("/api/v1/node", json={"description": "rack 9"}, headers=csrf(session))
    anonymous.put("/api/v1/node", json={"description": "no csrf"})
    token = anonymous.post("/api/v1/tokens", json={"name": "ci"}, headers=csrf(session)).json()
    anonymous.post("/api/v1/auth/logout", headers=csrf(session))
    entries = appliance.audit.query(_q(), 100)
    summary = [(e.user, e.action, e.outcome) for e in entries]
    assert summary == [
        ("ops", "auth.login", "success"),
        ("ops", "put /api/v1/node", "success"),
        ("ops", "put /api/v1/node", "denied"),
        ("ops", "token.create", "success"),
        ("ops", "auth.logout", "success"),
    ]
    assert entries[3].target == f"token {token['token']['id']}"
    assert all(e.source == "testclient" for e in entries)
    dump = " ".join(str(v) for e in entries for v in (e.target, e.detail, e.user, e.action))
    assert PASSWORD not in dump
    assert token["secret"] not in dump
    assert session["csrf_token"] not in dump
    raw = b"".join(bytes(r[0], "utf-8") for r in node.db.conn.execute("SELECT detail || target FROM audit"))
    assert token["secret"].encode() not in raw


def test_audit_api_filters_pages_and_exports(client: TestClient[Any], appliance: Appliance, clock: FakeClock) -> None:
    for i in range(5):
        clock.advance(10)
        client.post("/api/v1/users", json={"name": f"user{i}", "role": "viewer", "password": PASSWORD})
    client.delete("/api/v1/users/user0")
    page = client.get("/api/v1/audit", params={"action": "user.", "limit": 2}).json()
    assert [e["target"] for e in page["entries"]] == ["user0", "user1"]
    assert page["next_after"] == page["entries"][-1]["seq"]
    rest = client.get("/api/v1/audit", params={"action": "user.*", "after": page["next_after"]}).json()
    assert [e["action"] for e in rest["entries"]] == ["user.create"] * 3 + ["user.delete"]
    assert rest["next_after"] is None
    assert len(client.get("/api/v1/audit", params={"action": "user.delete"}).json()["entries"]) == 1
    assert client.get("/api/v1/audit", params={"user": "nobody"}).json()["entries"] == []
    since = page["entries"][1]["ts"]
    window = client.get("/api/v1/audit", params={"since": _iso(since), "until": _iso(since + 15)}).json()
    assert [e["target"] for e in window["entries"]] == ["user1", "user2"]
    csv_export = client.get("/api/v1/audit/export", params={"format": "csv", "action": "user.create"})
    assert csv_export.headers["content-type"].startswith("text/csv")
    lines = csv_export.text.strip().splitlines()
    assert lines[0].startswith("seq,ts,node,user,source,action,target,outcome,detail,prev_hash,hash")
    assert len(lines) == 6
    json_export = client.get("/api/v1/audit/export", params={"format": "json"}).json()
    assert len(json_export) >= 6
    bad_limit = client.get("/api/v1/audit", params={"limit": 0})
    assert bad_limit.status_code == 422
    assert bad_limit.json()["errors"][0]["path"] == "query:limit"
    assert appliance.audit.verify().bad_seq is None


def _iso(ts: float) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat()


def test_audit_rows_cannot_be_updated_through_sqlite(node: OpenedNode, appliance: Appliance) -> None:
    import sqlite3

    appliance.audit.append(user="a", source="s", action="x", target="t", outcome="success")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        node.db.conn.execute("UPDATE audit SET user = 'b'")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        node.db.conn.execute("DELETE FROM audit")


# -- property-based: no input makes a 500 ---------------------------------------------------

_text = st.text(max_size=80) | st.sampled_from(["admin", "", "a" * 300, "ünïcode", "\x00", "'; DROP TABLE audit; --"])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(username=_text, password=_text)
def test_login_never_500s(anonymous: TestClient[Any], appliance: Appliance, username: str, password: str) -> None:
    appliance.login_throttle.reset()  # keep every example from being throttled
    response = anonymous.post("/api/v1/auth/login", json={"username": username, "password": password})
    assert response.status_code in {401, 422, 429}, response.text


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    body=st.fixed_dictionaries(
        {"name": _text, "role": st.sampled_from(["admin", "viewer", "root", ""]) | _text, "password": _text},
        optional={"enabled": st.booleans() | st.integers() | st.none()},
    )
)
def test_user_creation_never_500s(client: TestClient[Any], body: dict[str, Any]) -> None:
    response = client.post("/api/v1/users", json=body)
    assert response.status_code in {201, 409, 422}, response.text


async def test_a_burst_of_parallel_guesses_gets_only_the_free_tries(appliance: Appliance) -> None:
    import asyncio

    make_user(appliance, "ops", Role.OPERATOR)
    transport = httpx.ASGITransport(app=appliance.asgi)  # type: ignore[arg-type]  # Litestar types its ASGI callable narrower
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
        body = {"username": "ops", "password": "bad bad bad"}
        replies = await asyncio.gather(*(client.post("/api/v1/auth/login", json=body) for _ in range(20)))
    statuses = sorted(r.status_code for r in replies)
    assert statuses == [401] * 5 + [429] * 15  # without reservations all 20 would be checked
    assert appliance.login_throttle.counts("ops", "127.0.0.1")[0] == 5
