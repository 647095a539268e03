"""`debvisor user ...` and `debvisor audit verify` on the console, beside a running node."""

from __future__ import annotations

import contextlib
import sqlite3
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.kit.wait import wait_until
from tests.nodeproc import DEBVISOR, NodeProcess, run_debvisor

pytestmark = pytest.mark.integration

PASSWORD = "console made this one"


def debvisor_stdin(*args: str, stdin: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*DEBVISOR, *args], input=stdin, capture_output=True, text=True, timeout=30, check=False)


def _login(node: NodeProcess, user: str, password: str) -> int:
    with node.client() as client:
        return client.post("/api/v1/auth/login", json={"username": user, "password": password}).status_code


def _users(node: NodeProcess) -> dict[str, dict[str, object]]:
    """The node's users as its API lists them (an admin token: no login attempt is spent)."""
    with node.admin_client() as client:
        response = client.get("/api/v1/users")
        response.raise_for_status()
        return {u["name"]: u for u in response.json()}


# The running node notices a change made by another process within about a second; the
# bound leaves room for a loaded machine. The waits ask the node's user list, not a login:
# polling with logins spent failed attempts while the change was on its way, and past the
# pair's free failures the throttle's back-off (1, 2, 4 s...) delayed the login that was
# waited for, beyond the deadline on a busy machine.
NOTICED_WITHIN = 5.0


def test_console_user_commands_act_on_the_running_node(tmp_path: Path) -> None:
    data = tmp_path / "node"
    with NodeProcess(data) as node:
        node.wait_ready()
        node.admin_token()
        dd = ["--data-dir", str(data)]
        added = debvisor_stdin(
            "user", "add", "rescue", "--role", "admin", "--password-stdin", *dd, stdin=PASSWORD + "\n"
        )
        assert added.returncode == 0, added.stderr
        seen_after = wait_until(lambda: "rescue" in _users(node), 15.0, 0.1)
        assert seen_after < NOTICED_WITHIN
        assert _login(node, "rescue", PASSWORD) == 200

        listed = run_debvisor("user", "list", *dd)
        assert listed.returncode == 0
        assert any(line.split()[:2] == ["rescue", "admin"] for line in listed.stdout.splitlines())

        duplicate = debvisor_stdin("user", "add", "rescue", "--role", "viewer", "--password-stdin", *dd, stdin=PASSWORD)
        assert duplicate.returncode == 1
        assert duplicate.stderr.strip() == "debvisor: user 'rescue' already exists"

        weak = debvisor_stdin("user", "add", "weak", "--role", "viewer", "--password-stdin", *dd, stdin="short\n")
        assert weak.returncode == 1
        assert "12 to 256 characters" in weak.stderr

        before = _users(node)["rescue"]["updated_at"]
        changed = debvisor_stdin("user", "passwd", "rescue", "--password-stdin", *dd, stdin="a brand new secret\n")
        assert changed.returncode == 0, changed.stderr
        wait_until(lambda: _users(node)["rescue"]["updated_at"] != before, 15.0, 0.1)
        assert _login(node, "rescue", "a brand new secret") == 200
        assert _login(node, "rescue", PASSWORD) == 401

        deleted = run_debvisor("user", "del", "rescue", *dd)
        assert deleted.returncode == 0, deleted.stderr
        wait_until(lambda: "rescue" not in _users(node), 15.0, 0.1)
        assert _login(node, "rescue", "a brand new secret") == 401

        last_admin = run_debvisor("user", "del", "admin", *dd)
        assert last_admin.returncode == 1
        assert "last enabled admin" in last_admin.stderr

        with node.admin_client() as client:
            entries = client.get("/api/v1/audit", params={"user": "root"}).json()["entries"]
        assert [(e["action"], e["target"], e["outcome"]) for e in entries] == [
            ("user.create", "rescue", "success"),
            ("user.create", "rescue", "failed"),
            ("user.create", "weak", "failed"),
            ("user.password", "rescue", "success"),
            ("user.delete", "rescue", "success"),
            ("user.delete", "admin", "failed"),
        ]
        assert all(e["source"] == "console" for e in entries)
        assert PASSWORD not in str(entries)
        token = node.admin_token()
    # Nothing secret reaches the service's own log either.
    log = node.stderr() + node.stdout()
    initial = (data / "initial-admin-password").read_text().strip()
    for secret in (PASSWORD, "a brand new secret", token, initial, initial + "-changed"):
        assert secret not in log


def test_console_commands_refuse_without_a_node(tmp_path: Path) -> None:
    result = run_debvisor("user", "list", "--data-dir", str(tmp_path / "none"))
    assert result.returncode == 1
    assert result.stderr.strip().startswith("debvisor: no node in")
    no_tty = subprocess.run(
        [*DEBVISOR, "user", "passwd", "admin", "--data-dir", str(tmp_path / "none")],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert no_tty.returncode == 1


def _audit_db(data: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(data / "debvisor.db")
    conn.execute("DROP TRIGGER audit_no_update")
    conn.execute("DROP TRIGGER audit_no_delete")
    return conn


@pytest.mark.parametrize("tamper", ["modify", "delete", "reorder", "truncate"])
def test_audit_verify_names_the_first_bad_entry(tmp_path: Path, tamper: str) -> None:
    data = tmp_path / "node"
    with NodeProcess(data) as node:
        node.wait_ready()
        with node.admin_client() as client:
            for i in range(6):
                client.put("/api/v1/node", json={"description": f"change {i}"}).raise_for_status()
    intact = run_debvisor("audit", "verify", "--local", "--data-dir", str(data))
    assert intact.returncode == 0, intact.stderr
    assert "audit chain intact" in intact.stdout
    assert "local check only" in intact.stdout  # it says what it cannot see
    count = int(intact.stdout.split("intact: ")[1].split()[0])
    assert count >= 9  # login, password change, token, six changes

    with contextlib.closing(_audit_db(data)) as conn:
        if tamper == "modify":
            conn.execute("UPDATE audit SET user = 'someone-else' WHERE seq = 5")
            expected = "entry 5: its contents were modified"
        elif tamper == "delete":
            conn.execute("DELETE FROM audit WHERE seq = 5")
            expected = "entry 6: expected sequence 5"
        elif tamper == "reorder":
            conn.execute("UPDATE audit SET seq = 1000 WHERE seq = 5")
            conn.execute("UPDATE audit SET seq = 5 WHERE seq = 6")
            conn.execute("UPDATE audit SET seq = 6 WHERE seq = 1000")
            expected = "entry 5: its link to the previous entry is broken"
        else:
            conn.execute(f"DELETE FROM audit WHERE seq > {count - 2}")
            expected = f"entry {count - 1}: entries {count - 1}..{count} were removed from the end"
        conn.commit()
    broken = run_debvisor("audit", "verify", "--local", "--data-dir", str(data))
    assert broken.returncode == 1
    assert broken.stderr.strip() == f"audit chain broken at {expected}" or expected in broken.stderr, broken.stderr


def test_api_refuses_requests_after_credentials_change_on_the_console(tmp_path: Path) -> None:
    data = tmp_path / "node"
    with NodeProcess(data) as node:
        node.wait_ready()
        token = node.admin_token()
        with httpx.Client(base_url=node.url, verify=node.ssl_context(), timeout=5) as client:
            client.headers["Authorization"] = f"Bearer {token}"
            assert client.get("/api/v1/node").status_code == 200
            debvisor_stdin("user", "add", "other", "--role", "admin", "--password-stdin", "--data-dir", str(data),
                           stdin=PASSWORD)  # fmt: skip
            assert run_debvisor("user", "del", "admin", "--data-dir", str(data)).returncode == 0
            wait_until(lambda: client.get("/api/v1/node").status_code == 401, 15.0, 0.1)
