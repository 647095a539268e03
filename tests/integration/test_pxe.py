"""A machine PXE-boots the live image and becomes a ready node: from `python -m pxe serve`, and
from a real `debvisor serve --pxe-http` node configured through its API, where two machines,
one after the other, boot with the enrolment credential their script carries (debvisor.enrol=),
are approved by the node's allow-list of MACs, get their join token over TLS and join its
cluster, seen alike through the server and through the first machine's own API.

Lab: a bridge in a switch namespace, one host namespace (the boot server) on a veth, and a
tap on the same bridge for each QEMU guest (TCG, virtio-net with Debian's ipxe-qemu ROM, `-boot n`;
QEMU itself runs inside the switch namespace, so its tap never exists in the root one).
dnsmasq runs in full DHCP mode (proxy mode would need a second DHCP server) and sends IPv6
router advertisements, without which iPXE waits ~13 s more.

The guest boots: iPXE (QEMU's NIC ROM) -> DHCP -> HTTP boot.ipxe (once without, once with its
MAC) -> kernel and initramfs over HTTP -> live-boot's DHCP and fetch of the squashfs over
HTTP -> the appliance. Ready means GET https://GUEST:8443/readyz answers 200, asked from the
server's namespace. Milestones (seconds after power-on, when first seen in the server's log,
polled each second) and power-on-to-ready are printed and recorded as test properties.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.clusterlab import ClusterNode, bootstrap_admin_token
from tests.integration.test_image import BOOT_BUDGET, TCG_CPU, booted, image, tail
from tests.kit.need import require, require_tool
from tests.kit.procs import LONG_LIVED, assert_not_root, children_named
from tests.kit.wait import wait_until
from tests.netns import Host, Lab, _run

pytestmark = [pytest.mark.integration, pytest.mark.qemu, pytest.mark.privileged]
__all__ = ["image"]  # the module-scoped build fixture, shared

SUBNET = "10.98.0.0/24"
PREFIX6 = "fd00:98::/64"
GUEST_MAC = "52:54:00:98:00:50"
GUEST_IP = "10.98.0.50"
SECOND_MAC = "52:54:00:98:00:51"
SECOND_IP = "10.98.0.51"
HTTP_PORT = 8080
# QEMU's NIC ROM (ipxe-qemu) is iPXE already: it says so in its DHCP user class and is handed
# the script URL at once, so the TFTP chainload of undionly.kpxe (real PXE firmware) is not
# exercised here; its dnsmasq options are unit-tested.
MILESTONES = {
    "dhcp (iPXE)": "DHCPACK",
    "boot.ipxe": "PXE: boot.ipxe for",
    "vmlinuz": "PXE: vmlinuz",
    "initrd.img": "PXE: initrd.img",
    "dhcp (initramfs)": "vendor class: Linux ipconfig",
    "filesystem.squashfs": "PXE: filesystem.squashfs",
}


@dataclass
class Booted:
    seconds: float  # power-on to the first 200 from /readyz
    milestones: dict[str, float]
    console: str


def _requirements() -> None:
    require_tool("dnsmasq", "qemu-system-x86_64", "curl")
    require(Path("/usr/lib/ipxe/undionly.kpxe").exists(), "Debian's ipxe package is missing")
    require(Path("/usr/lib/ipxe/qemu/efi-virtio.rom").exists(), "Debian's ipxe-qemu package is missing")


def _lab_tap(lab: Lab) -> str:
    """An IPv6 address for the server (dnsmasq's RAs need one in the prefix) and the guest's tap."""
    server = lab.host(0)
    _run(["ip", "-n", server.netns, "addr", "add", "fd00:98::10/64", "dev", server.ifname])
    return _tap(lab, "tap")


def _tap(lab: Lab, suffix: str) -> str:
    tap = f"{lab.prefix}{suffix}"
    _run(["ip", "-n", lab.switch_netns, "tuntap", "add", "dev", tap, "mode", "tap"])
    _run(["ip", "-n", lab.switch_netns, "link", "set", tap, "master", lab.bridge, "up"])
    return tap


def _boot(
    lab: Lab,
    tap: str,
    tmp_path: Path,
    server_log: Path,
    *,
    then: Callable[[], None] | None = None,
    milestones: dict[str, str] = MILESTONES,
    mac: str = GUEST_MAC,
    ip: str | Callable[[], str | None] = GUEST_IP,
    disk: Path | None = None,
    power_off: bool = False,
) -> Booted:
    """Power on a PXE-booting guest, wait for its /readyz, run `then` while it still runs.

    Milestones are looked for in what the server logged after this guest's power-on, so a
    second guest's are its own. `ip` is the guest's address, or a function called once a
    second that answers it once known (and may act meanwhile: approve a waiting machine).
    `disk` is attached as a virtio disk (a DEBVISOR-DATA partition); with `power_off`, the
    guest is shut down by its ACPI power button after `then` (its disk written out), not killed.
    """
    server = lab.host(0)
    logged_before = len(server_log.read_bytes())
    argv = [
        "ip", "netns", "exec", lab.switch_netns,
        "qemu-system-x86_64", "-accel", "tcg", "-M", "pc", "-cpu", TCG_CPU, "-smp", "2", "-m", "2048",
        "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
        "-serial", f"file:{tmp_path / 'console.log'}",
        "-monitor", f"unix:{tmp_path / 'monitor.sock'},server=on,wait=off",
        "-netdev", f"tap,id=n0,ifname={tap},script=no,downscript=no",
        # virtio-net, as most hypervisors give their guests: an emulated e1000 (register-level
        # emulation of every packet) made this boot ~4 s slower under TCG (60.7 vs 56.7 s,
        # back to back), a cost of the emulator that no real NIC has.
        "-device", f"virtio-net-pci,netdev=n0,mac={mac}",
        "-boot", "n",
    ]  # fmt: skip
    if disk is not None:
        argv += ["-drive", f"file={disk},format=raw,if=virtio"]
    seen: dict[str, float] = {}
    with booted(argv, tmp_path) as guest:
        deadline = guest.started + BOOT_BUDGET
        while time.monotonic() < deadline:
            if guest.proc.poll() is not None:
                pytest.fail(f"QEMU exited ({guest.proc.returncode}):\n{tail(guest)}", pytrace=False)
            text = server_log.read_bytes()[logged_before:].decode(errors="replace")
            for label, marker in milestones.items():
                if label not in seen and marker in text:
                    seen[label] = round(time.monotonic() - guest.started, 1)
            address = ip() if callable(ip) else ip
            if "filesystem.squashfs" in seen and address is not None and _ready(server, address):
                ready = time.monotonic() - guest.started
                if then is not None:
                    then()
                if power_off:
                    guest.power_off(timeout=120.0)
                return Booted(ready, seen, guest.console_text())
            time.sleep(1.0)
        pytest.fail(
            f"not ready within {BOOT_BUDGET:.0f} s; milestones {seen}\nserver log:\n{_tail(server_log)}\n"
            f"console:\n{tail(guest)}",
            pytrace=False,
        )


def _ready(server: Host, ip: str) -> bool:
    answer = server.run(["curl", "-sk", "--max-time", "3", f"https://{ip}:8443/readyz"], check=False)
    return answer.returncode == 0 and bool(json.loads(answer.stdout or "{}").get("ready"))


def _record(
    what: str, booted: Booted, record_property: Callable[[str, object], None], milestones: dict[str, str] = MILESTONES
) -> None:
    record_property("power_on_to_ready_seconds", round(booted.seconds, 1))
    record_property("milestones", json.dumps(booted.milestones))
    print(f"\n{what}: power-on to /readyz {booted.seconds:.1f} s; milestones (s after power-on): {booted.milestones}")
    assert set(booted.milestones) == set(milestones)


def _dnsmasq_dropped_root(parent: int, log_path: Path) -> None:
    """The dnsmasq that `parent` started runs without root (it logs its TFTP root after the drop);
    the boot that follows shows its DHCP and TFTP still work."""
    wait_until(lambda: "TFTP root is" in log_path.read_text(errors="replace"), 20.0)
    pids = children_named(parent, "dnsmasq")
    assert len(pids) == 1, pids
    assert_not_root(pids[0])


def test_a_machine_pxe_boots_from_the_standalone_boot_server(
    image: Path, tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    _requirements()
    with Lab(1, SUBNET, ipv6=True) as lab:
        tap = _lab_tap(lab)
        server = lab.host(0)
        log_path = tmp_path / "pxe-server.log"
        with log_path.open("wb") as log:
            proc = server.popen(
                [
                    sys.executable, "-m", "pxe", "serve",
                    "--listen", f"{server.address}:{HTTP_PORT}",
                    "--http-url", f"http://{server.address}:{HTTP_PORT}",
                    "--interface", server.ifname,
                    "--mode", "full", "--range", "10.98.0.100,10.98.0.150",
                    "--ipv6-prefix", PREFIX6,
                    "--boot-files", str(image),
                    "--state-dir", str(tmp_path / "state"),
                    "--machine", f"{GUEST_MAC}=pxe-node@{GUEST_IP}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )  # fmt: skip
        try:
            wait_until(lambda: "started dnsmasq" in log_path.read_text(errors="replace"), 20.0)
            _dnsmasq_dropped_root(proc.pid, log_path)
            result = _boot(lab, tap, tmp_path, log_path)
            # Read before stopping: the stop signals the server's whole process group, and
            # dnsmasq may exit on its own SIGTERM before the server stops it in order.
            served = log_path.read_text(errors="replace")
        finally:
            server.kill_process(proc, 15, wait=10.0)
    _record("standalone boot server", result, record_property)
    assert "debvisor.name=pxe-node" in result.console
    assert "dnsmasq exited" not in served  # it never crashed while the machine booted


def test_a_node_pxe_boots_two_machines_that_join_its_cluster(
    image: Path, tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    # A real node is the boot server; the first guest boots with a join token, then, while it
    # runs, a second one with another. Both enlist and join, and the cluster is seen the same
    # through the first guest's own API (REST through any node, with the server's API token).
    _requirements()
    with Lab(1, SUBNET, ipv6=True) as lab:
        tap, second_tap = _lab_tap(lab), _tap(lab, "tap2")
        host = lab.host(0)
        node = ClusterNode(tmp_path, host, "pxe-server")
        node.start(extra=["--pxe-http", f"{host.address}:{HTTP_PORT}", "--pxe-files", str(image)])
        try:
            node.wait_ready(60.0)
            api_token = bootstrap_admin_token(node)
            api = node.client()
            config = {
                "enabled": True,
                "interface": host.ifname,
                "mode": "full",
                "range_start": "10.98.0.100",
                "range_end": "10.98.0.150",
                "ipv6_prefix": PREFIX6,
                "http_url": f"http://{host.address}:{HTTP_PORT}",
                "machines": {
                    GUEST_MAC: {"name": "pxe-node", "ip": GUEST_IP},
                    SECOND_MAC: {"name": "pxe-node-2", "ip": SECOND_IP},
                },
                "approve_macs": [GUEST_MAC, SECOND_MAC],  # no operator in this test: the allow-list approves
            }
            put = api.put("/api/v1/nodes/pxe-server/pxe", json=config)
            assert put.status_code == 200, put.text
            wait_until(lambda: "started dnsmasq" in node.log_path.read_text(errors="replace"), 20.0)
            assert node.proc is not None
            _dnsmasq_dropped_root(node.proc.pid, node.log_path)

            join_seconds: dict[str, float] = {}
            machines: dict[str, dict[str, object]] = {}

            def joined(name: str) -> None:
                join_seconds[name] = wait_until(lambda: node.members().get(name) == "alive", 60.0, interval=0.5)

            def enlisted(mac: str) -> bool:
                # A guest reports its inventory (debvisor.enlist=) from a thread after it starts.
                machines.update((m["mac"], m) for m in api.get("/api/v1/nodes/pxe-server/pxe/machines").json())
                return mac in machines and machines[mac]["hardware"] is not None

            seconds: list[Booted] = []
            through_guest: list[dict[str, str]] = []

            def second_guest() -> None:
                joined("pxe-node")
                wait_until(lambda: enlisted(GUEST_MAC), 60.0, interval=0.5)
                second_dir = tmp_path / "second"
                second_dir.mkdir()

                def then() -> None:
                    joined("pxe-node-2")
                    wait_until(lambda: enlisted(SECOND_MAC), 60.0, interval=0.5)
                    through_guest.append(_members_via(host, GUEST_IP, api_token))

                seconds.append(
                    _boot(lab, second_tap, second_dir, node.log_path, then=then, mac=SECOND_MAC, ip=SECOND_IP)
                )

            result = _boot(lab, tap, tmp_path, node.log_path, then=second_guest)
            members = node.members()
        finally:
            node.stop()
            if node.proc is not None:
                LONG_LIVED.discard(node.proc.pid)
    _record("debvisor serve --pxe-http", result, record_property)
    second = seconds[0]
    record_property("second_power_on_to_ready_seconds", round(second.seconds, 1))
    record_property("ready_to_member_seconds", round(join_seconds["pxe-node"], 1))
    print(
        f"second guest (first one running): power-on to /readyz {second.seconds:.1f} s; alive members "
        f"{join_seconds['pxe-node']:.1f} s and {join_seconds['pxe-node-2']:.1f} s after their /readyz"
    )
    assert set(second.milestones) == set(MILESTONES)
    everyone = {"pxe-server": "alive", "pxe-node": "alive", "pxe-node-2": "alive"}
    assert members == everyone
    assert through_guest == [everyone]
    seen = sorted((m["mac"], m["ip"], m["name"], m["state"]) for m in machines.values())
    assert seen == [(GUEST_MAC, GUEST_IP, "pxe-node", "joined"), (SECOND_MAC, SECOND_IP, "pxe-node-2", "joined")]
    for machine in machines.values():
        hardware = machine["hardware"]
        assert isinstance(hardware, dict)
        # What the guest itself saw: QEMU's 2 vCPUs, 2 GiB (less what firmware and kernel keep), its DMI.
        assert hardware["cpu_count"] == 2
        assert 1.5 * 2**30 < hardware["memory_bytes"] <= 2 * 2**30
        assert hardware["vendor"] == "QEMU"


def _members_via(server: Host, ip: str, token: str) -> dict[str, str]:
    """GET /api/v1/nodes on the node at `ip` (from the server's namespace): name -> state."""
    answer = server.run(
        ["curl", "-sk", "--max-time", "10", "-H", f"Authorization: Bearer {token}", f"https://{ip}:8443/api/v1/nodes"]
    )
    return {m["name"]: m["state"] for m in json.loads(answer.stdout)}


def test_proxy_dhcp_beside_the_sites_dhcp_server(
    image: Path, tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    # The default mode: another server (host 1, a plain dnsmasq) leases addresses and sends
    # RAs; the boot server (host 0) only answers PXE. Also: TFTP serves the BIOS loader.
    _requirements()
    with Lab(2, SUBNET, ipv6=True) as lab:
        tap = _lab_tap(lab)
        server, site = lab.host(0), lab.host(1)
        _run(["ip", "-n", site.netns, "addr", "add", "fd00:98::11/64", "dev", site.ifname])
        site_log = tmp_path / "site-dhcp.log"
        log_path = tmp_path / "pxe-server.log"
        with site_log.open("wb") as log:
            site_dhcp = site.popen(
                [
                    "dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--log-facility=-", "--port=0",
                    f"--interface={site.ifname}", "--bind-interfaces", "--user=root",
                    f"--dhcp-leasefile={tmp_path / 'site.leases'}",
                    "--dhcp-range=10.98.0.100,10.98.0.150,1h", f"--dhcp-host={GUEST_MAC},{GUEST_IP}",
                    "--enable-ra", "--dhcp-range=fd00:98::,ra-only",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )  # fmt: skip
        with log_path.open("wb") as log:
            proc = server.popen(
                [
                    sys.executable, "-m", "pxe", "serve",
                    "--listen", f"{server.address}:{HTTP_PORT}",
                    "--http-url", f"http://{server.address}:{HTTP_PORT}",
                    "--interface", server.ifname,
                    "--network", SUBNET,
                    "--boot-files", str(image),
                    "--state-dir", str(tmp_path / "state"),
                    "--machine", f"{GUEST_MAC}=proxy-node",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )  # fmt: skip
        try:
            wait_until(lambda: "started dnsmasq" in log_path.read_text(errors="replace"), 20.0)
            _dnsmasq_dropped_root(proc.pid, log_path)
            fetched = tmp_path / "undionly.kpxe"
            loader = site.run(
                ["curl", "-sS", "--max-time", "10", "-o", str(fetched), f"tftp://{server.address}/undionly.kpxe"]
            )
            assert loader.returncode == 0, loader.stderr
            milestones = {k: v for k, v in MILESTONES.items() if not k.startswith("dhcp")}
            result = _boot(lab, tap, tmp_path, log_path, milestones=milestones)
        finally:
            server.kill_process(proc, 15, wait=10.0)
            site.kill_process(site_dhcp, 15, wait=10.0)
    _record("proxy DHCP", result, record_property, milestones)
    assert fetched.read_bytes() == Path("/usr/lib/ipxe/undionly.kpxe").read_bytes()  # over TFTP
    assert "debvisor.name=proxy-node" in result.console
    assert "DHCPACK" not in log_path.read_text(errors="replace")  # addresses came from the site's server


def _tail(path: Path, lines: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
