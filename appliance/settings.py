"""What `debvisor serve` was asked to do: data dir, listen addresses, node name.

Parsing and validation live here, apart from argparse, so that the rules (what a node name
may be, how HOST:PORT is written) are tested on their own and shared by every entry point.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass
from pathlib import Path

# The shared rules for addresses and node names (in the PXE library, which may not import the
# appliance), re-exported: the node's flags and settings are parsed by them.
from pxe.addresses import HostPort, SettingsError, parse_host_port, parse_ip, validate_node_name
from pxe.listener import DEFAULT_PORT as PXE_DEFAULT_PORT

__all__ = [  # the names below, and the shared ones imported from the PXE library above
    "DEFAULT_API_PORT",
    "DEFAULT_GOSSIP_PORT",
    "DEFAULT_PXE_HTTP_PORT",
    "AuthSettings",
    "HostPort",
    "ServeSettings",
    "SettingsError",
    "default_node_name",
    "parse_host_port",
    "parse_ip",
    "validate_node_name",
]

DEFAULT_API_PORT = 8443
DEFAULT_GOSSIP_PORT = 7946
DEFAULT_PXE_HTTP_PORT = PXE_DEFAULT_PORT


def default_node_name() -> str:
    """The host's short name, made into a valid node name, or 'node' if nothing is left."""
    short = socket.gethostname().split(".")[0].lower()
    cleaned = re.sub(r"[^a-z0-9-]", "-", short).strip("-")[:63].strip("-")
    return cleaned or "node"


@dataclass(frozen=True)
class AuthSettings:
    """Session lifetimes and the per-user rate limit (the seed's defaults)."""

    session_idle_seconds: float = 15 * 60
    session_lifetime_seconds: float = 12 * 3600
    rate_limit: float = 10.0  # requests per second per user; 0 turns the limit off
    rate_burst: float = 20.0

    def __post_init__(self) -> None:
        if self.session_idle_seconds <= 0 or self.session_lifetime_seconds <= 0:
            raise SettingsError("session timeouts must be positive")
        if self.session_idle_seconds > self.session_lifetime_seconds:
            raise SettingsError("the session idle timeout cannot exceed the session lifetime")
        if self.rate_limit < 0:
            raise SettingsError("the rate limit cannot be negative (0 turns it off)")


@dataclass(frozen=True)
class ServeSettings:
    """Everything `debvisor serve` needs to start a node."""

    data_dir: Path
    api: HostPort
    gossip: HostPort
    name: str | None  # None: keep the stored name, or the host name on a fresh data dir
    auth: AuthSettings = AuthSettings()
    join: str | None = None  # a join token: a fresh data dir joins that cluster instead of founding one
    advertise: ipaddress.IPv4Address | ipaddress.IPv6Address | None = None  # address peers use
    netns: str | None = None  # manage the links of this named network namespace instead of our own
    # The name a fresh data dir gets when `name` is None (from the kernel command line, a layer
    # below what the node stores): unlike `name`, it never contradicts a stored name.
    default_name: str | None = None
    # Where the plain-HTTP listener for the public /pxe boot files binds while PXE is enabled
    # (iPXE and live-boot cannot do HTTPS with the node's CA); None: port 8080 on the PXE
    # interface's IPv4 address.
    pxe_http: HostPort | None = None
    pxe_files: Path | None = None  # vmlinuz, initrd.img, filesystem.squashfs (default: the live medium)
    # Where to report this machine's inventory once at start-up (debvisor.enlist= from the PXE
    # boot server's script), and the MAC it booted from (BOOTIF=); None: do not report.
    enlist_url: str | None = None
    boot_mac: str | None = None
    # A PXE boot script's single-use enrolment credential (debvisor.enrol=): a fresh data dir
    # enrols with the boot server and joins once approved (appliance.node.enrol).
    enrol: str | None = None
    # The managed machine: the D-Bus address of its system bus (None: this machine's own) and
    # the directory its files are under (journal, unit files). Both differ from the default
    # only when a node manages a container from outside it (labs, tests).
    system_bus: str | None = None
    host_root: Path = Path("/")

    def advertised(self, listen: HostPort, host_addresses: list[str]) -> str:
        """HOST:PORT that peers should dial for `listen` (the api or gossip address)."""
        if self.advertise is not None:
            host = str(self.advertise)
        elif not listen.is_wildcard:
            host = str(listen.host)
        else:
            host = next(iter(host_addresses), "127.0.0.1")
        return f"[{host}]:{listen.port}" if ":" in host else f"{host}:{listen.port}"
