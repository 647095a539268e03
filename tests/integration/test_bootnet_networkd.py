"""The boot-time network set-up against the real systemd-networkd: the unit it writes wins over
the image's DHCP fallback on the boot port, and only there.

No systemd as PID 1 is needed: systemd-networkd runs as a plain process inside a throwaway
network namespace (two veth ends named eth0 and eth1, so the fallback's `Name=en* eth*`
matches both) and a private mount namespace, where tmpfs hides the host's /run/systemd and
/etc/systemd/network and holds the image's 90-debvisor-dhcp.network instead. /sys is
remounted read-only there so that networkd does not wait for a udev that is not running (it
treats a read-only /sys as "no udev", as in a container). The entry point runs first, exactly
as the image's unit runs it, then networkd; the test reads which .network file networkd
applied to each link (its state files) and the addresses and routes.

The test subnet is TEST-NET-2 (198.51.100.0/24); nothing is sent to it, and the root
namespace holds an `unreachable` route for it meanwhile (TESTBED.md).
Deliberately left out: the no-BOOTIF path (veths have no `device` in sysfs, so they are not
"physical ports"; unit-tested with a fake) and DHCP actually getting a lease.
"""

from __future__ import annotations

import json
import secrets
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from appliance.bootnet import UNIT_NAME
from tests.kit.need import require, require_root, require_tool
from tests.kit.procs import signal_process

pytestmark = [pytest.mark.integration, pytest.mark.privileged]

REPO = Path(__file__).resolve().parents[2]
NETWORKD = Path("/lib/systemd/systemd-networkd")
FALLBACK = REPO / "image" / "rootfs" / "etc" / "systemd" / "network" / "90-debvisor-dhcp.network"
SUBNET = "198.51.100.0/24"
APPLY_SECONDS = 60  # networkd applies both links in ~1 s idle; a loaded CI machine needs far more
BOOT_MAC = "52:54:00:00:00:01"
OTHER_MAC = "52:54:00:00:00:02"

# Inside the namespaces: run the entry point as the image's unit does, then networkd until
# both links have a .network file applied (and, for a static address, the address and the
# default route are there), print what networkd did, stop it. The wait has a wall-clock
# deadline and fails loudly when it passes: a count of polls stretched with the machine's load
# (each poll starts processes) and, once spent, printed a half-applied state for the
# assertions to trip over.
SCRIPT = r"""
set -eu
mount -o remount,bind,ro /sys
mount -t tmpfs tmpfs /run/systemd
mount -t tmpfs tmpfs /etc/systemd/network
cp "$FALLBACK" /etc/systemd/network/
"$PYTHON" -m appliance.bootnet --networkd-dir /run/systemd/network "$CMDLINE"
"$NETWORKD" >"$LOG" 2>&1 &
networkd=$!
trap 'kill $networkd 2>/dev/null; wait $networkd 2>/dev/null || true' EXIT
deadline=$(( $(date +%s) + APPLY_SECONDS ))
until
  files=$(cat /run/systemd/netif/links/* 2>/dev/null | grep -c '^NETWORK_FILE=' || true)
  [ "$files" = 2 ] && { [ -z "$EXPECT" ] || ip route show default | grep -q "$EXPECT"; }
do
  if [ "$(date +%s)" -ge "$deadline" ]; then
    echo "networkd did not apply both links within ${APPLY_SECONDS} s" >&2
    exit 3
  fi
  sleep 0.1
done
echo "== links"
for f in /run/systemd/netif/links/*; do echo "$(basename "$f") $(grep '^NETWORK_FILE=' "$f" || true)"; done
echo "== addr"
ip -j addr show
echo "== route"
ip -j route show
"""


@pytest.fixture
def netns() -> Iterator[str]:
    """A fresh network namespace with a veth pair eth0 (BOOT_MAC) / eth1; an unreachable route meanwhile."""
    require_root()
    require(NETWORKD.exists(), f"{NETWORKD} is missing (apt-get install systemd)")
    require_tool("ip", "unshare")
    require(
        subprocess.run(["getent", "passwd", "systemd-network"], capture_output=True, check=False).returncode == 0,
        "no systemd-network user (networkd drops to it)",
    )
    name = f"dv{secrets.token_hex(3)}-bn"
    metric = str(4000 + secrets.randbelow(50000))
    subprocess.run(["ip", "route", "add", "unreachable", SUBNET, "metric", metric], check=True, capture_output=True)
    try:
        subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True)
        veth = ["eth0", "address", BOOT_MAC, "type", "veth", "peer", "name", "eth1", "address", OTHER_MAC]
        subprocess.run(["ip", "-n", name, "link", "add", *veth], check=True, capture_output=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
        subprocess.run(
            ["ip", "route", "del", "unreachable", SUBNET, "metric", metric], capture_output=True, check=False
        )


@dataclass(frozen=True)
class Applied:
    """What one boot did: the entry point's line, networkd's file per link, addresses, default routes."""

    line: str
    files: dict[str, str]
    addresses: dict[str, list[str]]
    defaults: list[tuple[str, str]]  # (gateway, link)


def boot(netns: str, tmp_path: Path, cmdline: str, expect_gateway: str = "") -> Applied:
    """Run the entry point and networkd in `netns` for `cmdline`; what networkd applied, by link name."""
    (tmp_path / "cmdline").write_text(cmdline + "\n")
    env = {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "PYTHON": sys.executable,
        "NETWORKD": str(NETWORKD),
        "FALLBACK": str(FALLBACK),
        "CMDLINE": str(tmp_path / "cmdline"),
        "LOG": str(tmp_path / "networkd.log"),
        "EXPECT": expect_gateway,
        "APPLY_SECONDS": str(APPLY_SECONDS),
    }
    argv = ["ip", "netns", "exec", netns, "unshare", "--mount", "--propagation", "private", "sh", "-c", SCRIPT]
    proc = subprocess.Popen(
        argv, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        out, err = proc.communicate(timeout=APPLY_SECONDS + 30)
    except subprocess.TimeoutExpired:
        signal_process(proc, signal.SIGKILL)
        proc.communicate()
        pytest.fail("networkd did not configure both links within the time allowed", pytrace=False)
    assert proc.returncode == 0, f"{err}\nnetworkd log:\n{(tmp_path / 'networkd.log').read_text()[-3000:]}"
    bootnet_line, rest = out.split("== links\n", 1)
    links_text, rest = rest.split("== addr\n", 1)
    addr_text, route_text = rest.split("== route\n", 1)
    addresses = {
        link["ifname"]: [f"{a['local']}/{a['prefixlen']}" for a in link["addr_info"]] for link in json.loads(addr_text)
    }
    index = {str(link["ifindex"]): link["ifname"] for link in json.loads(addr_text)}
    files = {}
    for line in links_text.splitlines():
        ifindex, _, applied = line.partition(" ")
        if applied:  # links networkd leaves alone (lo here) have no NETWORK_FILE
            files[index[ifindex]] = applied.removeprefix("NETWORK_FILE=")
    defaults = [(r["gateway"], r["dev"]) for r in json.loads(route_text) if r["dst"] == "default"]
    return Applied(bootnet_line.strip(), files, addresses, defaults)


def test_a_static_address_lands_on_the_bootif_port_and_the_other_port_keeps_dhcp(netns: str, tmp_path: Path) -> None:
    cmdline = "boot=live BOOTIF=01-52-54-00-00-00-01 debvisor.ip=198.51.100.7/24,198.51.100.1"
    applied = boot(netns, tmp_path, cmdline, expect_gateway="198.51.100.1")
    assert applied.line.startswith("debvisor-bootnet: debvisor.ip=198.51.100.7/24,198.51.100.1 on the port")
    assert applied.files == {
        "eth0": f"/run/systemd/network/{UNIT_NAME}",
        "eth1": "/etc/systemd/network/90-debvisor-dhcp.network",
    }
    assert "198.51.100.7/24" in applied.addresses["eth0"]
    assert not any(a.startswith("198.51.100.") for a in applied.addresses["eth1"])
    assert applied.defaults == [("198.51.100.1", "eth0")]


def test_a_malformed_address_leaves_dhcp_on_every_port(netns: str, tmp_path: Path) -> None:
    applied = boot(netns, tmp_path, "boot=live BOOTIF=01-52-54-00-00-00-01 debvisor.ip=198.51.100.7")
    assert applied.line == (
        "debvisor-bootnet: debvisor.ip='198.51.100.7': use 'dhcp' or ADDRESS/PREFIX[,GATEWAY], e.g. "
        "10.0.0.5/24,10.0.0.1; debvisor.ip= not applied, DHCP on every Ethernet port instead"
    )
    fallback = "/etc/systemd/network/90-debvisor-dhcp.network"
    assert applied.files == {"eth0": fallback, "eth1": fallback}
    assert not any(a.startswith("198.51.100.") for a in applied.addresses["eth0"])
    assert applied.defaults == []
