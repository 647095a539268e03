"""What a PXE-booted machine does with what its data dir holds, with real node processes.

Issue 19, item 3: a machine whose data dir holds a lone cluster nobody used (an earlier boot
founded it before anyone named the machine) still enrols when it boots from a node with a
credential, waits pending, and once approved joins under the approved name, giving the lone
cluster up; after a restart it is the same member (same node id). And a machine rebooted while
it waits (a new script, a new credential) resumes the wait its data dir kept, or, if that wait
is over (forgotten meanwhile), enrols anew, instead of being refused as `already enrolled`.

The boot server and the machine are real `debvisor serve` processes on loopback (the server's
PXE on `lo` in proxy mode, as in security/test_pxe_attacks.py); the machine gets the kernel
command line its boot script carries (`--boot-params`), as the image passes /proc/cmdline. The
QEMU walk of the documented flow with a blank data disk is test_pxe_rack.py.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import httpx

from tests.integration.security.test_pxe_attacks import (
    BootedNode,
    _audit,
    _kernel_line,
    _script,
    _state,
    pxe_port,
    server,
)
from tests.kit.wait import wait_until
from tests.nodeproc import NodeProcess

__all__ = ["pxe_port", "server"]  # the fixtures, shared

MAC = "52:54:00:7e:19:03"


def _meta(data_dir: Path) -> dict[str, str]:
    db = sqlite3.connect(f"file:{data_dir / 'debvisor.db'}?mode=ro", uri=True)
    try:
        return {str(k): str(v) for k, v in db.execute("SELECT key, value FROM node_meta")}
    finally:
        db.close()


def _node_id(server: NodeProcess, machine: NodeProcess) -> str:
    """GET /api/v1/node on the machine itself, with the server's admin token (accounts are replicated)."""
    with httpx.Client(base_url=machine.url, verify=server.ssl_context(), timeout=5.0) as client:
        answer = client.get("/api/v1/node", headers={"Authorization": f"Bearer {server.admin_token()}"})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["cluster_id"] == _meta(server.data_dir)["cluster_id"]
    return str(body["node_id"])


def _members(server: NodeProcess) -> dict[str, str]:
    with server.admin_client() as api:
        return {n["name"]: n["state"] for n in api.get("/api/v1/nodes").json()}


def test_a_lone_cluster_nobody_used_does_not_keep_a_machine_from_joining(
    tmp_path: Path, server: NodeProcess, pxe_port: int
) -> None:
    data = tmp_path / "machine"
    # An earlier boot without enrolment (no debvisor.* at all: as from the ISO, or a standalone
    # `python -m pxe serve`) founded a one-node cluster on the data dir; nobody logged in.
    with BootedNode(data, extra_args=["--boot-params", "/dev/null"]) as earlier:
        earlier.wait_ready(60.0)
    lone_id = _meta(data)["cluster_id"]
    assert (data / "initial-admin-password").exists()

    cmdline = tmp_path / "cmdline"
    cmdline.write_text(_kernel_line(_script(pxe_port, MAC)) + "\n")
    machine = BootedNode(data, extra_args=["--boot-params", str(cmdline)])
    with machine:
        wait_until(lambda: _state(server, MAC) == "pending", 30.0, what="the machine to enrol")
        assert _meta(data)["cluster_id"] == lone_id  # kept while it waits: nobody decided yet
        with server.admin_client() as admin:
            approved = admin.post(f"/api/v1/nodes/{server.name}/pxe/machines/{MAC}/approve", json={"name": "rack1-n4"})
        assert approved.status_code == 200, approved.text
        machine.wait_ready(60.0)
        wait_until(lambda: _members(server).get("rack1-n4") == "alive", 30.0, what="the machine to be a member")
        assert _state(server, MAC) == "joined"
        node_id = _node_id(server, machine)
        assert "lone cluster nobody used" in machine.stderr()
    meta = _meta(data)
    assert (meta["name"], meta["replaced_lone_cluster"], meta["node_id"]) == ("rack1-n4", lone_id, node_id)
    assert not (data / "initial-admin-password").exists()  # the lone cluster's bootstrap admin went with it

    # Its next boot from the server carries a fresh credential; the data dir holds a member now,
    # so it neither enrols nor joins: the same node comes back.
    cmdline.write_text(_kernel_line(_script(pxe_port, MAC)) + "\n")
    with BootedNode(data, extra_args=["--boot-params", str(cmdline)]) as again:
        again.wait_ready(60.0)
        wait_until(lambda: _members(server).get("rack1-n4") == "alive", 30.0, what="the member to be back")
        assert _node_id(server, again) == node_id
        assert "debvisor.enrol= is ignored" in again.stderr()
        assert _state(server, MAC) == "joined"


def _approve(server: NodeProcess, mac: str, name: str) -> None:
    with server.admin_client() as admin:
        approved = admin.post(f"/api/v1/nodes/{server.name}/pxe/machines/{mac}/approve", json={"name": name})
    assert approved.status_code == 200, approved.text


def test_a_machine_rebooted_while_it_waits_resumes_the_wait_its_data_dir_kept(
    tmp_path: Path, server: NodeProcess, pxe_port: int
) -> None:
    data, cmdline = tmp_path / "machine", tmp_path / "cmdline"
    cmdline.write_text(_kernel_line(_script(pxe_port, MAC)) + "\n")
    with BootedNode(data, extra_args=["--boot-params", str(cmdline)]):
        wait_until(lambda: _state(server, MAC) == "pending", 30.0, what="the machine to enrol")
    assert (data / "enrolment").exists()  # on the data disk: it outlives the reboot
    # Rebooted from the network: a new script, a new credential.
    cmdline.write_text(_kernel_line(_script(pxe_port, MAC)) + "\n")
    with BootedNode(data, extra_args=["--boot-params", str(cmdline)]) as machine:
        wait_until(lambda: "(of its earlier boot)" in machine.stderr(), 30.0, what="the machine to resume its wait")
        _approve(server, MAC, "rack1-n5")
        machine.wait_ready(60.0)
        wait_until(lambda: _members(server).get("rack1-n5") == "alive", 30.0, what="the machine to be a member")
    assert [e["outcome"] for e in _audit(server, "pxe.enrol")] == ["success"]  # enrolled once, never refused


def test_a_machine_whose_kept_wait_is_over_enrols_anew(tmp_path: Path, server: NodeProcess, pxe_port: int) -> None:
    data, cmdline = tmp_path / "machine", tmp_path / "cmdline"
    cmdline.write_text(_kernel_line(_script(pxe_port, MAC)) + "\n")
    with BootedNode(data, extra_args=["--boot-params", str(cmdline)]):
        wait_until(lambda: _state(server, MAC) == "pending", 30.0, what="the machine to enrol")
    with server.admin_client() as admin:
        assert admin.delete(f"/api/v1/nodes/{server.name}/pxe/machines/{MAC}").status_code == 204
    cmdline.write_text(_kernel_line(_script(pxe_port, MAC)) + "\n")
    with BootedNode(data, extra_args=["--boot-params", str(cmdline)]) as machine:
        wait_until(lambda: _state(server, MAC) == "pending", 30.0, what="the machine to enrol again")
        assert "earlier boot is over" in machine.stderr()
        _approve(server, MAC, "rack1-n6")
        machine.wait_ready(60.0)
    assert [e["outcome"] for e in _audit(server, "pxe.enrol")] == ["success", "success"]
