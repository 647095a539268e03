"""Observed host networking for the status API: every link with its counters, addresses, routes.

netconfig's `observe` reports only managed links and only configuration; an operator asking
"what does the node have right now" wants everything: unmanaged links, operational state,
traffic counters, kernel routes. This adapter reads that over netlink (pyroute2, the only
import of it in `appliance/`), in the network namespace the service manages, and is called in
the network service's netlink thread. Left out: neighbours, FDB tables, per-queue statistics.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any, Protocol

from appliance.network.types import LinkCounters, LinkState, RouteState

IFF_UP = 0x1
RT_TABLE_MAIN = 254
RTN_UNICAST = 1
PROTOCOLS = {2: "kernel", 3: "boot", 4: "static", 9: "ra", 16: "dhcp"}
_COUNTERS = LinkCounters.__struct_fields__


class LinkReader(Protocol):
    """Reads the links and main-table routes of one namespace."""

    def read(self) -> tuple[list[LinkState], list[RouteState]]: ...

    def close(self) -> None: ...


class KernelLinkReader:
    """`LinkReader` over netlink; the socket opens on first use, in the thread that uses it."""

    def __init__(self, netns: str | None = None) -> None:
        self.netns = netns
        self._socket: Any = None

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def read(self) -> tuple[list[LinkState], list[RouteState]]:
        if self._socket is None:
            from pyroute2 import IPRoute  # noqa: PLC0415 - only nodes that are asked import netlink

            self._socket = IPRoute(netns=self.netns) if self.netns is not None else IPRoute()
        ipr = self._socket
        messages = list(ipr.get_links())
        names = {int(m["index"]): str(m.get("IFLA_IFNAME")) for m in messages}
        addresses: dict[int, list[str]] = {}
        for message in ipr.get_addr():
            address = message.get("IFA_LOCAL") or message.get("IFA_ADDRESS")
            if address is not None:
                addresses.setdefault(int(message["index"]), []).append(f"{address}/{message['prefixlen']}")
        links = [_link(m, names, addresses.get(int(m["index"]), [])) for m in messages]
        return links, _routes(ipr, names)


def _link(message: Any, names: dict[int, str], addresses: list[str]) -> LinkState:
    info = message.get("IFLA_LINKINFO")
    stats = message.get("IFLA_STATS64") or message.get("IFLA_STATS")
    counters = LinkCounters(**{f: int(stats.get(f) or 0) for f in _COUNTERS}) if stats else LinkCounters()
    master = message.get("IFLA_MASTER")
    return LinkState(
        name=str(message.get("IFLA_IFNAME")),
        index=int(message["index"]),
        kind=str(info.get("IFLA_INFO_KIND") or "") if info is not None else "",
        mac=str(message.get("IFLA_ADDRESS") or ""),
        mtu=int(message.get("IFLA_MTU") or 0),
        up=bool(message["flags"] & IFF_UP),
        operstate=str(message.get("IFLA_OPERSTATE") or "UNKNOWN"),
        master=names.get(int(master)) if master else None,
        addresses=sorted(addresses),
        counters=counters,
    )


def _routes(ipr: Any, names: dict[int, str]) -> list[RouteState]:
    result: list[RouteState] = []
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            messages = list(ipr.get_routes(family=family, table=RT_TABLE_MAIN))
        except Exception:  # noqa: S112 - IPv6 disabled: report IPv4 only
            continue
        for message in messages:
            if message["type"] != RTN_UNICAST or message.get("RTA_TABLE", RT_TABLE_MAIN) != RT_TABLE_MAIN:
                continue
            dst = message.get("RTA_DST")
            if not message["dst_len"]:
                to = "default"
            else:
                to = str(ipaddress.ip_network(f"{dst}/{message['dst_len']}", strict=False))
            oif = message.get("RTA_OIF")
            metric = message.get("RTA_PRIORITY")
            result.append(
                RouteState(
                    to=to,
                    dev=names.get(int(oif)) if oif else None,
                    via=message.get("RTA_GATEWAY"),
                    metric=int(metric) if metric is not None else None,
                    protocol=PROTOCOLS.get(int(message["proto"]), str(message["proto"])),
                )
            )
    return result
