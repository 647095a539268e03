"""A machine PXE-boots the live image from `python -m pxe serve` and becomes a ready node.

Lab: a bridge in a switch namespace, one host namespace (the boot server: dnsmasq in full
DHCP mode under `pxe.server.Supervisor`, and the /pxe files over plain HTTP) on a veth, and
a tap on the same bridge for a QEMU guest (TCG, e1000 with Debian's ipxe-qemu ROM, `-boot n`,
QEMU itself started inside the switch namespace so its tap never exists in the root one).

The guest boots: iPXE (QEMU's NIC ROM) -> DHCP -> HTTP boot.ipxe (once without,
once with its MAC) -> kernel and initramfs over HTTP -> live-boot fetches the squashfs over
HTTP -> the appliance. Ready means GET https://GUEST:8443/readyz answers 200, asked from the
server's namespace. Milestones (seconds after power-on, when first seen in the server's log, polled each second) and
power-on-to-ready are printed and recorded as test properties.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import require
from tests.integration.test_image import BOOT_BUDGET, booted, image, tail
from tests.netns import Lab, _run

pytestmark = [pytest.mark.integration, pytest.mark.qemu, pytest.mark.privileged]
__all__ = ["image"]  # the module-scoped build fixture, shared

SUBNET = "10.98.0.0/24"
PREFIX6 = "fd00:98::/64"
GUEST_MAC = "52:54:00:98:00:50"
GUEST_IP = "10.98.0.50"
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


def test_a_machine_pxe_boots_to_a_ready_node(
    image: Path, tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    for tool in ("dnsmasq", "qemu-system-x86_64"):
        require(shutil.which(tool) is not None, f"{tool} is missing (see .ci/packages)")
    require(Path("/usr/lib/ipxe/undionly.kpxe").exists(), "Debian's ipxe package is missing")
    require(Path("/usr/lib/ipxe/qemu/efi-e1000.rom").exists(), "Debian's ipxe-qemu package is missing")
    with Lab(1, SUBNET, ipv6=True) as lab:
        server = lab.host(0)
        _run(["ip", "-n", server.netns, "addr", "add", "fd00:98::10/64", "dev", server.ifname])
        tap = f"{lab.prefix}tap"
        _run(["ip", "-n", lab.switch_netns, "tuntap", "add", "dev", tap, "mode", "tap"])
        _run(["ip", "-n", lab.switch_netns, "link", "set", tap, "master", lab.bridge, "up"])
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
            _wait_for(lambda: "started dnsmasq" in log_path.read_text(errors="replace"), 20.0, log_path)
            argv = [
                "ip", "netns", "exec", lab.switch_netns,
                "qemu-system-x86_64", "-accel", "tcg", "-M", "pc", "-cpu", "max", "-smp", "2", "-m", "2048",
                "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
                "-serial", f"file:{tmp_path / 'console.log'}",
                "-monitor", f"unix:{tmp_path / 'monitor.sock'},server=on,wait=off",
                "-netdev", f"tap,id=n0,ifname={tap},script=no,downscript=no",
                "-device", f"e1000,netdev=n0,mac={GUEST_MAC}",
                "-boot", "n",
            ]  # fmt: skip
            seen: dict[str, float] = {}
            with booted(argv, tmp_path) as guest:
                deadline = guest.started + BOOT_BUDGET
                ready_at = None
                while time.monotonic() < deadline:
                    if guest.proc.poll() is not None:
                        pytest.fail(f"QEMU exited ({guest.proc.returncode}):\n{tail(guest)}", pytrace=False)
                    text = log_path.read_text(errors="replace")
                    for label, marker in MILESTONES.items():
                        if label not in seen and marker in text:
                            seen[label] = round(time.monotonic() - guest.started, 1)
                    if "filesystem.squashfs" in seen:
                        answer = server.run(
                            ["curl", "-sk", "--max-time", "3", f"https://{GUEST_IP}:8443/readyz"], check=False
                        )
                        if answer.returncode == 0 and '"ready":true' in answer.stdout.replace(" ", ""):
                            ready_at = time.monotonic() - guest.started
                            body = json.loads(answer.stdout)
                            break
                    time.sleep(1.0)
                console = guest.console_text()
                if ready_at is None:
                    pytest.fail(
                        f"not ready within {BOOT_BUDGET:.0f} s; milestones {seen}\nserver log:\n"
                        f"{_tail(log_path)}\nconsole:\n{tail(guest)}",
                        pytrace=False,
                    )
        finally:
            server.kill_process(proc, 15, wait=10.0)
    record_property("power_on_to_ready_seconds", round(ready_at, 1))
    record_property("milestones", json.dumps(seen))
    print(f"\nPXE power-on to /readyz: {ready_at:.1f} s; milestones (s after power-on): {seen}")
    assert body["ready"] is True
    assert set(seen) == set(MILESTONES)
    assert "debvisor.name=pxe-node" in console or "pxe-node" in console
    assert "dnsmasq exited" not in log_path.read_text(errors="replace")


def _wait_for(check: Callable[[], bool], seconds: float, log: Path) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    pytest.fail(f"the PXE server did not start:\n{_tail(log)}", pytrace=False)


def _tail(path: Path, lines: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
