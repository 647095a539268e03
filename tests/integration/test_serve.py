"""`debvisor serve` as an operator runs it: a real process, HTTPS on loopback, signals, restarts."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import stat
import time
from pathlib import Path

import pytest

from tests.kit.wait import wait_until
from tests.nodeproc import NodeProcess, free_port, run_debvisor

pytestmark = pytest.mark.integration


def test_first_start_initialises_serves_and_stops_cleanly(tmp_path: Path) -> None:
    data = tmp_path / "node"
    with NodeProcess(data) as node:
        node.wait_ready()
        with node.admin_client() as client:
            info = client.get("/api/v1/node").json()
            ready = client.get("/readyz").json()
            metrics = client.get("/metrics").text
        stop_started = time.monotonic()
        assert node.stop() == 0
        stop_seconds = time.monotonic() - stop_started
    assert info["name"] == "n1"
    assert info["cpu"]["count"] >= 1
    assert any(a["address"] == "127.0.0.1" for a in info["addresses"])
    assert ready["ready"] is True
    assert 'route="/api/v1/node",status="200"' in metrics
    assert stop_seconds < 5
    password_file = data / "initial-admin-password"
    assert stat.S_IMODE(password_file.stat().st_mode) == 0o600
    # Not a terminal: the secret itself stays out of stdout (a journal), its location is shown.
    assert str(password_file) in node.stdout()
    assert password_file.read_text().strip() not in node.stdout() + node.stderr()
    for line in node.stderr().splitlines():
        entry = json.loads(line)  # every log line is one JSON object
        assert {"ts", "level", "logger", "msg"} <= set(entry)
    messages = [json.loads(line)["msg"] for line in node.stderr().splitlines()]
    assert "serving" in messages
    assert "stopped" in messages


def test_restart_reuses_identity_and_keeps_settings(tmp_path: Path) -> None:
    data = tmp_path / "node"
    with NodeProcess(data) as node:
        node.wait_ready()
        with node.admin_client() as client:
            first = client.get("/api/v1/node").json()
            assert client.put("/api/v1/node", json={"labels": {"rack": "r9"}}).status_code == 200
    ca_before = (data / "pki" / "ca.crt").read_bytes()
    password_before = (data / "initial-admin-password").read_bytes()
    with NodeProcess(data) as node:
        node.wait_ready()
        with node.admin_client() as client:
            second = client.get("/api/v1/node").json()
        assert "initial admin password" not in node.stdout().split("initial admin password", 1)[-1]
    assert (second["node_id"], second["cluster_id"]) == (first["node_id"], first["cluster_id"])
    assert second["labels"] == {"rack": "r9"}
    assert (data / "pki" / "ca.crt").read_bytes() == ca_before
    assert (data / "initial-admin-password").read_bytes() == password_before


def test_sigint_also_stops_cleanly(tmp_path: Path) -> None:
    import signal

    with NodeProcess(tmp_path / "node") as node:
        node.wait_ready()
        assert node.proc is not None
        node.proc.send_signal(signal.SIGINT)
        assert node.proc.wait(10) == 0


def _serve_once(data: Path) -> tuple[int, str]:
    port = free_port()
    result = run_debvisor(
        "serve", "--data-dir", str(data), "--api", f"127.0.0.1:{port}", "--gossip", f"127.0.0.1:{free_port()}"
    )
    return result.returncode, result.stderr


def _files(root: Path) -> dict[str, bytes]:
    """File contents that matter: SQLite's shared-memory index and an empty WAL are derived, not data."""
    return {
        str(p): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != "lock" and not p.name.endswith("-shm") and p.stat().st_size > 0
    }


@pytest.mark.parametrize("damage", ["foreign", "unreadable_key", "newer_schema", "garbage_db"])
def test_bad_data_dir_exits_with_one_line_and_is_untouched(tmp_path: Path, damage: str) -> None:
    data = tmp_path / "node"
    if damage == "foreign":
        data.mkdir()
        (data / "something.conf").write_text("x = 1\n")
    else:
        with NodeProcess(data) as node:
            node.wait_ready()
        if damage == "unreadable_key":
            (data / "pki" / "node.key").write_text("not a key\n")
        elif damage == "newer_schema":
            with contextlib.closing(sqlite3.connect(data / "debvisor.db")) as conn:
                conn.execute("PRAGMA user_version = 42")
        else:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{data / 'debvisor.db'}{suffix}").unlink(missing_ok=True)
            (data / "debvisor.db").write_bytes(os.urandom(8192))
    before = _files(data)
    code, stderr = _serve_once(data)
    assert code != 0
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("debvisor: ")
    assert "Traceback" not in stderr
    assert _files(data) == before


def test_bad_flags_exit_with_one_line(tmp_path: Path) -> None:
    result = run_debvisor("serve", "--data-dir", str(tmp_path / "d"), "--api", "nowhere:1")
    assert result.returncode == 2
    assert result.stderr.strip() == "debvisor: 'nowhere:1': 'nowhere' is not an IP address"
    result = run_debvisor("serve", "--data-dir", str(tmp_path / "d"), "--name", "Bad_Name")
    assert result.returncode == 2
    assert "node name 'Bad_Name' is invalid" in result.stderr
    assert not (tmp_path / "d").exists()


def test_port_in_use_exits_with_one_line(tmp_path: Path) -> None:
    with NodeProcess(tmp_path / "a") as first:
        first.wait_ready()
        result = run_debvisor(
            "serve", "--data-dir", str(tmp_path / "b"), "--api", f"127.0.0.1:{first.api_port}", "--name", "b"
        )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"debvisor: cannot listen for the API on 127.0.0.1:{first.api_port}: Address already in use"
    ]


def test_second_process_on_same_data_dir_is_refused(tmp_path: Path) -> None:
    with NodeProcess(tmp_path / "a") as first:
        first.wait_ready()
        code, stderr = _serve_once(tmp_path / "a")
    assert code == 1
    assert "in use by another debvisor process" in stderr


def test_help_teaches() -> None:
    result = run_debvisor("serve", "--help")
    assert result.returncode == 0
    for flag in ("--data-dir", "--api", "--gossip", "--name", "examples:"):
        assert flag in result.stdout


def test_tls_only_and_verified_by_the_node_ca(tmp_path: Path) -> None:
    import httpx

    with NodeProcess(tmp_path / "node") as node:
        node.wait_ready()
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{node.url}/healthz", verify=True, timeout=3)  # system CAs do not know it
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{node.api_port}/healthz", timeout=3)
        with node.client() as client:
            assert client.get("/healthz").status_code == 200


def test_initial_password_is_shown_once_on_a_terminal(tmp_path: Path) -> None:
    """On an interactive first start the operator sees the password; the next start shows nothing."""
    import pty
    import select
    import subprocess

    def run_on_pty(data: Path) -> str:
        node = NodeProcess(data)
        leader, follower = pty.openpty()
        node.start(stdout=follower, stderr=subprocess.DEVNULL)
        os.close(follower)
        output = b""
        try:
            node.wait_ready()
            while select.select([leader], [], [], 0.5)[0]:
                try:
                    chunk = os.read(leader, 4096)
                except OSError:
                    break
                if not chunk:
                    break
                output += chunk
        finally:
            node.stop()
            os.close(leader)
        return output.decode(errors="replace")

    data = tmp_path / "node"
    first = run_on_pty(data)
    password = (data / "initial-admin-password").read_text().strip()
    assert f"admin / {password}" in first
    second = run_on_pty(data)
    assert password not in second


def test_a_cluster_stopped_all_at_once_exits_promptly(tmp_path: Path) -> None:
    """Every node leaves the cluster and exits, even when all its peers are stopping too."""
    import signal

    founder = NodeProcess(tmp_path / "a", name="a")
    founder.start()
    nodes = [founder]
    try:
        founder.wait_ready()
        for name in ("b", "c"):
            token = run_debvisor("token", "create", "--data-dir", str(founder.data_dir)).stdout.strip()
            node = NodeProcess(tmp_path / name, name=name, extra_args=["--join", token])
            node.start()
            nodes.append(node)
            node.wait_ready()
        with founder.admin_client() as client:
            everyone = {"a": "alive", "b": "alive", "c": "alive"}
            wait_until(
                lambda: {m["name"]: m["state"] for m in client.get("/api/v1/nodes").json()} == everyone,
                10,
                0.1,
                what="a, b and c alive in a's view",
            )
        started = time.monotonic()
        for node in nodes:
            assert node.proc is not None
            node.proc.send_signal(signal.SIGTERM)
        codes = [node.proc.wait(10) for node in nodes if node.proc is not None]
        assert codes == [0, 0, 0]
        assert time.monotonic() - started < 5
    finally:
        for node in nodes:
            node.stop()
