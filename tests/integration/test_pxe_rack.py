"""docs/pxe-rack.md walked under QEMU: "boot first, name after", with a data disk.

An unnamed machine with a blank DEBVISOR-DATA disk PXE-boots from a real node (no settings for
its MAC, no approval policy), enrols and waits `pending`; an admin finds it with the docs'
"name machines as they appear" listing and approves it with the docs' `debvisor pxe approve`
command, both taken from docs/pxe-rack.md and run as written (the node and machine names are
the docs' own); the machine joins under that name with its node state on the disk. It is then
powered off and booted again from the network: the disk's node comes back as the same member
(same node id), without enrolling or joining again. (A disk holding a lone cluster nobody used
is test_pxe_data_dir.py, with node processes.)

Lab and guest as in test_pxe.py (full DHCP mode from the node; QEMU in the switch namespace).
"""

from __future__ import annotations

import json
import re
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.clusterlab import ClusterNode, bootstrap_admin_token
from tests.conftest import LONG_LIVED
from tests.integration.test_image import data_disk, disk_listing, image
from tests.integration.test_pxe import HTTP_PORT, PREFIX6, SUBNET, _boot, _lab_tap, _record, _requirements
from tests.kit.wait import wait_until
from tests.netns import Host, Lab

pytestmark = [pytest.mark.integration, pytest.mark.qemu, pytest.mark.privileged]
__all__ = ["image"]  # the module-scoped build fixture, shared

DOC = (Path(__file__).resolve().parents[2] / "docs" / "pxe-rack.md").read_text()
SERVER = "rack1-n1"  # the docs' names, so that their commands run as written
NAME = "rack1-n2"
MAC = "52:54:00:98:00:52"
LOOP = re.compile(r"```sh\n(while sleep 10; do\n.*?)```", re.DOTALL)


def _documented() -> tuple[str, str]:
    """The naming loop's listing pipeline and its approve command, as docs/pxe-rack.md shows them."""
    found = LOOP.search(DOC)
    assert found, "docs/pxe-rack.md no longer shows the `while sleep 10` naming loop"
    loop = found.group(1)
    listing = re.search(r"(debvisor pxe machines rack1-n1 --json \\\n\s*\| jq -r '[^']*')", loop)
    approve = re.search(r'(debvisor pxe approve rack1-n1 "\$mac" --name "\$name")', loop)
    assert listing, f"the naming loop's listing changed:\n{loop}"
    assert approve, f"the naming loop's approval changed:\n{loop}"
    return listing.group(1), approve.group(1)


CHECK = """curl -s -H "$auth" $API/nodes | jq -r '.[] | [.name, .state] | @tsv'"""  # step 5


class Admin:
    """`debvisor` run by bash inside the server's namespace, with the URL, CA and token an admin's
    current remote would give it (docs/cli.md)."""

    def __init__(self, host: Host, node: ClusterNode, token: str) -> None:
        self.host = host
        ca = node.data_dir / "pki" / "ca.crt"
        self.env = [f"DEBVISOR_URL={node.url}", f"DEBVISOR_CA={ca}", f"DEBVISOR_TOKEN={token}"]
        # The docs' `curl ...` stands for curl with the cluster CA (install.md); their variables.
        self.env += [f"CURL_CA_BUNDLE={ca}", f"API={node.url}/api/v1", f"auth=Authorization: Bearer {token}"]

    def sh(self, script: str, **variables: str) -> str:
        prelude = f'debvisor() {{ {shlex.join([sys.executable, "-m", "appliance"])} "$@"; }}\n'
        prelude += "".join(f"{k}={shlex.quote(v)}\n" for k, v in variables.items())
        result = self.host.run(["env", *self.env, "bash", "-eo", "pipefail", "-c", prelude + script], timeout=60.0)
        assert result.returncode == 0, f"{script}\n{result.stderr}"
        return result.stdout


def _guest(host: Host, ip: str, token: str, path: str) -> Any:
    """GET `path` on the guest's own API (from the server's namespace) with the server's API token."""
    answer = host.run(
        ["curl", "-sk", "--max-time", "10", "-H", f"Authorization: Bearer {token}", f"https://{ip}:8443{path}"]
    )
    return json.loads(answer.stdout)


def test_the_docs_still_show_the_commands_this_test_runs() -> None:
    _documented()
    assert f"{CHECK}\n" in DOC


def test_boot_first_name_after_with_a_data_disk(
    image: Path, tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    _requirements()
    listing, approve = _documented()
    with Lab(1, SUBNET, ipv6=True) as lab:
        tap = _lab_tap(lab)
        host = lab.host(0)
        node = ClusterNode(tmp_path, host, SERVER)
        node.start(extra=["--pxe-http", f"{host.address}:{HTTP_PORT}", "--pxe-files", str(image)])
        try:
            node.wait_ready(60.0)
            token = bootstrap_admin_token(node)
            api = node.client()
            # Step 2, in full DHCP mode: no settings for the machine, no approval policy (step 3's default).
            config = {
                "enabled": True, "interface": host.ifname, "mode": "full",
                "range_start": "10.98.0.100", "range_end": "10.98.0.150", "ipv6_prefix": PREFIX6,
                "http_url": f"http://{host.address}:{HTTP_PORT}",
            }  # fmt: skip
            put = api.put(f"/api/v1/nodes/{SERVER}/pxe", json=config)
            assert put.status_code == 200, put.text
            wait_until(lambda: "started dnsmasq" in node.log_path.read_text(errors="replace"), 20.0)
            disk = data_disk(tmp_path / "data.img")
            for workdir in ("first", "again"):
                (tmp_path / workdir).mkdir()
            admin = Admin(host, node, token)
            machine = f"/api/v1/nodes/{SERVER}/pxe/machines/{MAC}"
            seen: dict[str, Any] = {}

            def approve_when_pending() -> str | None:
                """Step 4, once a second while the guest boots: approve it once it waits; its address."""
                if "ip" in seen:
                    return str(seen["ip"])
                answer = api.get(machine)
                if answer.status_code != 200 or answer.json()["state"] != "pending":
                    return None
                seen["pending"] = answer.json()
                seen["pending_after"] = time.monotonic() - seen["powered_on"]
                assert NAME not in node.members()
                waiting = [line.split("\t") for line in admin.sh(listing).splitlines()]
                assert [row[0] for row in waiting] == [MAC]
                mac, _ip, _serial = waiting[0]
                seen["approved"] = admin.sh(approve, mac=mac, name=NAME)
                seen["ip"] = answer.json()["enrolment"]["ip"]
                return None

            def member() -> None:
                wait_until(lambda: node.members().get(NAME) == "alive", 60.0, interval=0.5)
                seen["cluster"] = admin.sh(CHECK)
                seen["node"] = _guest(host, seen["ip"], token, "/api/v1/node")
                seen["joined"] = api.get(machine).json()

            seen["powered_on"] = time.monotonic()  # QEMU starts a moment later
            first = _boot(
                lab, tap, tmp_path / "first", node.log_path, mac=MAC, ip=approve_when_pending, disk=disk,
                then=member, power_off=True,
            )  # fmt: skip
            stored = disk_listing(disk, "/node")

            def again() -> None:
                wait_until(lambda: node.members().get(NAME) == "alive", 60.0, interval=0.5)
                seen["node again"] = _guest(host, seen["ip"], token, "/api/v1/node")
                seen["joined again"] = api.get(machine).json()

            second = _boot(
                lab, tap, tmp_path / "again", node.log_path, mac=MAC, ip=lambda: str(seen["ip"]), disk=disk,
                then=again,
            )  # fmt: skip
            audit = api.get("/api/v1/audit", params={"action": "pxe.enrol", "limit": 100}).json()["entries"]
            cluster_id = node.client().get("/api/v1/node").json()["cluster_id"]
        finally:
            node.stop()
            if node.proc is not None:
                LONG_LIVED.discard(node.proc.pid)
    _record("boot first, name after (data disk)", first, record_property)
    record_property("power_on_to_pending_seconds", round(seen["pending_after"], 1))
    record_property("reboot_power_on_to_ready_seconds", round(second.seconds, 1))
    print(
        f"pending (and approved) {seen['pending_after']:.1f} s after power-on; "
        f"reboot from the data disk: power-on to /readyz {second.seconds:.1f} s"
    )

    pending = seen["pending"]
    assert pending["name"] is None  # nobody named it before it booted
    assert pending["enrolment"]["name"] is None
    assert "debvisor.name=" not in first.console  # its script carried no name
    assert "debvisor.enrol=dve_" in first.console
    assert "node state in /var/lib/debvisor" in first.console  # the data disk, not RAM
    assert seen["approved"].strip() == f"{MAC} approved to join as {NAME}", seen["approved"]
    assert (seen["node"]["name"], seen["node"]["cluster_id"]) == (NAME, cluster_id)
    assert seen["joined"]["state"] == "joined"
    assert sorted(seen["cluster"].splitlines()) == [f"{SERVER}\talive", f"{NAME}\talive"]
    assert "debvisor.db" in stored, stored  # its membership is on the disk
    assert "initial-admin-password" not in stored  # it joined: it never founded a cluster of its own

    # Booted again from the network: the same member, without a second enrolment or join.
    assert "node state in /var/lib/debvisor" in second.console
    assert seen["node again"]["node_id"] == seen["node"]["node_id"]
    assert seen["node again"]["cluster_id"] == cluster_id
    assert seen["node again"]["started_at"] > seen["node"]["started_at"]
    assert seen["joined again"]["state"] == "joined"
    assert seen["joined again"]["enrolment"]["token_id"] == seen["joined"]["enrolment"]["token_id"]
    assert [e["outcome"] for e in audit] == ["success"]  # enrolled once
