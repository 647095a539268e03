"""Node settings from the kernel command line: the lowest layer of a node's configuration.

A PXE server or an ISO's boot menu can hand a machine its settings before anything is
stored on it: `debvisor.name=rack1-n3 debvisor.join=<token>` boots straight into a cluster
(zero-touch). Layers, lowest first: built-in defaults < kernel command line < what the node
stores (first-boot wizard, API) < explicit `debvisor serve` flags. So a name here names a
*new* node only; a node that already has a name keeps it, and a join token is ignored once
the node exists (as `--join` is), unless that node is a lone cluster nobody used
(appliance.lone).

Keys (all optional; the last occurrence wins, as for kernel parameters):
  debvisor.name=NAME          node name for a fresh data dir (a DNS label)
  debvisor.join=TOKEN         join the token's cluster instead of founding one
  debvisor.enrol=CREDENTIAL   a PXE boot script's single-use enrolment credential (dve_...): a
                              fresh node enrols with the boot server over TLS, waits for an
                              operator's approval, then joins with the token it is handed
  debvisor.api=HOST:PORT      API listen address (default 0.0.0.0:8443)
  debvisor.gossip=HOST:PORT   gossip listen address (default 0.0.0.0:7946)
  debvisor.advertise=IP       address peers use to reach this node
  debvisor.pxe-http=HOST:PORT where the PXE boot-file listener binds while PXE is enabled
                              (default: port 8080 on the PXE interface's IPv4 address)
  debvisor.ip=dhcp | ADDR/PREFIX[,GATEWAY]   management address (applied before networkd
                              starts by appliance.bootnet, on the port BOOTIF= names if given)
  debvisor.data=LABEL | ram   data partition label (read by the image's data mount, not here)
  debvisor.enlist=URL         where to report this machine's hardware once at start-up: the PXE
                              boot server's http://HOST[:PORT]/pxe/enlist (its iPXE script adds it)
  BOOTIF=01-aa-bb-cc-dd-ee-ff the NIC that PXE-booted (pxelinux's convention; the iPXE script adds
                              it): the MAC the report is filed under. Not a debvisor.* key, so a
                              malformed one is ignored rather than refused.

Unknown `debvisor.*` keys and bad values are errors that name the key: a mistyped key would
otherwise be dropped silently, and a mistyped `debvisor.join` would found a second cluster.
Parameters without the `debvisor.` prefix belong to the kernel and initramfs and are ignored,
except `BOOTIF=01-aa-bb-cc-dd-ee-ff` (pxelinux's and iPXE's name for the port the machine
booted from), read but never an error: it is the boot loader's, not ours to reject.
Deliberately left out: applying anything (this module only parses and renders; the image's
boot-time network set-up is appliance.bootnet). Keep its imports light: that set-up runs it
before systemd-networkd starts.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from appliance.settings import (
    DEFAULT_API_PORT,
    DEFAULT_GOSSIP_PORT,
    DEFAULT_PXE_HTTP_PORT,
    HostPort,
    SettingsError,
    parse_host_port,
    parse_ip,
    validate_node_name,
)

PREFIX = "debvisor."
_KEYS = ("name", "join", "enrol", "api", "gossip", "advertise", "ip", "data", "pxe-http", "enlist")
ENLIST_PATH = "/pxe/enlist"
# http only (iPXE and the boot server's listener speak nothing else), to a host (an IP literal
# or a DNS name) and an optional port, and only the enlistment path: no user, query or fragment.
_ENLIST_URL = re.compile(
    r"^http://(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?)"
    r"(?::(?P<port>[0-9]{1,5}))?" + re.escape(ENLIST_PATH) + "$"
)
_T = TypeVar("_T")
_ENROL = re.compile(r"^dve_[A-Za-z0-9_-]{16,2044}$")
_MAX_TOKEN = 4096  # a join token is a few hundred characters; anything longer is a mistake
# BOOTIF=01-aa-bb-cc-dd-ee-ff: ARP hardware type 1 (Ethernet), then the MAC, as pxelinux's
# IPAPPEND 2 and iPXE's ${netX/mac:hexhyp} write it.
_BOOTIF = re.compile(r"^01-([0-9A-Fa-f]{2}(?:-[0-9A-Fa-f]{2}){5})$")


class BootParamsError(SettingsError):
    """The kernel command line has an unknown debvisor.* key or a bad value; the message names it."""


@dataclass(frozen=True)
class StaticAddress:
    """A fixed management address from `debvisor.ip=ADDR/PREFIX[,GATEWAY]`."""

    interface: ipaddress.IPv4Interface | ipaddress.IPv6Interface
    gateway: ipaddress.IPv4Address | ipaddress.IPv6Address | None = None


@dataclass(frozen=True)
class BootParams:
    """The debvisor.* settings found on a kernel command line (None: not given)."""

    name: str | None = None
    join: str | None = None
    enrol: str | None = None  # dve_...: checked in form only here, decoded when used (appliance.node.enrol)
    api: HostPort | None = None
    gossip: HostPort | None = None
    advertise: ipaddress.IPv4Address | ipaddress.IPv6Address | None = None
    ip: StaticAddress | str | None = None  # "dhcp" or a StaticAddress
    data: str | None = None
    pxe_http: HostPort | None = None
    enlist: str | None = None  # the boot server's enlistment URL
    keys: tuple[str, ...] = field(default=())  # the debvisor.* keys present, for logging
    boot_mac: str | None = None  # aa:bb:cc:dd:ee:ff from BOOTIF=, the port the machine booted from


def split_cmdline(text: str) -> list[str]:
    """Split a kernel command line into parameters as the kernel does (double quotes group)."""
    params: list[str] = []
    current: list[str] = []
    quoted = False
    started = False
    for char in text:
        if char == '"':
            quoted = not quoted
            started = True
        elif char.isspace() and not quoted:
            if started:
                params.append("".join(current))
            current, started = [], False
        else:
            current.append(char)
            started = True
    if quoted:
        raise BootParamsError("kernel command line: unbalanced double quote")
    if started:
        params.append("".join(current))
    return params


def _parse_ip(value: str) -> StaticAddress | str:
    if value == "dhcp":
        return value
    address, _, gateway_text = value.partition(",")
    if "/" not in address:
        raise BootParamsError(
            f"debvisor.ip={value!r}: use 'dhcp' or ADDRESS/PREFIX[,GATEWAY], e.g. 10.0.0.5/24,10.0.0.1"
        )
    try:
        interface = ipaddress.ip_interface(address)
    except ValueError as exc:
        raise BootParamsError(f"debvisor.ip={value!r}: {address!r} is not an ADDRESS/PREFIX") from exc
    gateway = None
    if gateway_text:
        try:
            gateway = ipaddress.ip_address(gateway_text)
        except ValueError as exc:
            raise BootParamsError(f"debvisor.ip={value!r}: gateway {gateway_text!r} is not an IP address") from exc
        if gateway.version != interface.version:
            raise BootParamsError(f"debvisor.ip={value!r}: the gateway is not of the address's IP version")
    return StaticAddress(interface, gateway)


def parse_enlist_url(value: str) -> str:
    """`value` if it is an enlistment URL (http://HOST[:PORT]/pxe/enlist), else BootParamsError."""
    match = _ENLIST_URL.match(value)
    port = match.group("port") if match is not None else None
    if match is None or (port is not None and not 0 < int(port) <= 65535):
        raise BootParamsError(f"{value[:80]!r} is not http://HOST[:PORT]{ENLIST_PATH} (plain HTTP, this path only)")
    host = match.group("host")
    if host.startswith("["):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError as exc:
            raise BootParamsError(f"{value[:80]!r}: {host} is not an IPv6 address") from exc
    return value


def parse_cmdline(text: str) -> BootParams:
    """The debvisor.* settings of a kernel command line; BootParamsError names a bad one."""
    values: dict[str, str] = {}
    boot_mac: str | None = None
    for param in split_cmdline(text):
        if param.startswith("BOOTIF="):
            bootif = _BOOTIF.match(param[len("BOOTIF=") :])
            boot_mac = bootif.group(1).replace("-", ":").lower() if bootif is not None else None
            continue
        if not param.startswith(PREFIX):
            continue
        key, sep, value = param[len(PREFIX) :].partition("=")
        if key not in _KEYS:
            raise BootParamsError(f"kernel command line: unknown key debvisor.{key} (known: {', '.join(_KEYS)})")
        if not sep or not value:
            raise BootParamsError(f"kernel command line: debvisor.{key} needs a value (debvisor.{key}=...)")
        values[key] = value

    join = values.get("join")
    if join is not None and (len(join) > _MAX_TOKEN or not join.isprintable()):
        raise BootParamsError("kernel command line: debvisor.join is not a join token (too long or not printable)")

    enrol = values.get("enrol")
    if enrol is not None and not _ENROL.match(enrol):
        raise BootParamsError("kernel command line: debvisor.enrol is not an enrolment credential (dve_...)")
    if enrol is not None and join is not None:
        raise BootParamsError("kernel command line: give debvisor.join or debvisor.enrol, not both")

    def parsed(key: str, parse: Callable[[str], _T]) -> _T | None:
        if key not in values:
            return None
        try:
            return parse(values[key])
        except SettingsError as exc:
            raise BootParamsError(f"kernel command line: debvisor.{key}: {exc}") from exc

    name = parsed("name", validate_node_name)
    api = parsed("api", lambda text: parse_host_port(text, DEFAULT_API_PORT))
    gossip = parsed("gossip", lambda text: parse_host_port(text, DEFAULT_GOSSIP_PORT))
    advertise = parsed("advertise", parse_ip)
    pxe_http = parsed("pxe-http", lambda text: parse_host_port(text, DEFAULT_PXE_HTTP_PORT))
    ip = _parse_ip(values["ip"]) if "ip" in values else None
    data = values.get("data")
    enlist = parsed("enlist", parse_enlist_url)
    return BootParams(
        name=name,
        join=join,
        enrol=enrol,
        api=api,
        gossip=gossip,
        advertise=advertise,
        ip=ip,
        data=data,
        pxe_http=pxe_http,
        enlist=enlist,
        boot_mac=boot_mac,
        keys=tuple(values),
    )


def read_boot_params(path: Path = Path("/proc/cmdline")) -> BootParams:
    """Parse the kernel command line in `path` (a file holding one, for tests and containers)."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise BootParamsError(f"cannot read the kernel command line from {path}: {exc.strerror}") from exc
    return parse_cmdline(text)


def networkd_unit(address: StaticAddress, mac: str) -> str:
    """A systemd-networkd .network file giving the port with MAC address `mac` the static `address`.

    It matches one port by MAC, not by name: the name may still change (udev renames ports
    while the unit is written) and a name would not survive a different port order. `Type=ether`
    keeps bridges, bonds and VLANs that netconfig later builds on the port (and that may carry
    its MAC) from matching too. IPv6: link-local only, no addresses from router advertisements
    on a port whose address the operator chose.
    """
    lines = [
        "# Written at boot by debvisor-bootnet.service from debvisor.ip= on the kernel command line.",
        "[Match]",
        f"MACAddress={mac}",
        "Type=ether",
        "",
        "[Network]",
        f"Address={address.interface}",
    ]
    if address.gateway is not None:
        lines.append(f"Gateway={address.gateway}")
    lines += ["LinkLocalAddressing=ipv6", "IPv6AcceptRA=no"]
    return "\n".join(lines) + "\n"
