"""The netlink adapter; with `netconfig.rtnl`, its netlink channel, the only modules that import pyroute2.

`KernelAdapter(netns=None)` works on the current network namespace, `KernelAdapter("NAME")`
inside the named one (`ip netns add NAME`), which is how tests run it in throwaway
namespaces without touching the host's links. Tests of kernel features this machine lacks
(bonding, 802.1Q, VLAN filtering) pass a recording stand-in for pyroute2's `IPRoute` as
`ipr=` and check the netlink requests instead.

Translation notes (what the kernel calls things):
- A NIC's MAC is its permanent address when the driver reports one (`IFLA_PERM_ADDRESS`):
  a bond member's current address is the bond's. Without one (dummy, veth), a bond member's
  MAC is the one the bond saved at enslaving (`IFLA_BOND_SLAVE_PERM_HWADDR`, restored when
  the member is released).
- Routes: only table main, unicast, protocol `boot` (what `ip route add` sets) or `static`
  (what this adapter sets) count as configured; kernel and RA routes are not ours.
- Addresses: IPv6 link-local ones are the kernel's own and are not reported.
- VXLAN peers are the all-zero-MAC FDB entries of the device, dumped device by device (the
  kernel filters: the bridges' own FDBs, a hundred entries for a few bridges, are not read).
- Bridge attributes are sent only when they change: a kernel built without VLAN filtering
  refuses even `vlan_filtering 0`.
- Interface indexes (and kinds) are remembered from the last `links()` dump and kept current
  by this adapter's own creates, deletes and renames, instead of asked of the kernel before
  every request (that lookup was about half of each action's time). Every change is planned
  from a `links()` taken just before, so the index used is that of the link the plan was
  made for; if someone else deletes a link in between, its request fails with ENODEV
  (a removal counts that as done) rather than reaching another link, since the kernel does
  not reuse an index soon. A name not seen yet is looked up.

Requests and dumps go through `netconfig.rtnl.Rtnl`, which answers the same calls as
pyroute2's `IPRoute` (tests hand the adapter a recording stand-in, or a plain `IPRoute`,
as `ipr=`) about four times faster per request and decodes only the attributes read here.
One request at a time, in plan order, each acknowledged before the next is sent.

Left out: events (this adapter is polled), and anything other than the link kinds of the model.
"""

from __future__ import annotations

import ipaddress
import socket
from types import TracebackType
from typing import Any

import msgspec
from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from netconfig.adapter import KernelLink
from netconfig.model import (
    AnyLink,
    Bond,
    BondMode,
    Bridge,
    LacpRate,
    Nic,
    Route,
    Vlan,
    Vxlan,
    XmitHashPolicy,
    canonical_route,
)
from netconfig.rtnl import Rtnl

IFF_UP = 0x1
RT_TABLE_MAIN = 254
RTN_UNICAST = 1
RTPROT_BOOT = 3
RTPROT_STATIC = 4
BRIDGE_VLAN_INFO_PVID = 0x2
BRIDGE_VLAN_INFO_UNTAGGED = 0x4
ZERO_MAC = "00:00:00:00:00:00"
# errno values that mean "already gone" for a removal
_GONE = {3, 2, 19, 99}  # ESRCH, ENOENT, ENODEV, EADDRNOTAVAIL

BOND_MODES: dict[int, BondMode] = {
    0: "balance-rr",
    1: "active-backup",
    2: "balance-xor",
    3: "broadcast",
    4: "802.3ad",
    5: "balance-tlb",
    6: "balance-alb",
}
LACP_RATES: dict[int, LacpRate] = {0: "slow", 1: "fast"}
HASHING_MODES: frozenset[BondMode] = frozenset({"balance-xor", "802.3ad"})  # where xmit_hash_policy is managed
HASH_POLICIES: dict[int, XmitHashPolicy] = {
    0: "layer2",
    1: "layer3+4",
    2: "layer2+3",
    3: "encap2+3",
    4: "encap3+4",
    5: "vlan+srcmac",
}


def _code(mapping: dict[int, Any], value: object) -> int:
    return next(k for k, v in mapping.items() if v == value)


class KernelAdapter:
    """`Adapter` over netlink, in the current or a named network namespace."""

    def __init__(self, netns: str | None = None, *, ipr: Any = None) -> None:
        self.netns = netns
        self._socket: Any = ipr
        self._known: dict[str, tuple[int, str | None]] = {}  # name -> (index, kind; "" none, None unknown)

    @property
    def _ipr(self) -> Any:
        # Opened on first use, in the thread that uses it: pyroute2's synchronous IPRoute runs
        # its own event loop, so it cannot be created inside a running asyncio loop.
        if self._socket is None:
            self._socket = Rtnl(IPRoute(netns=self.netns) if self.netns is not None else IPRoute())
        return self._socket

    def close(self) -> None:
        """Close the netlink socket (if it was opened)."""
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def __enter__(self) -> KernelAdapter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- reading ------------------------------------------------------------------------------

    def links(self) -> list[KernelLink]:
        messages = list(self._ipr.get_links())
        names = {int(m["index"]): str(m.get("IFLA_IFNAME")) for m in messages}
        self._known = {names[int(m["index"])]: (int(m["index"]), _kind(m)) for m in messages}
        addresses = self._addresses()
        routes = self._routes()
        peers = self._peers([int(m["index"]) for m in messages if _kind(m) == "vxlan"])
        vlans = self._vlans()
        result = []
        for message in messages:
            index = int(message["index"])
            spec = self._spec(message, names, vlans.get(index, {}))
            common: dict[str, Any] = {
                "mtu": message.get("IFLA_MTU"),
                "up": bool(message["flags"] & IFF_UP),
                "addresses": tuple(addresses.get(index, ())),
                "routes": tuple(routes.get(index, ())),
            }
            if isinstance(spec, Vxlan):
                common["peers"] = tuple(peers.get(index, ()))
            spec = _replace(spec, **common)
            master = message.get("IFLA_MASTER")
            port_vlans, port_pvid = _vlan_lists(vlans.get(index, {}))
            result.append(
                KernelLink(
                    spec=spec,
                    master=names.get(int(master)) if master else None,
                    vlans=port_vlans,
                    pvid=port_pvid,
                )
            )
        return result

    def _spec(self, message: Any, names: dict[int, str], vlan_entries: dict[int, int]) -> AnyLink:
        name = str(message.get("IFLA_IFNAME"))
        info = message.get("IFLA_LINKINFO")
        kind = info.get("IFLA_INFO_KIND") if info is not None else None
        data = info.get("IFLA_INFO_DATA") if info is not None else None

        def attr(key: str, default: Any = None) -> Any:
            if data is None:
                return default
            value = data.get(key)
            return default if value is None else value

        def name_of(index: Any) -> str | None:
            return names.get(int(index)) if index else None

        match kind:
            case "bridge":
                self_vlans, self_pvid = _vlan_lists(vlan_entries)
                return Bridge(
                    name=name,
                    stp=bool(attr("IFLA_BR_STP_STATE", 0)),
                    vlan_filtering=bool(attr("IFLA_BR_VLAN_FILTERING", 0)),
                    vlans=self_vlans,
                    pvid=self_pvid,
                )
            case "bond":
                mode = BOND_MODES.get(int(attr("IFLA_BOND_MODE", 0)), "balance-rr")
                # The kernel reports every option in every mode; report those the mode uses
                # (what validate allows), so a snapshot can be created again: the kernel
                # refuses a LACP rate outside 802.3ad (EACCES).
                return Bond(
                    name=name,
                    mode=mode,
                    miimon=int(attr("IFLA_BOND_MIIMON", 0)),
                    primary=name_of(attr("IFLA_BOND_PRIMARY")),
                    lacp_rate=LACP_RATES.get(int(attr("IFLA_BOND_AD_LACP_RATE", 0))) if mode == "802.3ad" else None,
                    xmit_hash_policy=HASH_POLICIES.get(int(attr("IFLA_BOND_XMIT_HASH_POLICY", 0)))
                    if mode in HASHING_MODES
                    else None,
                )
            case "vlan":
                return Vlan(name=name, link=name_of(message.get("IFLA_LINK")) or "", id=int(attr("IFLA_VLAN_ID", 0)))
            case "vxlan":
                return Vxlan(
                    name=name,
                    vni=int(attr("IFLA_VXLAN_ID", 0)),
                    local=_ip_or_none(attr("IFLA_VXLAN_LOCAL") or attr("IFLA_VXLAN_LOCAL6")),
                    group=_ip_or_none(attr("IFLA_VXLAN_GROUP") or attr("IFLA_VXLAN_GROUP6")),
                    dev=name_of(attr("IFLA_VXLAN_LINK")),
                    port=int(attr("IFLA_VXLAN_PORT", 0)),
                    learning=bool(attr("IFLA_VXLAN_LEARNING", 0)),
                )
            case _:
                return Nic(name=name, mac=_nic_mac(message, info))

    def _addresses(self) -> dict[int, list[str]]:
        result: dict[int, list[str]] = {}
        for message in self._ipr.get_addr():
            address = message.get("IFA_LOCAL") or message.get("IFA_ADDRESS")
            if address is None:
                continue
            interface = ipaddress.ip_interface(f"{address}/{message['prefixlen']}")
            if interface.version == 6 and interface.ip.is_link_local:
                continue
            result.setdefault(int(message["index"]), []).append(str(interface))
        return result

    def _routes(self) -> dict[int, list[Route]]:
        result: dict[int, list[Route]] = {}
        for family in (socket.AF_INET, socket.AF_INET6):
            try:
                messages = list(self._ipr.get_routes(family=family, table=RT_TABLE_MAIN))
            except NetlinkError:
                continue  # IPv6 disabled
            for message in messages:
                if message["type"] != RTN_UNICAST or message["proto"] not in (RTPROT_BOOT, RTPROT_STATIC):
                    continue  # checked first: header fields, so the attributes of most messages go undecoded
                oif = message.get("RTA_OIF")
                if oif is None or message.get("RTA_TABLE", message.get("table")) != RT_TABLE_MAIN:
                    continue
                dst = message.get("RTA_DST")
                to = "default" if not message["dst_len"] else f"{dst}/{message['dst_len']}"
                metric = message.get("RTA_PRIORITY")
                route = Route(to=to, via=message.get("RTA_GATEWAY"), metric=int(metric) if metric is not None else None)
                if to == "default" and route.via is None and family == socket.AF_INET6:
                    continue  # a device default route over IPv6 cannot be told from IPv4 in the model
                result.setdefault(int(oif), []).append(canonical_route(route))
        return result

    def _peers(self, vxlans: list[int]) -> dict[int, list[str]]:
        """Flooding peers of the VXLAN devices with these indexes: each device's FDB only."""
        result: dict[int, list[str]] = {}
        for index in vxlans:
            for message in self._ipr.fdb("dump", ifindex=index):
                dst = message.get("NDA_DST")
                if dst is None or message.get("NDA_LLADDR") != ZERO_MAC:
                    continue
                result.setdefault(int(message["ifindex"]), []).append(str(ipaddress.ip_address(dst)))
        return result

    def _vlans(self) -> dict[int, dict[int, int]]:
        """Bridge VLAN entries per interface index: vid -> flags (empty without VLAN filtering support)."""
        result: dict[int, dict[int, int]] = {}
        try:
            messages = list(self._ipr.get_vlans())
        except NetlinkError:
            return result
        for message in messages:
            spec = message.get("IFLA_AF_SPEC")
            if spec is None:
                continue
            entries = result.setdefault(int(message["index"]), {})
            for info in spec.get_attrs("IFLA_BRIDGE_VLAN_INFO"):
                entries[int(info["vid"])] = int(info["flags"])
        return result

    # -- changing -----------------------------------------------------------------------------

    def _index(self, name: str) -> int:
        known = self._known.get(name)
        if known is not None:
            return known[0]
        found = self._ipr.link_lookup(ifname=name)
        if not found:
            raise LookupError(f"no link named {name!r}")
        self._known[name] = (int(found[0]), None)
        return int(found[0])

    def _kind_of(self, name: str) -> str:
        """The link's IFLA_INFO_KIND ("bridge", "bond", ...), "" for one without (a physical NIC)."""
        index = self._index(name)
        kind = self._known[name][1]
        if kind is None:
            kind = _kind(self._ipr.get_links(index)[0])
            self._known[name] = (index, kind)
        return kind

    def create(self, link: Bond | Vlan | Bridge | Vxlan) -> None:
        args: dict[str, Any] = {"ifname": link.name}
        match link:
            case Bridge():
                args |= {"kind": "bridge", "br_stp_state": int(link.stp)}
                if link.vlan_filtering:
                    args["br_vlan_filtering"] = 1
            case Bond():
                args |= {"kind": "bond", "bond_mode": _code(BOND_MODES, link.mode)}
                args |= _bond_options(link)
            case Vlan():
                args |= {"kind": "vlan", "link": self._index(link.link), "vlan_id": link.id}
            case Vxlan():
                args |= {
                    "kind": "vxlan",
                    "vxlan_id": link.vni,
                    "vxlan_port": link.port,
                    "vxlan_learning": int(link.learning),
                }
                six = any(":" in a for a in (link.local or "", link.group or "", *link.peers))
                if link.local is not None:
                    args["vxlan_local6" if six else "vxlan_local"] = link.local
                if link.group is not None:
                    args["vxlan_group6" if six else "vxlan_group"] = link.group
                if link.dev is not None:
                    args["vxlan_link"] = self._index(link.dev)
        self._known.pop(link.name, None)
        self._ipr.link("add", **args)

    def delete(self, name: str) -> None:
        try:
            index = self._index(name)
        except LookupError:
            return
        # Deleting a bond releases its members, and the bonding driver sets each one down
        # (checked in Debian's kernel); put those that were up back up, as for `set_master`.
        up_members = []
        if self._kind(index) == "bond":
            up_members = [
                int(m["index"]) for m in self._ipr.get_links() if m.get("IFLA_MASTER") == index and m["flags"] & IFF_UP
            ]
        self._gone_ok(lambda: self._ipr.link("del", index=index))
        for member in up_members:
            self._ipr.link("set", index=member, state="up")
        self._known.pop(name, None)

    def rename(self, name: str, new_name: str) -> None:
        index = self._index(name)
        was_up = bool(self._ipr.get_links(index)[0]["flags"] & IFF_UP)
        if was_up:
            self._ipr.link("set", index=index, state="down")
        self._ipr.link("set", index=index, ifname=new_name)
        self._known[new_name] = self._known.pop(name, (index, None))
        if was_up:
            self._ipr.link("set", index=index, state="up")

    def set_options(self, link: Bond | Bridge) -> None:
        index = self._index(link.name)
        if isinstance(link, Bridge):
            current = self._spec(self._ipr.get_links(index)[0], {}, {})
            args: dict[str, Any] = {}
            if not isinstance(current, Bridge) or current.stp != link.stp:
                args["br_stp_state"] = int(link.stp)
            if not isinstance(current, Bridge) or current.vlan_filtering != link.vlan_filtering:
                args["br_vlan_filtering"] = int(link.vlan_filtering)
            if args:
                self._ipr.link("set", index=index, kind="bridge", **args)
            return
        args = _bond_options(link)
        if link.primary is not None:
            args["bond_primary"] = self._index(link.primary)
        if args:
            self._ipr.link("set", index=index, kind="bond", **args)

    def set_mtu(self, name: str, mtu: int) -> None:
        self._ipr.link("set", index=self._index(name), mtu=mtu)

    def set_up(self, name: str, up: bool) -> None:
        self._ipr.link("set", index=self._index(name), state="up" if up else "down")

    def set_master(self, name: str, master: str | None) -> None:
        # Membership changes leave the admin state as it was, which the bonding driver does not
        # (checked in Debian's kernel): it refuses a member that is up (EPERM), sets every member
        # it takes up, and every member it releases down. A bridge changes neither.
        index = self._index(name)
        link = self._ipr.get_links(index)[0]
        was_up = bool(link["flags"] & IFF_UP)
        if master is None:
            old_master = link.get("IFLA_MASTER")
            from_bond = bool(old_master) and self._kind(int(old_master)) == "bond"
            self._ipr.link("set", index=index, master=0)
            if from_bond and was_up:
                self._ipr.link("set", index=index, state="up")
            return
        master_index = self._index(master)
        if self._kind_of(master) != "bond":
            self._ipr.link("set", index=index, master=master_index)
            return
        if was_up:
            self._ipr.link("set", index=index, state="down")
        self._ipr.link("set", index=index, master=master_index)
        if not was_up:
            self._ipr.link("set", index=index, state="down")

    def _kind(self, index: int) -> str | None:
        info = self._ipr.get_links(index)[0].get("IFLA_LINKINFO")
        return info.get("IFLA_INFO_KIND") if info is not None else None

    def add_address(self, name: str, address: str) -> None:
        interface = ipaddress.ip_interface(address)
        self._ipr.addr("add", index=self._index(name), address=str(interface.ip), prefixlen=interface.network.prefixlen)

    def del_address(self, name: str, address: str) -> None:
        interface = ipaddress.ip_interface(address)
        self._gone_ok(
            lambda: self._ipr.addr(
                "del", index=self._index(name), address=str(interface.ip), prefixlen=interface.network.prefixlen
            )
        )

    def _route_args(self, name: str, route: Route) -> dict[str, Any]:
        route = canonical_route(route)
        args: dict[str, Any] = {"oif": self._index(name), "table": RT_TABLE_MAIN, "priority": route.metric}
        if route.to == "default":
            family = 6 if route.via is not None and ":" in route.via else 4
            args["dst_len"] = 0
        else:
            network = ipaddress.ip_network(route.to)
            family = network.version
            args |= {"dst": str(network.network_address), "dst_len": network.prefixlen}
        args["family"] = socket.AF_INET6 if family == 6 else socket.AF_INET
        if route.via is not None:
            args["gateway"] = route.via
        return args

    def add_route(self, name: str, route: Route) -> None:
        self._ipr.route("add", proto=RTPROT_STATIC, **self._route_args(name, route))

    def del_route(self, name: str, route: Route) -> None:
        self._gone_ok(lambda: self._ipr.route("del", **self._route_args(name, route)))

    def add_peer(self, name: str, peer: str) -> None:
        self._ipr.fdb("append", ifindex=self._index(name), lladdr=ZERO_MAC, dst=peer)

    def del_peer(self, name: str, peer: str) -> None:
        self._gone_ok(lambda: self._ipr.fdb("del", ifindex=self._index(name), lladdr=ZERO_MAC, dst=peer))

    def add_bridge_vlan(self, name: str, vid: int, *, pvid: bool) -> None:
        flags = BRIDGE_VLAN_INFO_PVID | BRIDGE_VLAN_INFO_UNTAGGED if pvid else 0
        self._ipr.vlan_filter("add", **self._vlan_target(name), vlan_info={"vid": vid, "flags": flags})

    def del_bridge_vlan(self, name: str, vid: int) -> None:
        self._gone_ok(lambda: self._ipr.vlan_filter("del", **self._vlan_target(name), vlan_info={"vid": vid}))

    def _vlan_target(self, name: str) -> dict[str, Any]:
        index = self._index(name)
        if self._kind_of(name) == "bridge":
            return {"index": index, "vlan_flags": "self"}  # the bridge device itself
        return {"index": index}

    @staticmethod
    def _gone_ok(call: Any) -> None:
        try:
            call()
        except LookupError:
            return
        except NetlinkError as exc:
            if exc.code not in _GONE:
                raise


def _bond_options(link: Bond) -> dict[str, Any]:
    args: dict[str, Any] = {}
    if link.miimon is not None:
        args["bond_miimon"] = link.miimon
    if link.lacp_rate is not None:
        args["bond_ad_lacp_rate"] = _code(LACP_RATES, link.lacp_rate)
    if link.xmit_hash_policy is not None:
        args["bond_xmit_hash_policy"] = _code(HASH_POLICIES, link.xmit_hash_policy)
    return args


def _kind(message: Any) -> str:
    info = message.get("IFLA_LINKINFO")
    kind = info.get("IFLA_INFO_KIND") if info is not None else None
    return str(kind) if kind else ""


def _vlan_lists(entries: dict[int, int]) -> tuple[tuple[int, ...], int | None]:
    """(tagged VLANs, PVID) from bridge VLAN entries; the PVID counts only if it is also untagged."""
    pvid = None
    tagged = []
    for vid, flags in sorted(entries.items()):
        both = BRIDGE_VLAN_INFO_PVID | BRIDGE_VLAN_INFO_UNTAGGED
        if flags & both == both and pvid is None:
            pvid = vid
        else:
            tagged.append(vid)
    if not entries:
        return (), 1  # no VLAN information (a port of a bridge without filtering): the kernel's default
    return tuple(tagged), pvid


def _nic_mac(message: Any, info: Any) -> str:
    """The MAC a NIC is known by: the permanent one the hardware reports; for a bond member
    without one (dummy, veth, some virtual NICs), the address the bond saved when it took the
    member, because the member's current address is the bond's; else the current address."""
    candidates = [message.get("IFLA_PERM_ADDRESS")]
    if info is not None and info.get("IFLA_INFO_SLAVE_KIND") == "bond":
        slave = info.get("IFLA_INFO_SLAVE_DATA")
        if slave is not None:
            candidates.append(slave.get("IFLA_BOND_SLAVE_PERM_HWADDR"))
    candidates.append(message.get("IFLA_ADDRESS"))
    return str(next((mac for mac in candidates if mac and mac != ZERO_MAC), ZERO_MAC)).lower()


def _ip_or_none(value: Any) -> str | None:
    if not value:
        return None
    address = ipaddress.ip_address(value)
    return None if address.is_unspecified else str(address)


def _replace(spec: AnyLink, **changes: Any) -> AnyLink:
    return msgspec.structs.replace(spec, **changes)
