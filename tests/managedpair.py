"""Two real nodes on loopback, the first managing a systemd-nspawn container from outside.

Node n1 runs `debvisor serve --system-bus BUS --host-root ROOT` with the container's system bus
and root (tests/kit/nspawn.py): the container is "its machine", with systemd as PID 1, which
the development machines' own PID 1 is not. Node n2 joins n1, so a request sent to n2 about
n1 is forwarded. Used by the journal and node power tests.
"""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.kit.nspawn import Container
from tests.kit.wait import wait_until
from tests.nodeproc import NodeProcess, run_debvisor

RATE = ["--rate-limit", "1000"]  # a test sends more requests than a person would


def user_token(node: NodeProcess, role: str) -> str:
    """A user of `role` and an API token of theirs, made through the API (a token needs a session)."""
    password = f"{role} password 1"
    with node.admin_client(timeout=15) as admin:
        made = admin.post("/api/v1/users", json={"name": f"u-{role}", "role": role, "password": password})
        assert made.is_success, made.text
    with node.client(timeout=15) as client:
        login = client.post("/api/v1/auth/login", json={"username": f"u-{role}", "password": password})
        assert login.is_success, login.text
        csrf = {"X-CSRF-Token": login.json()["csrf_token"]}
        created = client.post("/api/v1/tokens", json={"name": "t"}, headers=csrf)
        assert created.is_success, created.text
        return str(created.json()["secret"])


def role_tokens(founder: NodeProcess) -> dict[str, str]:
    """A token of each role, made on the founder (a joined node has no initial password)."""
    tokens = {role: user_token(founder, role) for role in ("operator", "viewer", "developer")}
    tokens["admin"] = founder.admin_token()
    return tokens


def start_pair(tmp_path: Path, n1_extra: list[str]) -> tuple[NodeProcess, NodeProcess]:
    """n1 started with `n1_extra` (`managing(box)`), and n2 joined to it, both ready and alive."""
    n1 = NodeProcess(tmp_path / "n1", name="n1", extra_args=[*n1_extra, *RATE]).start()
    n2: NodeProcess | None = None
    try:
        n1.wait_ready()
        token = run_debvisor("token", "create", "--data-dir", str(n1.data_dir)).stdout.strip()
        n2 = NodeProcess(tmp_path / "n2", name="n2", extra_args=["--join", token, *RATE]).start()
        n2.wait_ready()
        with n1.admin_client() as client:
            wait_until(
                lambda: states(client) == {"n1": "alive", "n2": "alive"},
                15, 0.1, what="n1 and n2 alive in n1's view",
            )  # fmt: skip
    except BaseException:
        if n2 is not None:
            n2.stop()
        n1.stop()
        raise
    return n1, n2


def states(client: httpx.Client) -> dict[str, str]:
    """Each member's state in the view of the node `client` talks to."""
    return {m["name"]: m["state"] for m in client.get("/api/v1/nodes").json()}


def managing(box: Container) -> list[str]:
    """n1's options to manage `box` from outside: its system bus and its root."""
    return ["--system-bus", box.bus_address(), "--host-root", str(box.path("/"))]
