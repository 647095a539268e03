"""Rebooting and powering off a node through another node, against real systemd as PID 1.

Node n1 manages a systemd-nspawn container from outside (`--system-bus`, `--host-root`): the
container is "its machine". Node n2 joins, and the power request goes to n2, which forwards
it to n1. n1 must leave the cluster gracefully (n2 sees `left`, never `dead`), then systemd
in the container reboots or powers off. Refusals (wrong name typed back, roles without
`node:power`, no system bus) must leave everything as it was.
"""

from __future__ import annotations

import json
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.sync.client import connect

from tests.kit.nspawn import Container, debian_root
from tests.kit.wait import wait_until
from tests.managedpair import managing, start_pair, states, user_token
from tests.nodeproc import NodeProcess, run_debvisor

pytestmark = [pytest.mark.integration, pytest.mark.privileged, pytest.mark.systemd]

POWER = "/api/v1/nodes/n1/power"


@pytest.fixture
def box(tmp_path: Path) -> Iterator[Container]:
    with Container(debian_root(), tmp_path) as container:
        yield container


@pytest.fixture
def pair(tmp_path: Path, box: Container) -> Iterator[tuple[NodeProcess, NodeProcess]]:
    n1, n2 = start_pair(tmp_path, managing(box))
    try:
        yield n1, n2
    finally:
        n2.stop()
        n1.stop()


def audit(node: NodeProcess, token: str) -> list[dict[str, Any]]:
    with node.client() as client:
        answer = client.get(
            "/api/v1/audit", params={"action": "node.power"}, headers={"Authorization": f"Bearer {token}"}
        )
    assert answer.status_code == 200, answer.text
    return list(answer.json()["entries"])


def admin_of(n2: NodeProcess, token: str) -> httpx.Client:
    client = n2.client()
    client.headers["Authorization"] = f"Bearer {token}"
    return client


def post(node: NodeProcess, token: str, body: dict[str, Any]) -> httpx.Response:
    with node.client(timeout=30) as client:
        return client.post(POWER, json=body, headers={"Authorization": f"Bearer {token}"})


def test_poweroff_leaves_the_cluster_first_and_the_machine_goes_down(
    box: Container, pair: tuple[NodeProcess, NodeProcess]
) -> None:
    n1, n2 = pair
    admin = n1.admin_token()
    operator = user_token(n1, "operator")
    viewer = user_token(n1, "viewer")
    developer = user_token(n1, "developer")
    body = {"action": "poweroff", "reason": "the test says so", "confirm": "n1"}
    wait_until(lambda: post(n2, viewer, body).status_code == 403, 15, 0.2, what="n2 to know the tokens")

    # refused, and nothing done: wrong name typed back, roles without node:power, a bad body
    wrong = post(n2, admin, {**body, "confirm": "n2"})
    assert wrong.status_code == 422, wrong.text
    assert wrong.json()["errors"][0]["path"] == "$.confirm"
    for token in (operator, viewer, developer):
        assert post(n2, token, body).status_code == 403
    assert post(n2, admin, {**body, "action": "halt"}).status_code in (400, 422)
    assert post(n2, admin, {"action": "poweroff", "confirm": "n1"}).status_code in (400, 422)
    time.sleep(1.0)
    assert box.state() == "running"
    with admin_of(n2, admin) as client:
        assert states(client) == {"n1": "alive", "n2": "alive"}

    context = ssl.create_default_context(cafile=str(n2.data_dir / "pki" / "ca.crt"))
    events = connect(
        f"wss://127.0.0.1:{n2.api_port}/api/v1/events?type=power,membership",
        ssl=context, additional_headers={"Authorization": f"Bearer {admin}"},
        open_timeout=10, proxy=None, compression=None, ping_interval=None,
    )  # fmt: skip
    with events:
        accepted = post(n2, admin, body)
        assert accepted.status_code == 202, accepted.text
        assert accepted.json()["target"] == "poweroff.target"
        assert accepted.json()["job"].startswith("/org/freedesktop/systemd1/job/")

        seen: list[dict[str, Any]] = []

        def n1_left() -> bool:
            frame = events.recv(timeout=5)
            seen.extend(json.loads(line) for line in str(frame).splitlines() if line)
            return any(e["type"] == "membership" and e["member"] == "n1" and e["state"] == "left" for e in seen)

        wait_until(n1_left, 15, 0, what="n2 to see n1 leave")
    power = [e for e in seen if e["type"] == "power"]
    assert [(e["node"], e["action"], e["reason"], e["by"]) for e in power] == [
        ("n1", "poweroff", "the test says so", "admin")
    ]
    assert not any(e["type"] == "membership" and e["state"] in ("dead", "suspect") for e in seen)
    with admin_of(n2, admin) as client:
        assert states(client)["n1"] == "left"

    # the container's systemd powers off: nspawn exits
    assert box.daemon.proc is not None
    wait_until(lambda: box.daemon.proc is not None and box.daemon.proc.poll() is not None, 30, 0.2, what="poweroff")
    assert box.daemon.proc.returncode == 0

    # audited where it was received and where it acted; the refusals too
    on_n2 = audit(n2, admin)
    assert [e["outcome"] for e in on_n2 if e["user"] == "admin"][-1] == "success"
    assert {e["user"] for e in on_n2 if e["outcome"] == "denied"} >= {"u-operator", "u-viewer", "u-developer"}
    on_n1 = [e for e in audit(n1, admin) if e["outcome"] == "success"]
    assert len(on_n1) == 1
    assert on_n1[0]["forwarded_by"] == "n2"
    assert on_n1[0]["detail"] == "poweroff: the test says so"
    assert on_n1[0]["target"] == "node n1"


def test_reboot_leaves_the_cluster_and_the_machine_restarts(
    box: Container, pair: tuple[NodeProcess, NodeProcess]
) -> None:
    n1, n2 = pair
    admin = n1.admin_token()
    leader = box.leader
    # through the CLI, talking to n2
    ca = str(n2.data_dir / "pki" / "ca.crt")
    connection = ["--url", n2.url, "--ca", ca, "--token", admin]
    mistyped = run_debvisor("node", "reboot", "n1", "--reason", "kernel update", "--confirm", "n2", *connection)
    assert mistyped.returncode == 1
    assert mistyped.stderr == "debvisor: the name typed back is not 'n1'; nothing was done\n"
    rebooted = run_debvisor("node", "reboot", "n1", "--reason", "kernel update", "--confirm", "n1", *connection)
    assert rebooted.returncode == 0, rebooted.stderr
    assert rebooted.stdout == "n1 left the cluster and is going to reboot (reboot.target)\n"
    with admin_of(n2, admin) as client:
        wait_until(lambda: states(client)["n1"] == "left", 15, 0.1, what="n2 to see n1 leave")
    # the container's old systemd is gone: it rebooted (nspawn ends or boots it again)
    wait_until(lambda: not Path(f"/proc/{leader}").exists(), 30, 0.2, what="the container's systemd to go")
    # a second request finds the node already going down
    again = post(n1, admin, {"action": "reboot", "reason": "again", "confirm": "n1"})
    assert again.status_code == 409, again.text


def test_without_a_system_bus_nothing_is_done(tmp_path: Path) -> None:
    """503 with a clear problem, and the node is still a member: it never left."""
    n1 = NodeProcess(tmp_path / "n1", name="n1", extra_args=["--system-bus", f"unix:path={tmp_path}/no-bus"])
    n1.start()
    try:
        n1.wait_ready()
        answer = post(n1, n1.admin_token(), {"action": "reboot", "reason": "try", "confirm": "n1"})
        assert answer.status_code == 503, answer.text
        assert answer.headers["content-type"].startswith("application/problem+json")
        assert "nothing was done" in answer.json()["detail"]
        with n1.admin_client() as client:
            assert client.get("/readyz").status_code == 200
            assert states(client) == {"n1": "alive"}
        assert [e["outcome"] for e in audit(n1, n1.admin_token())] == ["failed"]
    finally:
        n1.stop()
