"""Render dnsmasq's command line for a PXE boot server: a pure function of typed settings.

dnsmasq answers the machines' DHCP (or, in proxy mode, only their PXE questions beside the
site's own DHCP server), serves Debian's iPXE binaries over TFTP, and hands a machine that
already runs iPXE (it says so in its user class, "iPXE") the HTTP URL of its boot script.
So a machine chainloads: firmware PXE -> TFTP undionly.kpxe / ipxe.efi -> HTTP boot.ipxe.

Everything goes on the command line (no configuration file to write, clean up or race on),
and `--conf-file=/dev/null` keeps a stray /etc/dnsmasq.conf out. DNS is off (`--port=0`).

dnsmasq parses DHCP packets from anyone on the LAN, so it must not keep root: it starts as root
to bind its ports and open its lease file, then drops to `nobody`:`nogroup` (`--user`/`--group`;
both come with Debian's base-passwd, on every install and on the live image, and nothing here
creates an account). dnsmasq keeps only the capabilities its DHCP needs. What it touches after
the drop: the lease file, opened before it (so it may sit in a root-only directory), and the
TFTP root, read per request, which `nobody` must be able to read: Debian's /usr/lib/ipxe is.
An account that does not exist makes dnsmasq exit at start with "unknown user or group".
Deliberately left out: starting the process (`pxe.server`) and the scripts (`pxe.script`).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

BIOS_LOADER = "undionly.kpxe"  # Debian's ipxe package, /usr/lib/ipxe
EFI_LOADER = "ipxe.efi"
IPXE_USER_CLASS = "iPXE"
_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
_IFNAME = re.compile(r"^[A-Za-z0-9_.@-]{1,15}$")


class DnsmasqError(ValueError):
    """The settings cannot be rendered; the message says which one is wrong."""


class Mode(StrEnum):
    """PROXY answers only PXE beside the site's DHCP server; FULL leases addresses itself."""

    PROXY = "proxy"
    FULL = "full"


def normalize_mac(text: str) -> str:
    """`52-54-00-AB-CD-EF`, `5254.00ab.cdef` or `525400abcdef` as `52:54:00:ab:cd:ef`."""
    digits = re.sub(r"[^0-9a-fA-F]", "", text).lower()
    mac = ":".join(digits[i : i + 2] for i in range(0, len(digits), 2))
    if len(digits) != 12 or not _MAC.match(mac) or len(text) > 17:
        raise DnsmasqError(f"{text!r} is not a MAC address")
    return mac


@dataclass(frozen=True)
class Machine:
    """A machine this server knows by MAC: tagged `debvisor` in dnsmasq, with an optional fixed IPv4."""

    mac: str
    ip: str | None = None


@dataclass(frozen=True)
class DnsmasqSettings:
    """What the boot server serves, and where.

    `network` is the interface's IPv4 network: proxy mode needs it (`--dhcp-range=NET,proxy`);
    full mode leases `range_start`..`range_end` instead. `ipv6_prefix` (a /64) makes dnsmasq
    send router advertisements, without which iPXE waits ~13 s for IPv6 before using IPv4.
    `only_known` offers boot files only to the listed `machines`.
    """

    interface: str
    tftp_root: Path
    script_url: str  # http://NODE:PORT/pxe/boot.ipxe
    mode: Mode = Mode.PROXY
    network: str | None = None
    range_start: str | None = None
    range_end: str | None = None
    lease_seconds: int = 3600
    ipv6_prefix: str | None = None
    machines: tuple[Machine, ...] = field(default=())
    only_known: bool = False
    lease_file: Path | None = None
    user: str = "nobody"  # dnsmasq drops root to this account once its sockets and lease file are open
    group: str = "nogroup"


def _ipv4(text: str | None, what: str) -> ipaddress.IPv4Address:
    try:
        return ipaddress.IPv4Address(text or "")
    except ValueError as exc:
        raise DnsmasqError(f"{what}: {text!r} is not an IPv4 address") from exc


def _range(settings: DnsmasqSettings) -> str:
    if settings.mode is Mode.PROXY:
        try:
            net = ipaddress.IPv4Network(settings.network or "", strict=False)
        except ValueError as exc:
            raise DnsmasqError(f"proxy mode needs the interface's IPv4 network, not {settings.network!r}") from exc
        return f"{net.network_address},proxy,{net.netmask}"
    start = _ipv4(settings.range_start, "range_start")
    end = _ipv4(settings.range_end, "range_end")
    if end < start:
        raise DnsmasqError(f"range_end {end} is below range_start {start}")
    if settings.lease_seconds < 120:
        raise DnsmasqError("lease_seconds must be at least 120")
    return f"{start},{end},{settings.lease_seconds}"


def _ra_range(prefix: str) -> str:
    try:
        net = ipaddress.IPv6Network(prefix, strict=False)
    except ValueError as exc:
        raise DnsmasqError(f"ipv6_prefix: {prefix!r} is not an IPv6 prefix") from exc
    if net.prefixlen != 64:
        raise DnsmasqError(f"ipv6_prefix: router advertisements for SLAAC need a /64, not /{net.prefixlen}")
    return f"{net.network_address},ra-only"


def render_argv(settings: DnsmasqSettings, binary: str = "dnsmasq") -> list[str]:
    """dnsmasq's argv for `settings` (raises DnsmasqError naming the bad setting)."""
    if not _IFNAME.match(settings.interface):
        raise DnsmasqError(f"interface: {settings.interface!r} is not an interface name")
    if not settings.script_url.startswith("http://") or any(c.isspace() or c == "," for c in settings.script_url):
        raise DnsmasqError(f"script_url: {settings.script_url!r} must be a plain http:// URL without spaces or commas")
    argv = [
        binary,
        "--keep-in-foreground",
        "--conf-file=/dev/null",
        "--log-facility=-",  # stderr, read by the supervisor
        "--log-dhcp",
        "--port=0",  # no DNS
        f"--interface={settings.interface}",
        "--bind-interfaces",
        f"--user={settings.user}",
        f"--group={settings.group}",
        f"--dhcp-range={_range(settings)}",
    ]
    if settings.lease_file is not None:
        argv.append(f"--dhcp-leasefile={settings.lease_file}")
    if settings.ipv6_prefix is not None:
        argv += ["--enable-ra", f"--dhcp-range={_ra_range(settings.ipv6_prefix)}"]
    for machine in settings.machines:
        host = f"{normalize_mac(machine.mac)},set:debvisor"
        if machine.ip is not None:
            if settings.mode is not Mode.FULL:
                raise DnsmasqError(f"machine {machine.mac}: a fixed IP needs full DHCP mode")
            host += f",{_ipv4(machine.ip, f'machine {machine.mac} ip')}"
        argv.append(f"--dhcp-host={host}")
    argv += [
        "--enable-tftp",
        f"--tftp-root={settings.tftp_root}",
        # Which stage a request comes from: iPXE says so in its user class; UEFI by its arch.
        f"--dhcp-userclass=set:ipxe,{IPXE_USER_CLASS}",
        "--dhcp-match=set:efi64,option:client-arch,7",
        "--dhcp-match=set:efi64,option:client-arch,9",
    ]
    known = "tag:debvisor," if settings.only_known else ""
    if settings.mode is Mode.FULL:
        argv += [
            f"--dhcp-boot={known}tag:!ipxe,tag:!efi64,{BIOS_LOADER}",
            f"--dhcp-boot={known}tag:!ipxe,tag:efi64,{EFI_LOADER}",
            f"--dhcp-boot={known}tag:ipxe,{settings.script_url}",
        ]
    else:
        # Proxy DHCP answers only through PXE services (dhcp-boot is not used there), iPXE
        # included; dnsmasq appends ".0" only to a name without a dot, so names stay as given.
        for arch, loader in (("x86PC", BIOS_LOADER), ("X86-64_EFI", EFI_LOADER), ("BC_EFI", EFI_LOADER)):
            argv += [
                f"--pxe-service={known}tag:!ipxe,{arch},DebVisor,{loader}",
                f"--pxe-service={known}tag:ipxe,{arch},DebVisor,{settings.script_url}",
            ]
        argv.append("--pxe-prompt=DebVisor,0")
    return argv
