"""Start and stop real `debvisor serve` processes for integration tests and benchmarks.

A `NodeProcess` owns one child process, a kit `Daemon` (tests/kit/daemon.py): it waits until
`/readyz` answers over HTTPS verified against the node's own CA, and `stop()` sends SIGTERM and
reaps it (SIGKILL after a deadline), so a test never leaves a node running; a failed test
shows the node's log.
"""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from tests.kit.daemon import Daemon

DEBVISOR = [sys.executable, "-m", "appliance"]


_issued_ports: set[int] = set()


def free_port(host: str = "127.0.0.1") -> int:
    """A port that is free now and that this process has not handed out before.

    The kernel may give the same ephemeral port to two binds in a row once the first socket is
    closed, so a node's API and gossip ports could collide; remembering what was issued stops that.
    """
    for _ in range(100):
        with socket.socket() as sock:
            sock.bind((host, 0))
            port = int(sock.getsockname()[1])
        if port not in _issued_ports:
            _issued_ports.add(port)
            return port
    raise RuntimeError("no unused free port after 100 tries")


class NodeProcess:
    """One `debvisor serve` child process on loopback with its own data dir."""

    def __init__(
        self,
        data_dir: Path,
        *,
        name: str = "n1",
        extra_args: list[str] | None = None,
        prefix: list[str] | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.prefix = prefix or []  # e.g. ["taskset", "-c", "0"] to pin the node to a core
        self.name = name
        self.api_port = free_port()
        self.gossip_port = free_port()
        self.extra_args = extra_args or []
        self.stdout_path = data_dir.parent / f"{data_dir.name}.stdout"
        self.stderr_path = data_dir.parent / f"{data_dir.name}.stderr"
        self.daemon: Daemon | None = None

    @property
    def proc(self) -> subprocess.Popen[Any] | None:
        return None if self.daemon is None else self.daemon.proc

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.api_port}"

    def command(self) -> list[str]:
        return [
            *self.prefix,
            *DEBVISOR,
            "serve",
            "--data-dir",
            str(self.data_dir),
            "--api",
            f"127.0.0.1:{self.api_port}",
            "--gossip",
            f"127.0.0.1:{self.gossip_port}",
            "--name",
            self.name,
            "--log-format",
            "json",
            *self.extra_args,
        ]

    def start(self, **popen: Any) -> NodeProcess:
        """Start the node; `popen` overrides what goes to `subprocess.Popen` (e.g. stdout=a pty)."""
        # Not in a session of its own: a prefix such as `ip netns exec` replaces itself with the node.
        popen.setdefault("start_new_session", False)
        self.daemon = Daemon(self.command(), self.stderr_path, stdout_log=self.stdout_path, name=self.name, **popen)
        self.daemon.start()
        return self

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.data_dir / "pki" / "ca.crt"))

    def client(self, timeout: float = 5.0) -> httpx.Client:
        return httpx.Client(base_url=self.url, verify=self.ssl_context(), timeout=timeout)

    @property
    def _admin_file(self) -> Path:
        return self.data_dir.parent / f"{self.data_dir.name}.admin-token"

    def admin_token(self) -> str:
        """An admin API token for this node, made once per data dir through the real API.

        The first call logs in with the initial password, changes it (as the API requires),
        and creates a token with the session; the token is kept beside the data dir.
        """
        if self._admin_file.exists():
            return self._admin_file.read_text()
        initial = (self.data_dir / "initial-admin-password").read_text().strip()
        with self.client() as client:
            token = first_admin_token(client, initial)
        self._admin_file.write_text(token)
        return token

    def admin_client(self, timeout: float = 5.0) -> httpx.Client:
        client = self.client(timeout)
        client.headers["Authorization"] = f"Bearer {self.admin_token()}"
        return client

    def wait_ready(self, timeout: float = 30.0) -> float:
        """Poll /readyz until 200; return seconds waited. Raises if the process exits or time runs out."""
        assert self.daemon is not None

        def ready() -> bool:
            if not (self.data_dir / "pki" / "ca.crt").exists():
                return False
            with self.client(timeout=1.0) as client:
                return client.get("/readyz").status_code == 200

        return self.daemon.wait_ready(ready, timeout, what=f"{self.name}'s /readyz to answer 200")

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM, wait, SIGKILL if needed; return the exit code."""
        if self.daemon is None:
            return 0
        code = self.daemon.stop(timeout)
        return 0 if code is None else code

    def stdout(self) -> str:
        return self.stdout_path.read_text() if self.stdout_path.exists() else ""

    def stderr(self) -> str:
        return self.stderr_path.read_text() if self.stderr_path.exists() else ""

    def rss_bytes(self) -> int:
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0

    def __enter__(self) -> NodeProcess:
        return self.start()

    def __exit__(self, *_: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.stop()


def first_admin_token(client: httpx.Client, initial_password: str) -> str:
    """Log in as the bootstrap admin, change the password (to initial + "-changed"), make an API token."""
    login = client.post("/api/v1/auth/login", json={"username": "admin", "password": initial_password})
    login.raise_for_status()
    changed = client.post(
        "/api/v1/users/admin/password",
        json={"current_password": initial_password, "new_password": initial_password + "-changed"},
        headers={"X-CSRF-Token": login.json()["csrf_token"]},
    )
    changed.raise_for_status()
    csrf = changed.json()["session"]["csrf_token"]
    created = client.post("/api/v1/tokens", json={"name": "tests"}, headers={"X-CSRF-Token": csrf})
    created.raise_for_status()
    return str(created.json()["secret"])


def run_debvisor(*args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    """Run a short `debvisor` command and capture its output."""
    return subprocess.run(
        [*DEBVISOR, *args], capture_output=True, text=True, timeout=timeout, check=False, env={**os.environ}
    )
