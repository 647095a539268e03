"""Real `debvisor serve` nodes, one per network namespace of a `Lab`, for integration tests
and the gossip benchmark. Every client request is made from inside a namespace."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.conftest import LONG_LIVED
from tests.netns import Host, Lab
from tests.nodeproc import first_admin_token
from tests.nsclient import NamespaceClient

API_PORT = 8443
GOSSIP_PORT = 7946


class ClusterNode:
    def __init__(self, lab_dir: Path, host: Host, name: str) -> None:
        self.host = host
        self.name = name
        self.data_dir = lab_dir / name
        self.log_path = lab_dir / f"{name}.log"
        self.proc: subprocess.Popen[Any] | None = None
        self._client: NamespaceClient | None = None
        self.token: str | None = None

    @property
    def url(self) -> str:
        return f"https://{self.host.address}:{API_PORT}"

    def start(self, *, join: str | None = None, extra: list[str] | None = None) -> None:
        argv = [
            sys.executable, "-m", "appliance", "serve", "--data-dir", str(self.data_dir), "--name", self.name,
            "--api", f"{self.host.address}:{API_PORT}", "--gossip", f"{self.host.address}:{GOSSIP_PORT}",
            "--log-format", "json", "--rate-limit", "0", *(extra or []),
        ]  # fmt: skip
        if join:
            argv += ["--join", join]
        log = self.log_path.open("ab")
        self.proc = self.host.popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=str(Path(__file__).parent.parent))
        LONG_LIVED.add(self.proc.pid)  # the cluster fixture stops it
        log.close()

    def client(self) -> NamespaceClient:
        if self._client is None:
            self._client = NamespaceClient(self.host.netns, self.url, self.data_dir / "pki" / "ca.crt", self.token)
        return self._client

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited {self.proc.returncode}: {self.log_tail()}")
            if (self.data_dir / "pki" / "ca.crt").exists():
                try:
                    if self.client().get("/readyz").status_code == 200:
                        return
                except Exception:
                    self.drop_client()
            time.sleep(0.1)
        raise TimeoutError(f"{self.name} not ready: {self.log_tail()}")

    def drop_client(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def kill(self) -> None:
        self.drop_client()
        if self.proc is not None:
            self.host.kill_process(self.proc)

    def stop(self) -> None:
        import signal

        self.drop_client()
        if self.proc is not None and self.proc.poll() is None:
            self.host.kill_process(self.proc, signal.SIGTERM, wait=10)

    def members(self) -> dict[str, str]:
        response = self.client().get("/api/v1/nodes")
        response.raise_for_status()
        return {m["name"]: m["state"] for m in response.json()}

    def log_tail(self) -> str:
        return self.log_path.read_text()[-3000:] if self.log_path.exists() else ""


def bootstrap_admin_token(node: ClusterNode) -> str:
    """Log in on a founding node with the initial password, change it, make an API token."""
    initial = (node.data_dir / "initial-admin-password").read_text().strip()

    token = node.client().call(lambda client: first_admin_token(client, initial))
    node.token = token
    node.drop_client()
    return token


def join_token(founder: ClusterNode) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "appliance", "token", "create", "--data-dir", str(founder.data_dir)],
        capture_output=True, text=True, check=True, timeout=30,
    )  # fmt: skip
    return result.stdout.strip()


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.05) -> float:
    """Seconds until `predicate()` held; TimeoutError if it never did."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        try:
            if predicate():
                return time.monotonic() - start
        except Exception:
            pass
        time.sleep(interval)
    raise TimeoutError(f"condition not met within {timeout} s")


class ClusterLab:
    """`size` nodes in a Lab: node 0 founds the cluster, the others join it with tokens."""

    def __init__(self, lab: Lab, lab_dir: Path, size: int) -> None:
        self.lab = lab
        self.nodes = [ClusterNode(lab_dir, lab.host(i), f"n{i}") for i in range(size)]

    def start(self) -> float:
        founder = self.nodes[0]
        founder.start()
        founder.wait_ready()
        token = bootstrap_admin_token(founder)
        started = time.monotonic()
        for node in self.nodes[1:]:
            node.token = token
            node.start(join=join_token(founder))
        for node in self.nodes[1:]:
            node.wait_ready()
        self.wait_all_see({n.name: "alive" for n in self.nodes}, timeout=30)
        return time.monotonic() - started

    def views(self, observers: list[ClusterNode] | None = None) -> dict[str, dict[str, str]]:
        return {n.name: n.members() for n in (observers or self.nodes)}

    def wait_all_see(
        self, expected: dict[str, str], timeout: float, observers: list[ClusterNode] | None = None
    ) -> float:
        nodes = observers or self.nodes

        def holds() -> bool:
            return all(all(n.members().get(k) == v for k, v in expected.items()) for n in nodes)

        return wait_until(holds, timeout, interval=0.02)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
