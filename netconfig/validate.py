"""Check a `NetworkConfig` for mistakes the kernel would reject or that make a plan unsafe.

Every problem is reported with the JSON path of the field at fault
(`$.vlans[2].id: 5000 is outside 1-4094`, with an en dash), and all problems are collected, not just the
first, so an operator fixes a file in one pass. Type errors (a string where a number belongs,
an unknown key) are msgspec's job at decode time (`load.py`), whose messages carry the path too.

Left out on purpose: anything that needs the machine (whether a MAC exists, whether a VXLAN's
local address is configured): those show up when the plan is applied, and commit-confirmed
rollback covers the damage.
"""

from __future__ import annotations

import ipaddress
import re

from netconfig.model import (
    SECTIONS,
    AnyLink,
    Bond,
    Bridge,
    NetworkConfig,
    Nic,
    Route,
    Vlan,
    Vxlan,
    canonical_address,
    canonical_mac,
    kind_of,
    lower_of,
    members_of,
    route_family,
)

VLAN_MIN, VLAN_MAX = 1, 4094
VNI_MIN, VNI_MAX = 1, 16_777_215
MTU_MIN, MTU_MAX = 68, 65_535
IPV6_MTU_MIN = 1280
VXLAN_OVERHEAD = {4: 50, 6: 70}  # outer IP + UDP + VXLAN + inner Ethernet headers
DASH = "\u2013"  # ranges print with an en dash, as in the issue: "1{DASH}4094"
_IFNAME = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")  # IFNAMSIZ - 1, and no '/', ':' or whitespace


class ConfigError(ValueError):
    """A configuration is invalid; `errors` holds one "PATH: problem" line per mistake."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


def check_address(text: str) -> str:
    """The reachability-check address in canonical form; `ConfigError` unless an IP literal.

    It becomes an argument of `ping`, so anything else (`-f`, `--help`, a host name that
    resolves who knows where, an IPv6 zone) is refused before a command is ever built.
    """
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        address = None
    if address is None or (isinstance(address, ipaddress.IPv6Address) and address.scope_id is not None):
        raise ConfigError([f"$.check: {text[:64]!r} is not an IPv4 or IPv6 address (such as 192.0.2.1 or 2001:db8::1)"])
    return str(address)


def validate(config: NetworkConfig) -> None:
    """Raise `ConfigError` listing every problem in `config`; return if there is none."""
    errors = problems(config)
    if errors:
        raise ConfigError(errors)


def problems(config: NetworkConfig) -> list[str]:
    """Every problem in `config`, as "PATH: problem" lines (empty when valid)."""
    return _Checker(config).run()


def path_of(link: AnyLink, index: int) -> str:
    """The JSON path of a link in its section, e.g. `$.vlans[2]`."""
    return f"$.{SECTIONS[kind_of(link)]}[{index}]"


def _indexed(config: NetworkConfig) -> list[tuple[str, AnyLink]]:
    """(path, link) for every link of `config`."""
    sections: list[tuple[AnyLink, ...]] = [config.nics, config.bonds, config.vlans, config.bridges, config.vxlans]
    return [(path_of(link, i), link) for section in sections for i, link in enumerate(section)]


class _Checker:
    def __init__(self, config: NetworkConfig) -> None:
        self.config = config
        self.errors: list[str] = []
        self.paths: dict[str, str] = {}  # name -> path of its first definition
        self.links: dict[str, AnyLink] = {}

    def err(self, path: str, message: str) -> None:
        self.errors.append(f"{path}: {message}")

    def run(self) -> list[str]:
        self._names()
        for path, link in _indexed(self.config):
            self._common(path, link)
            match link:
                case Bond():
                    self._bond(path, link)
                case Vlan():
                    self._vlan(path, link)
                case Bridge():
                    self._bridge(path, link)
                case Vxlan():
                    self._vxlan(path, link)
        self._masters()
        self._duplicate_vlans()
        if not self.errors:
            self._cycles()
        if not self.errors:
            self._mtus()
        return self.errors

    # -- names and references ------------------------------------------------------------

    def _names(self) -> None:
        macs: dict[str, str] = {}
        for path, link in _indexed(self.config):
            if not _IFNAME.match(link.name) or link.name in {".", ".."}:
                self.err(
                    f"{path}.name",
                    f"{link.name!r} is not an interface name (1-15 letters, digits, '_', '-', '.')",
                )
            if link.name in self.paths:
                self.err(f"{path}.name", f"{link.name!r} is already defined at {self.paths[link.name]}")
                continue
            self.paths[link.name] = path
            self.links[link.name] = link
            if isinstance(link, Nic):
                try:
                    mac = canonical_mac(link.mac)
                except ValueError as exc:
                    self.err(f"{path}.mac", str(exc))
                    continue
                if mac in macs:
                    self.err(f"{path}.mac", f"{mac} is already the MAC of {macs[mac]}")
                macs[mac] = path

    def _ref(self, path: str, name: str, *, what: str = "link") -> AnyLink | None:
        link = self.links.get(name)
        if link is None:
            self.err(path, f"{what} {name!r} is not defined in this configuration")
        return link

    # -- per kind ------------------------------------------------------------------------

    def _common(self, path: str, link: AnyLink) -> None:
        if link.mtu is not None and not MTU_MIN <= link.mtu <= MTU_MAX:
            self.err(f"{path}.mtu", f"{link.mtu} is outside {MTU_MIN}{DASH}{MTU_MAX}")
        seen: set[str] = set()
        has_v6 = False
        for i, text in enumerate(link.addresses):
            try:
                address = canonical_address(text)
            except ValueError as exc:
                self.err(f"{path}.addresses[{i}]", str(exc).replace("does not appear", "is not"))
                continue
            parsed = ipaddress.ip_interface(address)
            if parsed.version == 6:
                has_v6 = True
                if parsed.ip.is_link_local:
                    self.err(f"{path}.addresses[{i}]", f"{address} is link-local; the kernel assigns those itself")
            if parsed.ip.is_multicast or parsed.ip.is_unspecified:
                self.err(f"{path}.addresses[{i}]", f"{address} cannot be assigned to an interface")
            if address in seen:
                self.err(f"{path}.addresses[{i}]", f"{address} is listed twice")
            seen.add(address)
        if has_v6 and link.mtu is not None and link.mtu < IPV6_MTU_MIN:
            self.err(f"{path}.mtu", f"{link.mtu} is below {IPV6_MTU_MIN}, the minimum for IPv6 addresses")
        if not link.up and (link.routes or has_v6):
            self.err(
                f"{path}.up",
                "a link that is down cannot keep routes or IPv6 addresses (the kernel drops them)",
            )
        routes: set[tuple[str, str | None, int | None]] = set()
        for i, route in enumerate(link.routes):
            self._route(f"{path}.routes[{i}]", route)
            key = (route.to, route.via, route.metric)
            if key in routes:
                self.err(f"{path}.routes[{i}]", "this route is listed twice")
            routes.add(key)

    def _route(self, path: str, route: Route) -> None:
        if route.to != "default":
            try:
                ipaddress.ip_network(route.to, strict=True)
            except ValueError as exc:
                self.err(f"{path}.to", f"{route.to!r}: {exc} (write a network like 10.1.0.0/16, or 'default')")
                return
        if route.via is not None:
            try:
                via = ipaddress.ip_address(route.via)
            except ValueError:
                self.err(f"{path}.via", f"{route.via!r} is not an IP address")
                return
            if route.to != "default" and ipaddress.ip_network(route.to).version != via.version:
                self.err(f"{path}.via", f"gateway {route.via} and destination {route.to} are different IP versions")
                return
        if route.metric is not None and not 0 <= route.metric <= 0xFFFFFFFF:
            self.err(f"{path}.metric", f"{route.metric} is outside 0{DASH}4294967295")
        route_family(route)

    def _bond(self, path: str, bond: Bond) -> None:
        if not bond.interfaces:
            self.err(f"{path}.interfaces", "a bond needs at least one interface")
        for i, name in enumerate(bond.interfaces):
            member = self._ref(f"{path}.interfaces[{i}]", name, what="interface")
            if member is not None and not isinstance(member, Nic):
                self.err(f"{path}.interfaces[{i}]", f"{name!r} is a {kind_of(member)}; bond members must be nics")
            if bond.interfaces.index(name) != i:
                self.err(f"{path}.interfaces[{i}]", f"{name!r} is listed twice")
        if bond.primary is not None:
            if bond.mode != "active-backup":
                self.err(f"{path}.primary", f"only an active-backup bond has a primary, not {bond.mode}")
            elif bond.primary not in bond.interfaces:
                self.err(f"{path}.primary", f"{bond.primary!r} is not one of the bond's interfaces")
        if bond.lacp_rate is not None and bond.mode != "802.3ad":
            self.err(f"{path}.lacp_rate", f"only an 802.3ad bond has a LACP rate, not {bond.mode}")
        if bond.xmit_hash_policy is not None and bond.mode not in ("balance-xor", "802.3ad"):
            self.err(f"{path}.xmit_hash_policy", f"only balance-xor and 802.3ad bonds hash, not {bond.mode}")
        if bond.miimon is not None and not 0 <= bond.miimon <= 0xFFFFFFFF:
            self.err(f"{path}.miimon", f"{bond.miimon} is outside 0{DASH}4294967295")

    def _vlan(self, path: str, vlan: Vlan) -> None:
        if not VLAN_MIN <= vlan.id <= VLAN_MAX:
            self.err(f"{path}.id", f"{vlan.id} is outside {VLAN_MIN}{DASH}{VLAN_MAX}")
        lower = self._ref(f"{path}.link", vlan.link)
        if lower is not None and not isinstance(lower, Nic | Bond | Bridge):
            self.err(f"{path}.link", f"{vlan.link!r} is a {kind_of(lower)}; VLANs go on a nic, bond or bridge")
        if isinstance(lower, Bridge) and lower.vlan_filtering and vlan.id not in lower.vlans:
            self.err(
                f"{path}.id",
                f"VLAN-aware bridge {lower.name!r} does not carry VLAN {vlan.id} itself (add it to its vlans)",
            )

    def _bridge(self, path: str, bridge: Bridge) -> None:
        self._vlan_list(path, bridge.vlans, bridge.pvid, bridge.vlan_filtering)
        names: set[str] = set()
        for i, port in enumerate(bridge.ports):
            port_path = f"{path}.ports[{i}]"
            member = self._ref(f"{port_path}.name", port.name, what="port")
            if member is not None and isinstance(member, Bridge):
                self.err(f"{port_path}.name", f"{port.name!r} is a bridge; a bridge cannot be a port of another")
            if port.name in names:
                self.err(f"{port_path}.name", f"{port.name!r} is listed twice")
            names.add(port.name)
            self._vlan_list(port_path, port.vlans, port.pvid, bridge.vlan_filtering)

    def _vlan_list(self, path: str, vlans: tuple[int, ...], pvid: int | None, filtering: bool) -> None:
        if not filtering:
            if vlans:
                self.err(f"{path}.vlans", "VLAN lists need a bridge with vlan_filtering: true")
            if pvid not in (None, 1):
                self.err(f"{path}.pvid", "a PVID needs a bridge with vlan_filtering: true")
            return
        for i, vid in enumerate(vlans):
            if not VLAN_MIN <= vid <= VLAN_MAX:
                self.err(f"{path}.vlans[{i}]", f"{vid} is outside {VLAN_MIN}{DASH}{VLAN_MAX}")
            elif vlans.index(vid) != i:
                self.err(f"{path}.vlans[{i}]", f"VLAN {vid} is listed twice")
            elif vid == pvid:
                self.err(f"{path}.vlans[{i}]", f"VLAN {vid} is already the untagged PVID")
        if pvid is not None and not VLAN_MIN <= pvid <= VLAN_MAX:
            self.err(f"{path}.pvid", f"{pvid} is outside {VLAN_MIN}{DASH}{VLAN_MAX}")

    def _vxlan(self, path: str, vx: Vxlan) -> None:
        if not VNI_MIN <= vx.vni <= VNI_MAX:
            self.err(f"{path}.vni", f"{vx.vni} is outside {VNI_MIN}{DASH}{VNI_MAX}")
        if not 1 <= vx.port <= 65535:
            self.err(f"{path}.port", f"{vx.port} is outside 1{DASH}65535")
        self._vxlan_addresses(path, vx)
        if vx.dev is not None:
            lower = self._ref(f"{path}.dev", vx.dev)
            if lower is not None and isinstance(lower, Vxlan):
                self.err(f"{path}.dev", f"{vx.dev!r} is a vxlan; the underlay must be a nic, bond, vlan or bridge")

    def _vxlan_addresses(self, path: str, vx: Vxlan) -> None:
        versions: set[int] = set()
        if vx.local is not None:
            local = self._ip(f"{path}.local", vx.local)
            if local is not None:
                versions.add(local.version)
        for i, text in enumerate(vx.peers):
            peer = self._ip(f"{path}.peers[{i}]", text)
            if peer is None:
                continue
            versions.add(peer.version)
            if peer.is_multicast or peer.is_unspecified:
                self.err(f"{path}.peers[{i}]", f"{text} is not a unicast address")
            elif vx.peers.index(text) != i:
                self.err(f"{path}.peers[{i}]", f"{text} is listed twice")
        if vx.group is not None:
            group = self._ip(f"{path}.group", vx.group)
            if group is not None:
                versions.add(group.version)
                if not group.is_multicast:
                    self.err(f"{path}.group", f"{vx.group} is not a multicast address")
            if vx.peers:
                self.err(f"{path}.group", "use either a multicast group or unicast peers, not both")
            if vx.dev is None:
                self.err(f"{path}.dev", "a multicast group needs the underlay device (dev)")
        if len(versions) > 1:
            self.err(path, "local address, peers and group must all be IPv4 or all IPv6")

    def _ip(self, path: str, text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
        try:
            return ipaddress.ip_address(text)
        except ValueError:
            self.err(path, f"{text!r} is not an IP address")
            return None

    # -- across links --------------------------------------------------------------------

    def _masters(self) -> None:
        master_of: dict[str, str] = {}
        for link in self.links.values():
            for i, member in enumerate(members_of(link)):
                if member in master_of and master_of[member] != link.name:
                    field = "ports" if isinstance(link, Bridge) else "interfaces"
                    suffix = ".name" if isinstance(link, Bridge) else ""
                    self.err(
                        f"{self.paths[link.name]}.{field}[{i}]{suffix}",
                        f"{member!r} is already a member of {master_of[member]!r}",
                    )
                master_of.setdefault(member, link.name)
        for name, master in master_of.items():
            bond = self.links.get(master)
            member_link = self.links.get(name)
            if isinstance(bond, Bond) and member_link is not None and (member_link.addresses or member_link.routes):
                self.err(f"{self.paths[name]}.addresses", f"{name!r} is a member of bond {master!r}; address the bond")

    def _duplicate_vlans(self) -> None:
        seen: dict[tuple[str, int], str] = {}
        for index, vlan in enumerate(self.config.vlans):
            key = (vlan.link, vlan.id)
            if key in seen:
                self.err(f"$.vlans[{index}].id", f"VLAN {vlan.id} on {vlan.link!r} is already defined at {seen[key]}")
            else:
                seen[key] = f"$.vlans[{index}]"

    def _cycles(self) -> None:
        # Edges from an upper device to what it needs: its lower device and its members.
        needs = {
            name: [n for n in (lower_of(link), *members_of(link)) if n is not None] for name, link in self.links.items()
        }
        state: dict[str, int] = {}  # 1: on the current path, 2: done

        def visit(name: str, trail: list[str]) -> bool:
            if state.get(name) == 2:
                return False
            if state.get(name) == 1:
                loop = [*trail[trail.index(name) :], name]
                self.err(self.paths[name], f"links depend on each other in a cycle: {' -> '.join(loop)}")
                return True
            state[name] = 1
            for other in needs.get(name, []):
                if visit(other, [*trail, name]):
                    return True
            state[name] = 2
            return False

        for name in self.links:
            if visit(name, []):
                return

    def _mtus(self) -> None:
        for name, link in self.links.items():
            if link.mtu is None:
                continue
            lower_name = lower_of(link)
            lower = self.links.get(lower_name) if lower_name is not None else None
            if lower is not None and lower.mtu is not None:
                need = link.mtu
                if isinstance(link, Vxlan):
                    version = 6 if any(":" in a for a in (link.local or "", link.group or "", *link.peers)) else 4
                    need += VXLAN_OVERHEAD[version]
                if lower.mtu < need:
                    self.err(
                        f"{self.paths[lower.name]}.mtu",
                        f"{lower.mtu} is smaller than the {need} that {name!r} on top of it needs",
                    )
            for member_name in members_of(link):
                member = self.links.get(member_name)
                if member is None or member.mtu is None:
                    continue
                if isinstance(link, Bond) and member.mtu != link.mtu:
                    self.err(
                        f"{self.paths[member_name]}.mtu",
                        f"{member.mtu} differs from bond {name!r}'s {link.mtu}; bond members take the bond's MTU",
                    )
                elif isinstance(link, Bridge) and member.mtu < link.mtu:
                    self.err(
                        f"{self.paths[member_name]}.mtu",
                        f"{member.mtu} is smaller than the {link.mtu} that bridge {name!r} needs",
                    )
