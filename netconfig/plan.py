"""`plan(desired, observed)`: the ordered list of actions that turns one state into the other.

A pure function over two `NetworkConfig`s (the observed one restricted to managed links, see
`observe.py`): no netlink, no clock, no files, so it is tested exhaustively in memory and a
dry run is just printing its result. `plan(x, x)` is empty, and applying `plan(d, o)` and
observing again gives `d` back (a property test checks both on generated states).

Order, and why:
1. NIC renames (by MAC), so every later step can use the configured names.
2. Deletions, upper devices first (a VLAN before its NIC, a bridge before... nothing needs
   it). A link whose unchangeable attributes differ (VLAN id, VXLAN VNI, bond mode or LACP
   rate, another kind) is deleted and created again, and so is everything stacked on it.
3. Creations, lower devices first, all down and bare.
4. MTU: raises lower devices first, then reductions upper devices first, so no upper device
   ever exceeds its lower one on the way.
5. Membership: releases, then enslavements; then bond and bridge options (a bond's primary
   must already be a member); then bridge VLAN lists (removals, tagged, PVID last, because
   the kernel moves the PVID flag) and VXLAN peers.
6. Route removals, address removals, address additions; links up (lower first); route
   additions; links down (upper first). Routes come after "up" because the kernel refuses a
   route through a gateway on a link that is down, and drops IPv4 routes of a link set down;
   that is also why a link configured down may not have routes (see validate.py).

Unmanaged links never appear here: `observed` does not contain them. Physical NICs are never
deleted; one that leaves the configuration is left as it is.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import msgspec

from netconfig.actions import (
    Action,
    AddAddress,
    AddBridgeVlan,
    AddPeer,
    AddRoute,
    Create,
    DelAddress,
    DelBridgeVlan,
    Delete,
    DelPeer,
    DelRoute,
    Rename,
    SetMaster,
    SetMtu,
    SetOptions,
    SetUp,
)
from netconfig.model import (
    AnyLink,
    Bond,
    Bridge,
    BridgePort,
    NetworkConfig,
    Nic,
    Vlan,
    Vxlan,
    canonical_config,
    kind_of,
    lower_of,
    members_of,
)


class PlanError(ValueError):
    """The desired state cannot be reached from the observed one (a missing NIC, a name clash)."""


def plan(desired: NetworkConfig, observed: NetworkConfig) -> list[Action]:
    """The actions that turn `observed` into `desired`, in an order the kernel accepts."""
    return _Planner(desired, observed).run()


class _Planner:
    """One planning run; each method is one phase of the order in the module docstring."""

    def __init__(self, desired: NetworkConfig, observed: NetworkConfig) -> None:
        self.want = {link.name: link for link in canonical_config(desired).links()}
        self.have = {link.name: link for link in canonical_config(observed).links()}
        self.levels = _levels(self.want)
        self.state: dict[str, AnyLink] = {}  # the observed state as the plan so far leaves it
        self.actions: list[Action] = []

    def run(self) -> list[Action]:
        renames = _renames(self.want, self.have)
        self.actions += [Rename(name=old, new_name=new) for old, new in renames]
        self.have = _rename_all(self.have, dict(renames))
        self._deletions()
        self._creations()
        self._mtus()
        self._membership()
        self._addressing()
        return self.actions

    def _by_level(self, names: Iterable[str], *, reverse: bool = False) -> list[str]:
        sign = -1 if reverse else 1
        return sorted(names, key=lambda n: (sign * self.levels[n], n))

    def _deletions(self) -> None:
        recreate: set[str] = set()
        for name, link in self.want.items():
            current = self.have.get(name)
            if current is None:
                continue
            if isinstance(current, Nic) and not isinstance(link, Nic):
                raise PlanError(
                    f"{name!r} is a physical interface (MAC {current.mac}) and cannot become a {kind_of(link)}"
                )
            if isinstance(link, Nic) and not isinstance(current, Nic):
                raise PlanError(f"cannot name the nic with MAC {link.mac} {name!r}: a {kind_of(current)} has that name")
            if _must_recreate(link, current):
                recreate.add(name)
        grew = True
        while grew:  # whatever is stacked on a re-created link goes with it (the kernel would delete it anyway)
            grew = False
            for name, link in self.want.items():
                if name in self.have and name not in recreate and lower_of(link) in recreate:
                    recreate.add(name)
                    grew = True
        doomed = {n for n, link in self.have.items() if not isinstance(link, Nic) and n not in self.want} | recreate
        old_levels = _levels(self.have)
        for name in sorted(doomed, key=lambda n: (-old_levels[n], n)):
            self.actions.append(Delete(name=name, kind=kind_of(self.have[name])))
        self.state = {n: _without_members(link, doomed) for n, link in self.have.items() if n not in doomed}

    def _creations(self) -> None:
        for name in self._by_level(n for n in self.want if n not in self.state):
            link = self.want[name]
            if isinstance(link, Nic):  # _renames found every desired NIC, so it is in the state
                raise AssertionError(name)
            self.actions.append(Create(name=name, link=_bare(link)))
            self.state[name] = _fresh(link)

    def _mtus(self) -> None:
        raises: list[str] = []
        reductions: list[str] = []
        for name, link in self.want.items():
            now = self.state[name].mtu
            if link.mtu is not None and link.mtu != now:
                (raises if now is None or link.mtu > now else reductions).append(name)
        self.actions += [SetMtu(name=n, mtu=_mtu(self.want[n])) for n in self._by_level(raises)]
        self.actions += [SetMtu(name=n, mtu=_mtu(self.want[n])) for n in self._by_level(reductions, reverse=True)]

    def _membership(self) -> None:
        want_master = {member: up.name for up in self.want.values() for member in members_of(up)}
        have_master = {member: up.name for up in self.state.values() for member in members_of(up)}
        self.actions += [SetMaster(name=n, master=None) for n in sorted(have_master) if n not in want_master]
        self.actions += [
            SetMaster(name=n, master=want_master[n])
            for n in self._by_level(want_master)
            if have_master.get(n) != want_master[n]
        ]
        for name in self._by_level(self.want):
            link = self.want[name]
            if isinstance(link, Bond | Bridge) and _options_differ(link, self.state[name]):
                self.actions.append(SetOptions(name=name, link=_options(link, self.state[name])))
        for name in sorted(self.want):
            link = self.want[name]
            if isinstance(link, Bridge) and link.vlan_filtering:
                self.actions += _bridge_vlans(link, self.state, have_master)
        for name in sorted(self.want):
            link = self.want[name]
            current = self.state[name]
            if isinstance(link, Vxlan) and isinstance(current, Vxlan):
                self.actions += [DelPeer(name=name, peer=p) for p in current.peers if p not in link.peers]
                self.actions += [AddPeer(name=name, peer=p) for p in link.peers if p not in current.peers]

    def _addressing(self) -> None:
        ordered = self._by_level(self.want)
        want, state = self.want, self.state
        for name in ordered:
            self.actions += [DelRoute(name=name, route=r) for r in state[name].routes if r not in want[name].routes]
        for name in ordered:
            self.actions += [
                DelAddress(name=name, address=a) for a in state[name].addresses if a not in want[name].addresses
            ]
        for name in ordered:
            self.actions += [
                AddAddress(name=name, address=a) for a in want[name].addresses if a not in state[name].addresses
            ]
        self.actions += [SetUp(name=n, up=True) for n in ordered if want[n].up and not state[n].up]
        for name in ordered:
            self.actions += [AddRoute(name=name, route=r) for r in want[name].routes if r not in state[name].routes]
        self.actions += [SetUp(name=n, up=False) for n in reversed(ordered) if not want[n].up and state[n].up]


def render(actions: list[Action]) -> str:
    """One line per action, as the equivalent `ip`/`bridge` commands ("" for an empty plan)."""
    return "".join(f"{action}\n" for action in actions)


# -- helpers ---------------------------------------------------------------------------------


def _renames(want: dict[str, AnyLink], have: dict[str, AnyLink]) -> list[tuple[str, str]]:
    """(old, new) NIC renames in an order where each new name is free when its turn comes."""
    by_mac = {link.mac: link for link in have.values() if isinstance(link, Nic)}
    pending: dict[str, str] = {}
    for link in want.values():
        if not isinstance(link, Nic):
            continue
        found = by_mac.get(link.mac)
        if found is None:
            raise PlanError(f"nic {link.name!r}: no interface has MAC {link.mac}")
        if found.name != link.name:
            pending[found.name] = link.name
    ordered: list[tuple[str, str]] = []
    while pending:
        ready = [old for old, new in pending.items() if new not in have or new in {o for o, _ in ordered}]
        ready = [old for old in ready if pending[old] not in pending]
        if not ready:
            old, new = sorted(pending.items())[0]
            blocker = have.get(new)
            what = f"a {kind_of(blocker)}" if blocker is not None else "another interface"
            raise PlanError(f"cannot rename {old} to {new}: {what} is called {new} (swap names by hand)")
        for old in sorted(ready):
            ordered.append((old, pending.pop(old)))
    return ordered


def _rename_all(links: dict[str, AnyLink], renames: dict[str, str]) -> dict[str, AnyLink]:
    """`links` with every name and reference to a renamed link updated."""
    if not renames:
        return links

    def new(name: str) -> str:
        return renames.get(name, name)

    result: dict[str, AnyLink] = {}
    for link in links.values():
        changed: AnyLink = msgspec.structs.replace(link, name=new(link.name))
        if isinstance(changed, Vlan):
            changed = msgspec.structs.replace(changed, link=new(changed.link))
        elif isinstance(changed, Vxlan) and changed.dev is not None:
            changed = msgspec.structs.replace(changed, dev=new(changed.dev))
        elif isinstance(changed, Bridge):
            ports = tuple(msgspec.structs.replace(p, name=new(p.name)) for p in changed.ports)
            changed = msgspec.structs.replace(changed, ports=tuple(sorted(ports, key=lambda p: p.name)))
        elif isinstance(changed, Bond):
            primary = new(changed.primary) if changed.primary is not None else None
            changed = msgspec.structs.replace(
                changed, interfaces=tuple(sorted(new(i) for i in changed.interfaces)), primary=primary
            )
        result[changed.name] = changed
    return result


def _must_recreate(want: AnyLink, have: AnyLink) -> bool:
    """Whether `have` must be deleted and created again to become `want`."""
    if kind_of(want) != kind_of(have):
        return True
    if isinstance(want, Vlan) and isinstance(have, Vlan):
        return (want.link, want.id) != (have.link, have.id)
    if isinstance(want, Vxlan) and isinstance(have, Vxlan):
        fixed: Callable[[Vxlan], tuple[object, ...]] = lambda v: (v.vni, v.local, v.group, v.dev, v.port, v.learning)  # noqa: E731
        return fixed(want) != fixed(have)
    if isinstance(want, Bond) and isinstance(have, Bond):
        # The kernel changes a LACP rate only while the bond is down (EBUSY otherwise), and
        # setting it down takes the VLANs on it down and drops its routes: re-create instead.
        return want.mode != have.mode or (want.lacp_rate is not None and want.lacp_rate != have.lacp_rate)
    return False


def _levels(links: dict[str, AnyLink]) -> dict[str, int]:
    """Stacking depth of each link: 0 for one that needs nothing, else 1 + the deepest it needs."""
    levels: dict[str, int] = {}

    def level(name: str, depth: int) -> int:
        if name in levels:
            return levels[name]
        link = links.get(name)
        if link is None or depth > len(links):  # an unmanaged lower device, or a cycle (validate forbids)
            return -1
        needs = [n for n in (lower_of(link), *members_of(link)) if n is not None]
        levels[name] = 1 + max((level(n, depth + 1) for n in needs), default=-1)
        return levels[name]

    for name in links:
        level(name, 0)
    return levels


def _without_members(link: AnyLink, gone: set[str]) -> AnyLink:
    """`link` without members that are about to be deleted (the kernel releases them)."""
    if isinstance(link, Bridge):
        return msgspec.structs.replace(link, ports=tuple(p for p in link.ports if p.name not in gone))
    if isinstance(link, Bond):
        return msgspec.structs.replace(link, interfaces=tuple(i for i in link.interfaces if i not in gone))
    return link


def _bare(link: Bond | Vlan | Bridge | Vxlan) -> Bond | Vlan | Bridge | Vxlan:
    """What `Create` carries: the kind attributes only (the rest are later actions)."""
    bare = msgspec.structs.replace(link, mtu=None, up=True, addresses=(), routes=())
    if isinstance(bare, Bond):
        return msgspec.structs.replace(bare, interfaces=(), primary=None)
    if isinstance(bare, Bridge):
        return msgspec.structs.replace(bare, ports=(), vlans=(), pvid=1)
    if isinstance(bare, Vxlan):
        return msgspec.structs.replace(bare, peers=())
    return bare


def _fresh(link: Bond | Vlan | Bridge | Vxlan) -> AnyLink:
    """The state a link is in right after `Create`: down, no members, addresses or peers."""
    fresh = _bare(link)
    return msgspec.structs.replace(fresh, up=False)


def _mtu(link: AnyLink) -> int:
    assert link.mtu is not None
    return link.mtu


def _options_differ(want: Bond | Bridge, have: AnyLink) -> bool:
    if isinstance(want, Bridge) and isinstance(have, Bridge):
        return (want.stp, want.vlan_filtering) != (have.stp, have.vlan_filtering)
    if isinstance(want, Bond) and isinstance(have, Bond):
        pairs = [
            (want.miimon, have.miimon),
            (want.primary, have.primary),
            (want.lacp_rate, have.lacp_rate),
            (want.xmit_hash_policy, have.xmit_hash_policy),
        ]
        return any(w is not None and w != h for w, h in pairs)
    return False


def _options(link: Bond | Bridge, have: AnyLink) -> Bond | Bridge:
    """What `SetOptions` carries: the link's own options, without members or addresses; for a
    bond only the options that change (None: leave alone), because the kernel refuses some
    options on an up bond even when they keep their value (lacp_rate: EBUSY)."""
    bare = msgspec.structs.replace(link, mtu=None, up=True, addresses=(), routes=())
    if isinstance(bare, Bond):
        unchanged = {
            field: None
            for field in ("miimon", "primary", "lacp_rate", "xmit_hash_policy")
            if getattr(bare, field) == getattr(have, field, None)
        }
        return msgspec.structs.replace(bare, interfaces=(), **unchanged)
    return msgspec.structs.replace(bare, ports=(), vlans=(), pvid=1)


def _bridge_vlans(bridge: Bridge, state: dict[str, AnyLink], have_master: dict[str, str]) -> list[Action]:
    """VLAN list changes for a VLAN-aware bridge and its ports."""
    current = state[bridge.name]
    assert isinstance(current, Bridge)
    have_ports = {p.name: p for p in current.ports}
    actions = _vlan_list(bridge.name, True, (bridge.vlans, bridge.pvid), (current.vlans, current.pvid))
    for port in bridge.ports:
        # A port that joins now starts with the kernel's default: VLAN 1 as untagged PVID.
        before = have_ports.get(port.name, BridgePort(name=port.name))
        if have_master.get(port.name) != bridge.name:
            before = BridgePort(name=port.name)
        actions += _vlan_list(port.name, False, (port.vlans, port.pvid), (before.vlans, before.pvid))
    return actions


def _vlan_list(
    name: str, bridge_self: bool, want: tuple[tuple[int, ...], int | None], have: tuple[tuple[int, ...], int | None]
) -> list[Action]:
    def entries(vlans: tuple[int, ...], pvid: int | None) -> dict[int, bool]:
        result = dict.fromkeys(vlans, False)
        if pvid is not None:
            result[pvid] = True
        return result

    wanted = entries(*want)
    present = entries(*have)
    actions: list[Action] = [
        DelBridgeVlan(name=name, vid=vid, bridge_self=bridge_self) for vid in sorted(present) if vid not in wanted
    ]
    actions += [
        AddBridgeVlan(name=name, vid=vid, pvid=False, bridge_self=bridge_self)
        for vid, is_pvid in sorted(wanted.items())
        if not is_pvid and present.get(vid) is not False
    ]
    actions += [
        AddBridgeVlan(name=name, vid=vid, pvid=True, bridge_self=bridge_self)
        for vid, is_pvid in sorted(wanted.items())
        if is_pvid and present.get(vid) is not True
    ]
    return actions
