"""The steps of a plan: small, frozen, printable, and serialisable for the API.

Each action is one change through one `Adapter` method, and prints as the `ip`/`bridge`
command an operator would type for it, so `debvisor net plan` is a readable dry run. They are
a tagged union (`"op": "create"`, ...) so the REST API can return a plan as JSON (encoding
only: a plan is always computed, never accepted from a client).
"""

from __future__ import annotations

import msgspec

from netconfig.model import Bond, Bridge, Route, Vlan, Vxlan


class _Action(msgspec.Struct, frozen=True, kw_only=True, tag_field="op"):
    name: str


class Rename(_Action, frozen=True, kw_only=True, tag="rename"):
    """Rename a NIC found by its MAC address."""

    new_name: str

    def __str__(self) -> str:
        return f"ip link set dev {self.name} name {self.new_name}"


class Delete(_Action, frozen=True, kw_only=True, tag="delete"):
    """Delete a virtual link."""

    kind: str

    def __str__(self) -> str:
        return f"ip link del dev {self.name}  # {self.kind}"


class Create(_Action, frozen=True, kw_only=True, tag="create"):
    """Create a virtual link, down, with its kind attributes."""

    link: Bond | Vlan | Bridge | Vxlan

    def __str__(self) -> str:
        return f"ip link add {self.name} {_type_args(self.link, create=True)}"


class SetOptions(_Action, frozen=True, kw_only=True, tag="options"):
    """Change a bond's or bridge's attributes in place."""

    link: Bond | Bridge

    def __str__(self) -> str:
        return f"ip link set dev {self.name} {_type_args(self.link, create=False)}"


class SetMtu(_Action, frozen=True, kw_only=True, tag="mtu"):
    """Change a link's MTU."""

    mtu: int

    def __str__(self) -> str:
        return f"ip link set dev {self.name} mtu {self.mtu}"


class SetMaster(_Action, frozen=True, kw_only=True, tag="master"):
    """Enslave a link to a bridge or bond, or release it."""

    master: str | None

    def __str__(self) -> str:
        return f"ip link set dev {self.name} " + (f"master {self.master}" if self.master else "nomaster")


class AddBridgeVlan(_Action, frozen=True, kw_only=True, tag="bridge-vlan-add"):
    """Let a bridge port (or the bridge itself) carry a VLAN."""

    vid: int
    pvid: bool
    bridge_self: bool

    def __str__(self) -> str:
        flags = " pvid untagged" if self.pvid else ""
        where = " self" if self.bridge_self else ""
        return f"bridge vlan add dev {self.name} vid {self.vid}{flags}{where}"


class DelBridgeVlan(_Action, frozen=True, kw_only=True, tag="bridge-vlan-del"):
    """Stop a bridge port (or the bridge itself) carrying a VLAN."""

    vid: int
    bridge_self: bool

    def __str__(self) -> str:
        return f"bridge vlan del dev {self.name} vid {self.vid}" + (" self" if self.bridge_self else "")


class AddPeer(_Action, frozen=True, kw_only=True, tag="peer-add"):
    """Flood a VXLAN's broadcast and unknown traffic to a unicast peer too."""

    peer: str

    def __str__(self) -> str:
        return f"bridge fdb append 00:00:00:00:00:00 dev {self.name} dst {self.peer}"


class DelPeer(_Action, frozen=True, kw_only=True, tag="peer-del"):
    """Stop flooding a VXLAN's traffic to a peer."""

    peer: str

    def __str__(self) -> str:
        return f"bridge fdb del 00:00:00:00:00:00 dev {self.name} dst {self.peer}"


class AddAddress(_Action, frozen=True, kw_only=True, tag="addr-add"):
    """Add an address to a link."""

    address: str

    def __str__(self) -> str:
        return f"ip addr add {self.address} dev {self.name}"


class DelAddress(_Action, frozen=True, kw_only=True, tag="addr-del"):
    """Remove an address from a link."""

    address: str

    def __str__(self) -> str:
        return f"ip addr del {self.address} dev {self.name}"


class AddRoute(_Action, frozen=True, kw_only=True, tag="route-add"):
    """Add a static route through a link."""

    route: Route

    def __str__(self) -> str:
        return f"ip route add {_route_args(self.route)} dev {self.name}"


class DelRoute(_Action, frozen=True, kw_only=True, tag="route-del"):
    """Remove a static route through a link."""

    route: Route

    def __str__(self) -> str:
        return f"ip route del {_route_args(self.route)} dev {self.name}"


class SetUp(_Action, frozen=True, kw_only=True, tag="up"):
    """Set a link's administrative state."""

    up: bool

    def __str__(self) -> str:
        return f"ip link set dev {self.name} {'up' if self.up else 'down'}"


Action = (
    Rename
    | Delete
    | Create
    | SetOptions
    | SetMtu
    | SetMaster
    | AddBridgeVlan
    | DelBridgeVlan
    | AddPeer
    | DelPeer
    | AddAddress
    | DelAddress
    | AddRoute
    | DelRoute
    | SetUp
)


def _route_args(route: Route) -> str:
    text = route.to
    if route.via is not None:
        text += f" via {route.via}"
    if route.metric is not None:
        text += f" metric {route.metric}"
    return text


def _onoff(value: bool) -> str:
    return "1" if value else "0"


def _type_args(link: Bond | Vlan | Bridge | Vxlan, *, create: bool) -> str:
    match link:
        case Bond():
            parts = ["type bond"]
            if create:
                parts.append(f"mode {link.mode}")
            if link.miimon is not None:
                parts.append(f"miimon {link.miimon}")
            if link.lacp_rate is not None:
                parts.append(f"lacp_rate {link.lacp_rate}")
            if link.xmit_hash_policy is not None:
                parts.append(f"xmit_hash_policy {link.xmit_hash_policy}")
            if link.primary is not None and not create:
                parts.append(f"primary {link.primary}")
            return " ".join(parts)
        case Vlan():
            return f"link {link.link} type vlan id {link.id}"
        case Bridge():
            return f"type bridge stp_state {_onoff(link.stp)} vlan_filtering {_onoff(link.vlan_filtering)}"
        case Vxlan():
            parts = [f"type vxlan id {link.vni}"]
            if link.local is not None:
                parts.append(f"local {link.local}")
            if link.group is not None:
                parts.append(f"group {link.group}")
            if link.dev is not None:
                parts.append(f"dev {link.dev}")
            parts.append(f"dstport {link.port}")
            parts.append("learning" if link.learning else "nolearning")
            return " ".join(parts)
