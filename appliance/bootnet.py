"""Apply `debvisor.ip=` at boot: write systemd-networkd's unit for the management port, else leave DHCP.

The image runs this as `debvisor-bootnet.service`, before systemd-networkd starts:

    /opt/debvisor/bin/python -m appliance.bootnet --networkd-dir /run/systemd/network /proc/cmdline

For a static `debvisor.ip=ADDR/PREFIX[,GATEWAY]` it writes `10-debvisor-bootnet.network`
(rendered by `bootparams.networkd_unit`, so bootparams stays the one authority on the format)
into /run/systemd/network. networkd sorts every .network file by name across its directories
and applies only the first one that matches a link; `10-` sorts before the image's
`90-debvisor-dhcp.network`, so the chosen port gets the static address and no DHCP, and every
other port keeps DHCP. (Same-named files would not help: /etc wins over /run by name.)

Which port: the one `BOOTIF=01-aa-bb-..` names (the port the machine PXE-booted from; our
iPXE script passes it, pxelinux does with IPAPPEND 2, and on an ISO boot an operator can type
it), matched by MAC so nothing needs probing. Without BOOTIF: the first Ethernet port (by name)
that has a link, after bringing the ports up and waiting up to CARRIER_WAIT seconds; if none
has a link by then, the first port by name.

Failure never leaves the node unreachable: a command line that bootparams rejects (whichever
key is wrong), `debvisor.ip=dhcp`, no `debvisor.ip=`, or no Ethernet port: no unit is written
(and a stale one is removed), so every port keeps DHCP. Each run prints exactly one line saying
what it did, naming the key on an error; the unit sends it to the console and the journal.
The appliance still refuses a bad command line at its own start, as before.

Why a oneshot service and not a systemd generator: generators run one after another before
any unit starts, so a Python start-up there (seconds under emulation) would delay the whole
boot, and a generator may not wait for udev or links. As a service only networkd waits for it.
Why not systemd's own network generator with `ip=`: the initramfs (initramfs-tools, live-boot)
interprets `ip=` as well, in another format, and would configure the network its own way.

Kept light on purpose: it imports only the standard library and appliance.bootparams (and
through it appliance.settings); `python -X importtime -m appliance.bootnet` shows no
Litestar, msgspec or pyroute2. Deliberately left out: DNS (the image runs no resolver; the
appliance reaches its peers by IP), more than one static address, and checking that the
BOOTIF port exists (networkd simply matches nothing, and the other ports keep DHCP).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from appliance.bootparams import BootParamsError, StaticAddress, networkd_unit, read_boot_params

UNIT_NAME = "10-debvisor-bootnet.network"  # sorts before the image's 90-debvisor-dhcp.network
CARRIER_WAIT = 10.0  # seconds to wait for a link on some port when BOOTIF does not name one
SETTLE_TIMEOUT = 10  # seconds udev may take to find (and rename) the ports first
_POLL = 0.1
_DHCP = "DHCP on every Ethernet port"

# ioctl(2) numbers from <linux/sockios.h> and <net/if.h>: bring a port up without a netlink library.
_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_IFF_UP = 0x1
_IFREQ = struct.Struct("16sH22x")  # struct ifreq: the name, then ifr_flags in a 24-byte union


@dataclass(frozen=True)
class Port:
    """A physical Ethernet port as found at boot: its name, MAC address, and whether it has a link."""

    name: str
    mac: str
    carrier: bool


class Links(Protocol):
    """The host's Ethernet ports, as the port choice needs them (sysfs on a node, a fake in tests)."""

    def settle(self) -> None:
        """Wait (bounded) until udev has found and named the ports."""

    def ports(self) -> list[Port]:
        """Physical Ethernet ports (no bridges, bonds, VLANs, veths or wireless), as of now."""

    def set_up(self, name: str) -> None:
        """Bring port `name` up, so that it can report a link."""


class SysfsLinks:
    """Ports from /sys/class/net; `udevadm settle`; up via the SIOCSIFFLAGS ioctl."""

    def __init__(self, root: Path = Path("/sys/class/net")) -> None:
        self.root = root

    def settle(self) -> None:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            subprocess.run(  # noqa: S603 - a fixed argv
                ["/bin/udevadm", "settle", f"--timeout={SETTLE_TIMEOUT}"],
                capture_output=True,
                timeout=SETTLE_TIMEOUT + 5,
                check=False,
            )

    def ports(self) -> list[Port]:
        found = []
        for link in sorted(self.root.iterdir()):
            try:
                if (link / "type").read_text().strip() != "1":  # ARPHRD_ETHER
                    continue
                # A device link means hardware (or a VM's NIC); wireless ports are Ethernet-typed too.
                if not (link / "device").exists() or (link / "wireless").exists() or (link / "phy80211").exists():
                    continue
                mac = (link / "address").read_text().strip().lower()
            except OSError:  # the link went away while we looked
                continue
            try:
                carrier = (link / "carrier").read_text().strip() == "1"
            except OSError:  # reading carrier of a port that is down fails with EINVAL
                carrier = False
            found.append(Port(link.name, mac, carrier))
        return found

    def set_up(self, name: str) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            request = _IFREQ.pack(name.encode(), 0)
            _, flags = _IFREQ.unpack(fcntl.ioctl(sock, _SIOCGIFFLAGS, request))
            fcntl.ioctl(sock, _SIOCSIFFLAGS, _IFREQ.pack(name.encode(), flags | _IFF_UP))


@dataclass(frozen=True)
class Choice:
    """The port that gets the static address, and why that one (for the log line and the unit)."""

    mac: str
    why: str


class BootNet:
    """Turns the kernel command line into networkd's unit for the management port (or none)."""

    def __init__(
        self,
        networkd_dir: Path,
        links: Links,
        *,
        carrier_wait: float = CARRIER_WAIT,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.unit = networkd_dir / UNIT_NAME
        self.links = links
        self.carrier_wait = carrier_wait
        self.clock = clock
        self.sleep = sleep

    def run(self, cmdline: Path) -> str:
        """Write or remove the unit for the command line in `cmdline`; the one line saying what was done."""
        try:
            params = read_boot_params(cmdline)
        except BootParamsError as exc:
            self._remove()
            return f"{exc}; debvisor.ip= not applied, {_DHCP} instead"
        if params.ip is None:
            self._remove()
            return f"no debvisor.ip= on the kernel command line: {_DHCP}"
        if not isinstance(params.ip, StaticAddress):
            self._remove()
            return f"debvisor.ip={params.ip}: {_DHCP}"
        address = params.ip
        given = f"debvisor.ip={address.interface}" + (f",{address.gateway}" if address.gateway else "")
        if params.boot_mac is not None:
            choice = Choice(params.boot_mac, f"port {params.boot_mac} named by BOOTIF=")
        else:
            found = self.choose_port()
            if found is None:
                self._remove()
                return f"{given}: not applied, no Ethernet port found"
            choice = found
        self._write(f"# The {choice.why}.\n" + networkd_unit(address, choice.mac))
        return f"{given} on the {choice.why}; DHCP on the other Ethernet ports"

    def choose_port(self) -> Choice | None:
        """The first port (by name) with a link, waiting up to carrier_wait; else the first port; None: no port."""
        self.links.settle()
        ports = sorted(self.links.ports(), key=lambda port: port.name)
        if not ports:
            return None
        for port in ports:
            with contextlib.suppress(OSError):  # a port we cannot bring up cannot have a link either
                self.links.set_up(port.name)
        deadline = self.clock() + self.carrier_wait
        while True:
            ports = sorted(self.links.ports(), key=lambda port: port.name)
            linked = [port for port in ports if port.carrier]
            if linked:
                return Choice(linked[0].mac, f"port {linked[0].name} ({linked[0].mac}), the first with a link")
            if not ports or self.clock() >= deadline:
                break
            self.sleep(_POLL)
        if not ports:
            return None
        first = ports[0]
        return Choice(
            first.mac,
            f"port {first.name} ({first.mac}), the first by name: no port had a link within {self.carrier_wait:g} s",
        )

    def _write(self, text: str) -> None:
        # Written whole or not at all: networkd must never read half a unit.
        self.unit.parent.mkdir(parents=True, exist_ok=True)
        partial = self.unit.with_name(f".{self.unit.name}.tmp")
        partial.write_text(text)
        partial.chmod(0o644)
        os.replace(partial, self.unit)

    def _remove(self) -> None:
        self.unit.unlink(missing_ok=True)


def main(argv: Sequence[str] | None = None, links: Links | None = None) -> int:
    """`python -m appliance.bootnet`: print one line; 1 only if the unit could not be written or removed."""
    parser = argparse.ArgumentParser(
        prog="python -m appliance.bootnet", description="Write networkd's unit for debvisor.ip= (see docs/image.md)."
    )
    parser.add_argument("cmdline", type=Path, help="file holding the kernel command line, e.g. /proc/cmdline")
    parser.add_argument("--networkd-dir", type=Path, required=True, help="e.g. /run/systemd/network")
    args = parser.parse_args(argv)
    try:
        line = BootNet(args.networkd_dir, links or SysfsLinks()).run(args.cmdline)
    except OSError as exc:
        print(f"debvisor-bootnet: cannot write {args.networkd_dir / UNIT_NAME}: {exc}", file=sys.stderr)
        return 1
    print(f"debvisor-bootnet: {line}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
