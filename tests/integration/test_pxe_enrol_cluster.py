"""A machine PXE-booted from a node that is not a certificate authority joins the cluster.

Real `debvisor serve` nodes, each in a network namespace of a Lab: n0 founds the cluster and
serves PXE (dnsmasq in proxy mode on its veth, the boot files on its plain-HTTP port), n1
joins; root on n0's console then makes n1 the only authority (`debvisor authorities set`), so
n0 holds no CA key and
cannot make join tokens itself. A machine (a third node process on the Lab's third host,
started with the kernel command line of the script it fetched from n0 over the LAN, as the
image starts it) enrols with n0 and is approved there while n1 is down: it keeps polling and
the machine list says it waits for a certificate authority. Once n1 is back, n0 gets the
machine's join token from n1 over a signed node call, the machine joins at n1 (the token's
seed) under the approved name, and both ends audit it. Then the internal route is called as
an attacker would: unsigned, and signed with a certificate the CA signed but nobody
registered; both are refused and audited.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from appliance.cluster.machine_tokens import MACHINE_TOKEN_PATH
from appliance.cluster.nodeauth import sign_headers
from appliance.identity import pki
from tests.clusterlab import API_PORT, ClusterNode, bootstrap_admin_token
from tests.kit.need import require_available, require_tool
from tests.kit.wait import wait_until
from tests.netns import Host, Lab, available
from tests.nodeproc import DEBVISOR
from tests.nsclient import NamespaceClient, enter_netns

pytestmark = [pytest.mark.integration, pytest.mark.privileged]

SUBNET = "10.96.18.0/24"
PXE_PORT = 8080
MAC = "52:54:00:7e:18:31"
NAME = "rack-m1"


class BootedMachine(ClusterNode):
    """A node started as the image starts a PXE-booted machine: no --name, its settings from
    the kernel command line its boot script rendered (`--boot-params`)."""

    def __init__(self, lab_dir: Path, host: Host, cmdline: Path) -> None:
        super().__init__(lab_dir, host, "machine")
        self.cmdline = cmdline

    def command(self, *, join: str | None = None, extra: list[str] | None = None) -> list[str]:
        argv = super().command(join=join, extra=[*(extra or []), "--boot-params", str(self.cmdline)])
        at = argv.index("--name")
        del argv[at : at + 2]
        return argv


class Cluster(SimpleNamespace):
    lab: Lab
    boot: ClusterNode  # n0: serves PXE, not an authority
    authority: ClusterNode  # n1: the only authority
    lab_dir: Path


def _lan_get(host: Host, url: str) -> httpx.Response:
    """A plain-HTTP GET from inside `host`, as a booting machine on the LAN makes it."""
    with ThreadPoolExecutor(max_workers=1, initializer=enter_netns, initargs=(host.netns,)) as pool:
        return pool.submit(lambda: httpx.get(url, timeout=5.0, trust_env=False)).result(timeout=15)


def _holders(node: ClusterNode) -> dict[str, bool]:
    return {a["name"]: a["holds_key"] for a in node.client().get("/api/v1/cluster/authorities").json()}


def _audit(node: ClusterNode, action: str) -> list[dict[str, Any]]:
    response = node.client().get("/api/v1/audit", params={"action": action, "limit": 1000})
    assert response.status_code == 200, response.text
    return list(response.json()["entries"])


def _machine(node: ClusterNode) -> dict[str, Any]:
    response = node.client().get(f"/api/v1/nodes/{node.name}/pxe/machines/{MAC}")
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    require_available(available())
    require_tool("dnsmasq")
    lab_dir = tmp_path_factory.mktemp("pxecluster")
    files = lab_dir / "files"
    files.mkdir()
    with Lab(3, SUBNET) as lab:
        boot = ClusterNode(lab_dir, lab.host(0), "n0")
        authority = ClusterNode(lab_dir, lab.host(1), "n1")
        try:
            boot.start(extra=["--pxe-http", f"{boot.host.address}:{PXE_PORT}", "--pxe-files", str(files)])
            boot.wait_ready()
            token = bootstrap_admin_token(boot)
            created = boot.client().post("/api/v1/cluster/join-tokens", json={})
            assert created.status_code == 201, created.text
            authority.token = token
            authority.start(join=created.json()["token"])
            authority.wait_ready()
            wait_until(lambda: boot.members() == authority.members() == {"n0": "alive", "n1": "alive"}, 30)
            # n1 is an authority by default (one of the first three); once it holds the key, root
            # on n0's console moves the set to n1 only, and n0 deletes its copy.
            wait_until(lambda: _holders(boot) == {"n0": True, "n1": True}, 30)
            moved = subprocess.run(
                [*DEBVISOR, "authorities", "set", "n1", "--data-dir", str(boot.data_dir)],
                capture_output=True, text=True, timeout=30, check=False,
            )  # fmt: skip
            assert moved.returncode == 0, moved.stderr
            wait_until(lambda: _holders(boot) == {"n1": True}, 30)
            wait_until(lambda: not (boot.data_dir / "pki" / "ca.key").exists(), 30)
            config = {
                "enabled": True,
                "interface": boot.host.ifname,
                "network": SUBNET,
                "http_url": f"http://{boot.host.address}:{PXE_PORT}",
            }
            enabled = boot.client().put("/api/v1/nodes/n0/pxe", json=config)
            assert enabled.status_code == 200, enabled.text
            yield Cluster(lab=lab, boot=boot, authority=authority, lab_dir=lab_dir)
        finally:
            for node in (boot, authority):
                node.stop()


def test_a_machine_approved_on_a_boot_server_that_is_no_authority_joins_at_the_authority(cluster: Cluster) -> None:
    boot, authority = cluster.boot, cluster.authority
    assert boot.client().post("/api/v1/cluster/join-tokens", json={}).status_code == 201  # forwarded to n1
    script = _lan_get(cluster.lab.host(2), f"http://{boot.host.address}:{PXE_PORT}/pxe/boot.ipxe?mac={MAC}")
    assert script.status_code == 200, script.text
    assert "debvisor.enrol=dve_" in script.text
    assert "dvj_" not in script.text
    cmdline = cluster.lab_dir / "cmdline"
    cmdline.write_text(script.text.splitlines()[1].removeprefix("kernel ").split(" ", 1)[1] + "\n")
    machine = BootedMachine(cluster.lab_dir, cluster.lab.host(2), cmdline)
    machine.token = boot.token
    try:
        machine.start()
        wait_until(lambda: _machine(boot)["state"] == "pending", 60, interval=0.5)

        # No authority alive: the approved machine waits (it does not fail) and the list says why.
        authority.stop()
        wait_until(lambda: boot.members()["n1"] in ("left", "dead"), 30, interval=0.3)
        approved = boot.client().post(f"/api/v1/nodes/n0/pxe/machines/{MAC}/approve", json={"name": NAME})
        assert approved.status_code == 200, approved.text
        wait_until(lambda: (_machine(boot)["enrolment"] or {}).get("waiting") is not None, 30, interval=0.5)
        shown = _machine(boot)
        assert shown["state"] == "approved"
        assert shown["enrolment"]["waiting"].startswith("waiting for a certificate authority: none is alive")
        wait_until(lambda: "waiting for a certificate authority" in machine.log_tail(), 15, interval=0.3)
        time.sleep(4.0)  # a poll or more later: still waiting, still running
        assert machine.proc is not None
        assert machine.proc.poll() is None, machine.log_tail()
        assert not (machine.data_dir / "pki").exists()

        # The authority is back: the next poll gets a token made by n1, and the machine joins at n1.
        authority.start()
        authority.wait_ready()
        machine.wait_ready(90)
        wait_until(lambda: authority.members().get(NAME) == "alive", 30, interval=0.3)
        wait_until(lambda: boot.members().get(NAME) == "alive", 30, interval=0.3)
        wait_until(lambda: _machine(boot)["state"] == "joined", 30, interval=0.5)
        assert _machine(boot)["enrolment"]["waiting"] is None
        assert machine.client().get("/api/v1/node").json()["name"] == NAME  # the cluster's admin token works there
    finally:
        machine.stop()

    joined = [json.loads(x) for x in machine.log_path.read_text().splitlines() if x.startswith("{")]
    assert any(
        line.get("msg") == "joined cluster" and line.get("seeds") == f"{authority.host.address}:{API_PORT}"
        for line in joined
    ), joined[-5:]
    made = [
        e for e in _audit(authority, "cluster.token.create") if e["user"] == "node:n0" and e["outcome"] == "success"
    ]
    assert len(made) == 1, made
    assert made[0]["detail"] == f"for PXE machine {MAC} approved by admin, asked by node n0; valid 900 s"
    token_id = made[0]["target"].removeprefix("join token ")
    joins = [e for e in _audit(authority, "cluster.join") if e["target"] == NAME]
    # (the set has fewer than three members, but only the founder designates by default: n1 does not)
    assert [(e["outcome"], e["detail"]) for e in joins] == [("success", f"token {token_id}")]
    assert _holders(boot) == {"n1": True}
    handed = [(e["outcome"], e["detail"]) for e in _audit(boot, "pxe.enrol.token")]
    assert handed[0][0] == "failed"
    assert handed[0][1].startswith("waiting for a certificate authority: none is alive")
    assert handed[1:] == [("success", f"join token {token_id} made by n1, handed over, to join as {NAME}")]
    everything = json.dumps(_audit(boot, "pxe.") + _audit(authority, "cluster.")) + machine.log_path.read_text()
    assert "dvj_" not in everything


def test_the_internal_route_refuses_unsigned_calls_and_unregistered_certificates(cluster: Cluster) -> None:
    authority, boot = cluster.authority, cluster.boot
    body = json.dumps({"mac": "52:54:00:7e:18:99", "approver": "mallory"}).encode()
    ca_key = pki.key_from_pem((authority.data_dir / "pki" / "ca.key").read_bytes())  # a stolen copy
    ca_cert = pki.cert_from_pem((authority.data_dir / "pki" / "ca.crt").read_bytes())
    rogue_key = pki.new_key()
    rogue = pki.issue_node_cert(
        ca_key, ca_cert, rogue_key.public_key(), name="rogue",
        addresses=[ipaddress.ip_address(boot.host.address)], now=dt.datetime.now(dt.UTC),
    )  # fmt: skip
    boot_key = pki.key_from_pem((boot.data_dir / "pki" / "node.key").read_bytes())
    boot_cert = pki.cert_from_pem((boot.data_dir / "pki" / "node.crt").read_bytes())

    def signed(cert: Any, key: Any) -> dict[str, str]:
        headers = sign_headers(cert, key, method="POST", path=MACHINE_TOKEN_PATH, body=body, now=time.time())
        return headers | {"content-type": "application/json"}

    # From n0's namespace, at n1's API, with no credential at all.
    with NamespaceClient(boot.host.netns, authority.url, authority.data_dir / "pki" / "ca.crt") as anonymous:
        unsigned = anonymous.post(MACHINE_TOKEN_PATH, content=body, headers={"content-type": "application/json"})
        assert unsigned.status_code == 401, unsigned.text
        minted = anonymous.post(MACHINE_TOKEN_PATH, content=body, headers=signed(rogue, rogue_key))
        assert minted.status_code == 401, minted.text
        assert "not registered" in minted.json()["detail"]
        control = anonymous.post(MACHINE_TOKEN_PATH, content=body, headers=signed(boot_cert, boot_key))
        assert control.status_code == 201, control.text  # a member's signature is what it takes
        assert "dvj_" not in anonymous.get("/api/v1/cluster/ca").text
    denied = [e for e in _audit(authority, "cluster.token.create") if e["outcome"] == "denied"]
    assert [e["user"] for e in denied] == ["node:?", "node:?"]
    assert "no valid node signature" in denied[0]["detail"]
    assert "not registered" in denied[1]["detail"]
    made = [e for e in _audit(authority, "cluster.token.create") if e["outcome"] == "success"]
    assert "for PXE machine 52:54:00:7e:18:99 approved by mallory, asked by node n0" in made[-1]["detail"]
