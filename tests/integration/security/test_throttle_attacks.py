"""Issue 18, findings 7, 8 and 9a, replayed as attacks against real `debvisor serve` processes.

A node on loopback; the attackers and the victims are clients bound to different loopback
source addresses (127.0.0.2, 127.0.1.x, ...), which is all the node knows of who is where.

- A leaked, viewer-scoped API token of a user cannot guess its owner's password: the password
  change refuses tokens outright; a stolen session guessing through the same route is held by
  the login back-off (429) after five wrong tries, and the audit trail shows every attempt.
- Hammering `admin` with wrong passwords from one address, or from many, does not keep the
  real admin out: a source that has not been failing still logs in.
- The back-off survives a restart of the node.
- The network apply `check` cannot smuggle options into ping: anything but an IP is a 422.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.nodeproc import NodeProcess

pytestmark = pytest.mark.integration

WRONG = "not the password at all"
OPS_PASSWORD = "ops password, long enough"


def from_source(node: NodeProcess, source: str) -> httpx.Client:
    """A client whose connections come from `source` (a loopback address)."""
    transport = httpx.HTTPTransport(verify=node.ssl_context(), local_address=source)
    return httpx.Client(base_url=node.url, transport=transport, timeout=10.0)


def login(node: NodeProcess, source: str, user: str, password: str) -> httpx.Response:
    with from_source(node, source) as client:
        return client.post("/api/v1/auth/login", json={"username": user, "password": password})


def admin_password(node: NodeProcess) -> str:
    node.admin_token()  # logs in once and changes the initial password to this
    return (node.data_dir / "initial-admin-password").read_text().strip() + "-changed"


def audit(node: NodeProcess, action: str) -> list[dict[str, Any]]:
    with node.admin_client() as client:
        response = client.get("/api/v1/audit", params={"action": action, "limit": 1000})
    assert response.status_code == 200, response.text
    entries: list[dict[str, Any]] = response.json()["entries"]
    return entries


def create_user(node: NodeProcess, name: str, role: str, password: str) -> None:
    with node.admin_client() as client:
        created = client.post("/api/v1/users", json={"name": name, "role": role, "password": password})
    assert created.status_code == 201, created.text


@pytest.fixture
def node(tmp_path: Path) -> Iterator[NodeProcess]:
    with NodeProcess(tmp_path / "node", extra_args=["--rate-limit", "0"]) as started:
        started.wait_ready()
        yield started


def test_a_leaked_viewer_token_cannot_guess_its_owners_password(node: NodeProcess) -> None:
    create_user(node, "ops", "operator", OPS_PASSWORD)
    owner = login(node, "127.0.0.3", "ops", OPS_PASSWORD)
    assert owner.status_code == 200, owner.text
    session = owner.cookies["dv_session"]
    csrf = {"X-CSRF-Token": owner.json()["csrf_token"]}
    with from_source(node, "127.0.0.3") as client:
        client.cookies.set("dv_session", session)
        made = client.post("/api/v1/tokens", json={"name": "ci", "role": "viewer"}, headers=csrf)
    assert made.status_code == 201, made.text
    leaked = made.json()["secret"]

    # The token: refused whatever it sends, the right password included, so it learns nothing.
    with from_source(node, "127.0.0.2") as thief:
        thief.headers["Authorization"] = f"Bearer {leaked}"
        for guess in [f"guess {i} {WRONG}" for i in range(8)] + [OPS_PASSWORD]:
            body = {"current_password": guess, "new_password": "taken over by the thief"}
            answer = thief.post("/api/v1/users/ops/password", json=body)
            assert answer.status_code == 403, answer.text
            assert "not with an API token" in answer.json()["detail"]
    assert login(node, "127.0.0.3", "ops", OPS_PASSWORD).status_code == 200  # unchanged

    # A stolen session guessing through the same route: five wrong tries, then held, even for
    # the right password, which is then not even checked.
    statuses, retry_after = [], []
    with from_source(node, "127.0.0.2") as thief:
        thief.cookies.set("dv_session", session)
        for guess in [f"guess {i} {WRONG}" for i in range(8)] + [OPS_PASSWORD]:
            body = {"current_password": guess, "new_password": "taken over by the thief"}
            answer = thief.post("/api/v1/users/ops/password", json=body, headers=csrf)
            statuses.append(answer.status_code)
            retry_after.append(answer.headers.get("retry-after"))
    assert statuses == [403] * 5 + [429] * 4, statuses
    assert all(int(r or "0") >= 1 for r in retry_after[5:])
    # The same back-off as logins: the thief's address cannot switch to guessing by login.
    assert login(node, "127.0.0.2", "ops", OPS_PASSWORD).status_code == 429
    assert login(node, "127.0.0.3", "ops", OPS_PASSWORD).status_code == 200  # the owner, elsewhere

    attempts = [e for e in audit(node, "user.password") if e["source"] == "127.0.0.2"]
    assert [e["outcome"] for e in attempts] == ["denied"] * 9 + ["denied"] * 5 + ["throttled"] * 4
    assert all(e["user"] == "ops" and e["target"] == "ops" for e in attempts)
    assert "login back-off" in attempts[-1]["detail"]
    assert not any(OPS_PASSWORD in e["detail"] or WRONG in e["detail"] for e in attempts)


def test_admin_logs_in_from_elsewhere_while_its_name_is_hammered(node: NodeProcess) -> None:
    password = admin_password(node)
    # One address hammers admin without waiting for its back-off.
    hammered = [login(node, "127.0.0.2", "admin", f"{WRONG} {i}").status_code for i in range(30)]
    assert hammered == [401] * 5 + [429] * 25
    assert login(node, "127.0.0.2", "admin", password).status_code == 429  # held, right password or not
    assert login(node, "127.0.0.3", "admin", password).status_code == 200  # the admin, elsewhere

    # Many addresses, one guess each: the per-user ceiling now holds every one that failed...
    spread = [login(node, f"127.0.1.{i}", "admin", f"{WRONG} {i}").status_code for i in range(1, 26)]
    assert spread == [401] * 25
    again = login(node, "127.0.1.1", "admin", password)
    assert again.status_code == 429
    assert int(again.headers["retry-after"]) > 60
    # ...and still not the admin from an address that has not been failing.
    assert login(node, "127.0.0.4", "admin", password).status_code == 200

    entries = audit(node, "auth.login")
    by_source = {
        source: [e["outcome"] for e in entries if e["source"] == source]
        for source in ("127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.1.1")
    }
    assert by_source == {
        "127.0.0.2": ["denied"] * 5 + ["throttled"] * 26,
        "127.0.0.3": ["success"],
        "127.0.0.4": ["success"],
        "127.0.1.1": ["denied", "throttled"],
    }
    held = next(e for e in entries if e["source"] == "127.0.1.1" and e["outcome"] == "throttled")
    assert "1 failures for this name from this source" in held["detail"]
    assert "30 for this name" in held["detail"]  # 5 from 127.0.0.2, 25 spread


def test_the_back_off_survives_a_restart(tmp_path: Path) -> None:
    data = tmp_path / "node"
    with NodeProcess(data, extra_args=["--rate-limit", "0"]) as node:
        node.wait_ready()
        password = admin_password(node)
        create_user(node, "ops", "operator", OPS_PASSWORD)
        assert [login(node, "127.0.0.2", "admin", WRONG).status_code for _ in range(4)] == [401] * 4
        spread = [login(node, f"127.0.2.{i}", "ops", f"{WRONG} {i}").status_code for i in range(1, 28)]
        assert spread == [401] * 27  # the ops ceiling: 27 failures, 128 s for each address that failed
        assert login(node, "127.0.2.1", "ops", OPS_PASSWORD).status_code == 429
    with NodeProcess(data, extra_args=["--rate-limit", "0"]) as node:
        node.wait_ready()
        # The count of 127.0.0.2 for admin goes on from four: one more is free, then held.
        assert login(node, "127.0.0.2", "admin", WRONG).status_code == 401
        assert login(node, "127.0.0.2", "admin", password).status_code == 429
        held = login(node, "127.0.2.1", "ops", OPS_PASSWORD)
        assert held.status_code == 429
        assert 1 <= int(held.headers["retry-after"]) <= 128
        assert login(node, "127.0.0.3", "ops", OPS_PASSWORD).status_code == 200
        assert login(node, "127.0.0.3", "admin", password).status_code == 200


@pytest.mark.parametrize("check", ["-f", "--help", "-c1000000", "localhost", "127.0.0.1 -f"])
def test_the_network_check_cannot_inject_ping_options(node: NodeProcess, check: str) -> None:
    with node.admin_client() as client:
        answer = client.post("/api/v1/nodes/n1/network/apply", json={"check": check})
        assert answer.status_code == 422, answer.text  # refused before anything else (no config is stored)
        problem = answer.json()
        assert answer.headers["content-type"].startswith("application/problem+json")
        assert problem["detail"] == "check must be an IPv4 or IPv6 address"
        assert problem["errors"][0]["path"] == "$.check"
        assert client.get("/api/v1/nodes/n1/network/status").json()["pending"] is None
    entries = audit(node, "network.apply")
    assert [e["outcome"] for e in entries] == ["failed"]
