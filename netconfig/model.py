"""The network configuration model: what an operator writes, and what `observe` reports.

One shape serves both directions, so a snapshot of the kernel is just another `NetworkConfig`
(restricted to the links DebVisor manages) and rolling back is `plan(snapshot, now)` + apply.
Every link kind is a frozen msgspec Struct with `forbid_unknown_fields`, so a typo in a file is
an error with its path instead of a silently ignored key.

Conventions that matter for idempotence:
- An optional attribute left at `None` (mtu, bond miimon, primary, lacp_rate,
  xmit_hash_policy) is not managed: whatever the kernel has is kept. `observe` always fills
  them in, so a snapshot restores them.
- Membership is stated on the upper device only (`Bridge.ports`, `Bond.interfaces`); a lower
  device has no `master` field.
- Addresses are `ADDRESS/PREFIX` strings; routes belong to the link they leave through.

Deliberately left out: veth/tap/macvlan (made by the VM and container code, not host
configuration), DHCP and SLAAC (a hypervisor host's addresses are static), policy routing
and route tables other than `main`, bond ARP monitoring, and VXLAN over IPv6 multicast
groups with a source-specific join.
"""

from __future__ import annotations

import ipaddress
from typing import Literal

import msgspec

BondMode = Literal["balance-rr", "active-backup", "balance-xor", "broadcast", "802.3ad", "balance-tlb", "balance-alb"]
LacpRate = Literal["slow", "fast"]
XmitHashPolicy = Literal["layer2", "layer3+4", "layer2+3", "encap2+3", "encap3+4", "vlan+srcmac"]
Kind = Literal["nic", "bond", "vlan", "bridge", "vxlan"]

VXLAN_PORT = 4789  # IANA's port; the Linux default (8472) predates it, so it is always given explicitly


class Route(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True, omit_defaults=True):
    """A static route in the main table leaving through the link it is listed on."""

    to: str  # "default" or a network, e.g. "10.20.0.0/16"
    via: str | None = None  # gateway; None for an on-link route
    metric: int | None = None  # None: the kernel's default (0 for IPv4, 1024 for IPv6)


class _Link(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True, omit_defaults=True):
    """Fields every link kind has."""

    name: str
    mtu: int | None = None  # None: not managed
    up: bool = True  # administrative state
    addresses: tuple[str, ...] = ()  # "ADDRESS/PREFIX", IPv4 or IPv6
    routes: tuple[Route, ...] = ()


class Nic(_Link, frozen=True, forbid_unknown_fields=True, kw_only=True, omit_defaults=True):
    """A physical interface, found by its MAC address and renamed to `name` when needed."""

    mac: str


class Bond(_Link, frozen=True, forbid_unknown_fields=True, kw_only=True, omit_defaults=True):
    """A Linux bond over NICs."""

    mode: BondMode = "active-backup"
    interfaces: tuple[str, ...] = ()  # member NIC names
    miimon: int | None = None  # link monitoring interval in ms
    primary: str | None = None  # active-backup only: preferred member
    lacp_rate: LacpRate | None = None  # 802.3ad only
    xmit_hash_policy: XmitHashPolicy | None = None  # balance-xor and 802.3ad only


class Vlan(_Link, frozen=True, forbid_unknown_fields=True, kw_only=True, omit_defaults=True):
    """An 802.1Q VLAN device on a NIC, bond or bridge."""

    link: str  # the lower device
    id: int


class BridgePort(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True, omit_defaults=True):
    """A bridge port and, on a VLAN-aware bridge, the VLANs it carries."""

    name: str
    vlans: tuple[int, ...] = ()  # tagged VLANs (vlan_filtering only)
    pvid: int | None = 1  # untagged VLAN for ingress and egress; None drops untagged frames


class Bridge(_Link, frozen=True, forbid_unknown_fields=True, kw_only=True, omit_defaults=True):
    """A Linux bridge; with `vlan_filtering` its ports and the bridge itself carry VLAN lists."""

    stp: bool = False
    vlan_filtering: bool = False
    ports: tuple[BridgePort, ...] = ()
    vlans: tuple[int, ...] = ()  # tagged VLANs on the bridge device itself (for VLAN devices on it)
    pvid: int | None = 1  # untagged VLAN of the bridge device itself


class Vxlan(_Link, frozen=True, forbid_unknown_fields=True, kw_only=True, omit_defaults=True):
    """A VXLAN tunnel endpoint; flooding goes to `peers` (unicast, via FDB) or to `group`."""

    vni: int
    local: str | None = None  # source address of the tunnel
    peers: tuple[str, ...] = ()  # unicast remote endpoints (all-zero MAC FDB entries)
    group: str | None = None  # multicast group instead of peers
    dev: str | None = None  # underlay device (required with a group)
    port: int = VXLAN_PORT  # UDP destination port
    learning: bool = False  # learn remote MACs from traffic


AnyLink = Nic | Bond | Vlan | Bridge | Vxlan


class NetworkConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True, omit_defaults=True):
    """A host's network: every link DebVisor manages, grouped by kind."""

    nics: tuple[Nic, ...] = ()
    bonds: tuple[Bond, ...] = ()
    vlans: tuple[Vlan, ...] = ()
    bridges: tuple[Bridge, ...] = ()
    vxlans: tuple[Vxlan, ...] = ()

    def links(self) -> list[AnyLink]:
        """Every link, in section order."""
        return [*self.nics, *self.bonds, *self.vlans, *self.bridges, *self.vxlans]

    def names(self) -> set[str]:
        """Names of every link."""
        return {link.name for link in self.links()}


SECTIONS: dict[Kind, str] = {"nic": "nics", "bond": "bonds", "vlan": "vlans", "bridge": "bridges", "vxlan": "vxlans"}


def kind_of(link: AnyLink) -> Kind:
    """The kind of a link, as used in plans and messages."""
    match link:
        case Nic():
            return "nic"
        case Bond():
            return "bond"
        case Vlan():
            return "vlan"
        case Bridge():
            return "bridge"
        case Vxlan():
            return "vxlan"


def lower_of(link: AnyLink) -> str | None:
    """The device a link is stacked on (a VLAN's link, a VXLAN's underlay), if any."""
    if isinstance(link, Vlan):
        return link.link
    if isinstance(link, Vxlan):
        return link.dev
    return None


def members_of(link: AnyLink) -> tuple[str, ...]:
    """Names of the links enslaved to `link` (bridge ports, bond interfaces)."""
    if isinstance(link, Bridge):
        return tuple(p.name for p in link.ports)
    if isinstance(link, Bond):
        return link.interfaces
    return ()


def from_links(links: list[AnyLink]) -> NetworkConfig:
    """A `NetworkConfig` holding `links`, each in its section, sorted by name."""
    ordered = sorted(links, key=lambda link: link.name)
    return NetworkConfig(
        nics=tuple(x for x in ordered if isinstance(x, Nic)),
        bonds=tuple(x for x in ordered if isinstance(x, Bond)),
        vlans=tuple(x for x in ordered if isinstance(x, Vlan)),
        bridges=tuple(x for x in ordered if isinstance(x, Bridge)),
        vxlans=tuple(x for x in ordered if isinstance(x, Vxlan)),
    )


# -- canonical forms: the same address or route written two ways compares equal ------------


def canonical_address(text: str) -> str:
    """`text` as the kernel reports it ("10.0.0.1/24", "fd00::1/64"); ValueError if it is not one."""
    if "/" not in text:
        raise ValueError(f"{text!r} has no prefix length (write ADDRESS/PREFIX)")
    return str(ipaddress.ip_interface(text))


def route_family(route: Route) -> int:
    """4 or 6: the route's address family (a default route without a gateway is IPv4)."""
    if route.to != "default":
        return ipaddress.ip_network(route.to, strict=False).version
    if route.via is not None:
        return ipaddress.ip_address(route.via).version
    return 4


def canonical_route(route: Route) -> Route:
    """`route` with its network, gateway and metric spelled as `observe` reports them."""
    family = route_family(route)
    if route.to == "default":
        to = "default"
    else:
        network = ipaddress.ip_network(route.to, strict=True)
        to = "default" if network.prefixlen == 0 else str(network)
    via = str(ipaddress.ip_address(route.via)) if route.via is not None else None
    metric = route.metric if route.metric is not None else (0 if family == 4 else 1024)
    return Route(to=to, via=via, metric=metric)


def canonical_mac(text: str) -> str:
    """Lower-case, colon-separated; ValueError if `text` is not a 48-bit MAC address."""
    parts = text.replace("-", ":").lower().split(":")
    if len(parts) != 6 or not all(len(p) == 2 and all(c in "0123456789abcdef" for c in p) for p in parts):
        raise ValueError(f"{text!r} is not a MAC address")
    return ":".join(parts)


def canonical(link: AnyLink) -> AnyLink:
    """`link` with addresses, routes, MACs and peers in canonical, sorted form (assumes valid input)."""
    changes: dict[str, object] = {
        "addresses": tuple(sorted({canonical_address(a) for a in link.addresses})),
        "routes": tuple(sorted({canonical_route(r) for r in link.routes}, key=_route_sort_key)),
    }
    if isinstance(link, Nic):
        changes["mac"] = canonical_mac(link.mac)
    if isinstance(link, Vxlan):
        changes["peers"] = tuple(sorted({str(ipaddress.ip_address(p)) for p in link.peers}))
        if link.local is not None:
            changes["local"] = str(ipaddress.ip_address(link.local))
        if link.group is not None:
            changes["group"] = str(ipaddress.ip_address(link.group))
    if isinstance(link, Bridge):
        changes["ports"] = tuple(
            sorted(
                (msgspec.structs.replace(p, vlans=tuple(sorted(set(p.vlans)))) for p in link.ports),
                key=lambda p: p.name,
            )
        )
        changes["vlans"] = tuple(sorted(set(link.vlans)))
    if isinstance(link, Bond):
        changes["interfaces"] = tuple(sorted(set(link.interfaces)))
    return msgspec.structs.replace(link, **changes)


def canonical_config(config: NetworkConfig) -> NetworkConfig:
    """`config` with every link in canonical form and every section sorted by name."""
    return from_links([canonical(link) for link in config.links()])


def _route_sort_key(route: Route) -> tuple[str, str, int]:
    return (route.to, route.via or "", route.metric or 0)
