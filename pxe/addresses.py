"""Addresses and names that every part of DebVisor parses the same way: listen addresses
(`HOST:PORT`, IP literals only), and node names (one DNS label).

Here, in the boot-server library, because the PXE code needs them and may not import the
appliance; `appliance.settings` re-exports them for the node's flags and settings.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

# A node name is one DNS label (RFC 1123): it appears in certificates, URLs and host names.
_NODE_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


class SettingsError(ValueError):
    """A flag's value is unusable; the message names the flag's problem in one line."""


@dataclass(frozen=True)
class HostPort:
    """A listen address: an IP literal (or a wildcard) and a TCP port."""

    host: ipaddress.IPv4Address | ipaddress.IPv6Address
    port: int

    @property
    def is_wildcard(self) -> bool:
        return self.host.is_unspecified

    def url_host(self) -> str:
        return f"[{self.host}]" if self.host.version == 6 else str(self.host)

    def __str__(self) -> str:
        return f"{self.url_host()}:{self.port}"


def parse_host_port(text: str, default_port: int) -> HostPort:
    """Parse `HOST:PORT`, `[V6]:PORT`, `HOST` or `:PORT`; HOST must be an IP address."""
    text = text.strip()
    host_text, port_text = text, ""
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise SettingsError(f"{text!r}: missing ']' after an IPv6 address")
        host_text, rest = text[1:end], text[end + 1 :]
        if rest and not rest.startswith(":"):
            raise SettingsError(f"{text!r}: expected ':PORT' after ']'")
        port_text = rest[1:]
    elif text.count(":") == 1:
        host_text, port_text = text.split(":")
    host_text = host_text or "0.0.0.0"  # noqa: S104 - ':PORT' means every address, as in ss/nginx
    try:
        host = ipaddress.ip_address(host_text)
    except ValueError as exc:
        raise SettingsError(f"{text!r}: {host_text!r} is not an IP address") from exc
    port = default_port
    if port_text:
        if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
            raise SettingsError(f"{text!r}: port must be a number from 0 to 65535")
        port = int(port_text)
    return HostPort(host, port)


def parse_ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        return ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError as exc:
        raise SettingsError(f"{text!r} is not an IP address") from exc


def validate_node_name(name: str) -> str:
    """Return `name` if it is a valid node name, else raise SettingsError saying why."""
    if not _NODE_NAME.match(name):
        raise SettingsError(
            f"node name {name!r} is invalid: use 1-63 lowercase letters, digits and '-', "
            "not starting or ending with '-'"
        )
    return name
