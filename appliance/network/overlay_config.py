"""Where overlay links come from: cluster overlay definitions + membership -> a `NetworkConfig`.

Pure functions (no netlink, no clock, no database): given the overlay networks defined for the
cluster, this node's and the alive members' underlay addresses, they produce the links this node
should have, a bridge and a VXLAN device per network, as a netconfig `NetworkConfig`. The
reconciler then runs netconfig's own `plan(desired, observed)` and `apply`, so overlay links are
planned exactly like the node's own configuration and a dry run is just printing the plan.

Rules:
- Each network gives a bridge (`bridge`, MTU) with one port, the VXLAN device `vx<VNI>`
  (learning off, `local` = this node's underlay address, `port`, MTU) whose flooding list
  (`peers`, all-zero-MAC FDB entries) is the underlay addresses of the other alive members.
- Underlay address: with `underlay` unset, the host part of a node's gossip address; with a
  network, the node's first published address inside it. A node without one gets no links
  for that network (reported); a peer without one is left out of the list.
- Two definitions with the same VNI or bridge name (possible after a partition heals, where
  each side created one) or a name the node's own configuration manages: the first by name
  wins, the others are skipped on this node with an error in its status.
- Addresses and routes on an overlay bridge are not the overlay's business: the generated
  bridge carries whatever the kernel has (`keep_host_addressing`), so an address added by hand
  or by a VM-facing service stays.

Left out: IPv6 multicast underlays, per-node addresses on the overlay, VLANs inside an overlay.
"""

from __future__ import annotations

import ipaddress

import msgspec

from appliance.network.types import OverlayRecord, OverlayState
from netconfig.model import Bridge, BridgePort, NetworkConfig, Vxlan, from_links
from netconfig.validate import problems


class Endpoint(msgspec.Struct, frozen=True, kw_only=True):
    """A member's addresses as far as overlays care."""

    name: str
    gossip: str  # the host part of its gossip address
    addresses: tuple[str, ...] = ()  # its published global addresses, "ADDRESS/PREFIX" or "ADDRESS"


class OverlayLinks(msgspec.Struct, frozen=True, kw_only=True):
    """The links to have, and per network what was made of it."""

    config: NetworkConfig
    states: list[OverlayState]


def gossip_host(addr: str) -> str:
    """ "10.0.0.1:7946" -> "10.0.0.1", "[fd00::1]:7946" -> "fd00::1"."""
    host = addr.rsplit(":", 1)[0] if addr.count(":") == 1 or addr.startswith("[") else addr
    return host.strip("[]")


def underlay_address(record: OverlayRecord, endpoint: Endpoint) -> str | None:
    """The address `endpoint` uses as a tunnel end of `record`, or None if it has none."""
    if record.underlay is None:
        try:
            return str(ipaddress.ip_address(endpoint.gossip))
        except ValueError:
            return None
    network = ipaddress.ip_network(record.underlay, strict=False)
    for text in endpoint.addresses:
        try:
            address = ipaddress.ip_interface(text).ip
        except ValueError:
            continue
        if address.version == network.version and address in network:
            return str(address)
    return None


def overlay_links(
    records: list[OverlayRecord],
    me: Endpoint,
    peers: list[Endpoint],
    *,
    reserved: frozenset[str] | set[str] = frozenset(),
) -> OverlayLinks:
    """The bridges and VXLAN devices this node should have for `records` (see the module rules)."""
    links: list[Bridge | Vxlan] = []
    states: list[OverlayState] = []
    vnis: dict[int, str] = {}
    names: dict[str, str] = {}
    for record in sorted(records, key=lambda r: r.name):
        local = underlay_address(record, me)
        state = OverlayState(
            name=record.name, vni=record.vni, bridge=record.bridge, vxlan=record.vxlan, local=local, peers=[]
        )
        error = _conflict(record, vnis, names, reserved)
        if error is None and local is None:
            error = (
                f"this node has no address in the underlay {record.underlay}"
                if record.underlay is not None
                else "this node's gossip address is not an IP address"
            )
        if error is not None:
            states.append(msgspec.structs.replace(state, local=local, error=error))
            continue
        assert local is not None
        version = ipaddress.ip_address(local).version
        addresses = {underlay_address(record, peer) for peer in peers if peer.name != me.name}
        remote = sorted(
            (a for a in addresses if a is not None and a != local and ipaddress.ip_address(a).version == version),
            key=ipaddress.ip_address,
        )
        vxlan = Vxlan(
            name=record.vxlan,
            vni=record.vni,
            local=local,
            peers=tuple(remote),
            port=record.port,
            learning=False,
            mtu=record.mtu,
        )
        bridge = Bridge(name=record.bridge, mtu=record.mtu, ports=(BridgePort(name=record.vxlan),))
        found = problems(NetworkConfig(bridges=(bridge,), vxlans=(vxlan,)))
        if found:
            states.append(msgspec.structs.replace(state, error="; ".join(found)))
            continue
        vnis[record.vni] = record.name
        names[record.bridge] = names[record.vxlan] = record.name
        links += [bridge, vxlan]
        states.append(msgspec.structs.replace(state, peers=remote))
    return OverlayLinks(config=from_links(list(links)), states=states)


def _conflict(
    record: OverlayRecord, vnis: dict[int, str], names: dict[str, str], reserved: frozenset[str] | set[str]
) -> str | None:
    if record.vni in vnis:
        return f"VNI {record.vni} is also used by network {vnis[record.vni]!r}"
    for name in (record.bridge, record.vxlan):
        if name in names:
            return f"link name {name!r} is also used by network {names[name]!r}"
        if name in reserved:
            return f"link name {name!r} is managed by this node's own network configuration"
    return None


def keep_host_addressing(config: NetworkConfig, observed: NetworkConfig) -> NetworkConfig:
    """`config` with each bridge's addresses and routes as `observed` has them (not managed here)."""
    have = {bridge.name: bridge for bridge in observed.bridges}
    bridges = []
    for bridge in config.bridges:
        current = have.get(bridge.name)
        kept = {"addresses": current.addresses, "routes": current.routes} if current is not None else {}
        bridges.append(msgspec.structs.replace(bridge, **kept))
    return msgspec.structs.replace(config, bridges=tuple(bridges))
