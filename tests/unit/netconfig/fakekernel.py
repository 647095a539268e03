"""An in-memory `Adapter` for unit tests of the pure logic (plan, apply, confirm), never elsewhere.

It keeps links as model Structs and mimics the kernel behaviour a plan relies on: deleting a
link takes VLANs and VXLANs stacked on it and releases its members, a new bridge port gets
VLAN 1 as untagged PVID, adding a PVID moves the flag, a link set down loses its routes, a
bond refuses a LACP rate outside 802.3ad (EACCES) and any LACP rate while it is up (EBUSY,
even an unchanged one), and errors for things that do not exist or already exist. Those
bond rules were measured in Debian's kernel (tests/integration/test_netconfig_guest.py).
"""

from __future__ import annotations

import msgspec

from netconfig.adapter import KernelLink
from netconfig.model import AnyLink, Bond, Bridge, Nic, Route, Vlan, Vxlan, canonical_route


class FakeError(RuntimeError):
    pass


class FakeKernel:
    def __init__(self, links: list[AnyLink] | None = None) -> None:
        self.specs: dict[str, AnyLink] = {}
        self.master: dict[str, str] = {}
        self.port_vlans: dict[str, dict[int, bool]] = {}  # name -> vid -> is_pvid
        self.calls: list[str] = []
        for link in links or []:
            self.specs[link.name] = link

    def close(self) -> None:
        pass

    # -- reading --------------------------------------------------------------------------

    def links(self) -> list[KernelLink]:
        result = []
        for name, stored in self.specs.items():
            spec = stored
            entries = self.port_vlans.get(name, {1: True})
            tagged = tuple(sorted(v for v, p in entries.items() if not p))
            pvid = next((v for v, p in entries.items() if p), None)
            if isinstance(spec, Bridge):
                spec = msgspec.structs.replace(spec, ports=(), vlans=tagged, pvid=pvid)
            if isinstance(spec, Bond):
                spec = msgspec.structs.replace(spec, interfaces=())
            result.append(KernelLink(spec=spec, master=self.master.get(name), vlans=tagged, pvid=pvid))
        return result

    def _get(self, name: str) -> AnyLink:
        if name not in self.specs:
            raise FakeError(f"no link {name}")
        return self.specs[name]

    def _set(self, name: str, **changes: object) -> None:
        self.specs[name] = msgspec.structs.replace(self._get(name), **changes)

    # -- changing -------------------------------------------------------------------------

    def create(self, link: Bond | Vlan | Bridge | Vxlan) -> None:
        self.calls.append(f"create {link.name}")
        if link.name in self.specs:
            raise FakeError(f"{link.name} exists")
        if isinstance(link, Vlan):
            self._get(link.link)
        if isinstance(link, Vxlan) and link.dev is not None:
            self._get(link.dev)
        if isinstance(link, Bond) and link.lacp_rate is not None and link.mode != "802.3ad":
            raise FakeError(f"EACCES: lacp_rate on a {link.mode} bond")
        self.specs[link.name] = msgspec.structs.replace(link, up=False, mtu=1500, addresses=(), routes=())
        if isinstance(link, Bridge):
            self.port_vlans[link.name] = {1: True}

    def delete(self, name: str) -> None:
        self.calls.append(f"delete {name}")
        if name not in self.specs:
            return
        if isinstance(self.specs[name], Nic):
            raise FakeError(f"cannot delete physical {name}")
        del self.specs[name]
        self.master.pop(name, None)
        self.port_vlans.pop(name, None)
        for other, master in list(self.master.items()):
            if master == name:
                del self.master[other]
                self.port_vlans.pop(other, None)
        for other, spec in list(self.specs.items()):
            if (isinstance(spec, Vlan) and spec.link == name) or (isinstance(spec, Vxlan) and spec.dev == name):
                self.delete(other)

    def rename(self, name: str, new_name: str) -> None:
        self.calls.append(f"rename {name} {new_name}")
        if new_name in self.specs:
            raise FakeError(f"{new_name} exists")
        spec = self.specs.pop(name)
        self.specs[new_name] = msgspec.structs.replace(spec, name=new_name)
        if name in self.master:
            self.master[new_name] = self.master.pop(name)
        if name in self.port_vlans:
            self.port_vlans[new_name] = self.port_vlans.pop(name)
        for other, master in self.master.items():
            if master == name:
                self.master[other] = new_name
        for other, spec in self.specs.items():
            if isinstance(spec, Vlan) and spec.link == name:
                self._set(other, link=new_name)
            if isinstance(spec, Vxlan) and spec.dev == name:
                self._set(other, dev=new_name)

    def set_options(self, link: Bond | Bridge) -> None:
        self.calls.append(f"options {link.name}")
        current = self._get(link.name)
        if isinstance(link, Bridge) and isinstance(current, Bridge):
            self._set(link.name, stp=link.stp, vlan_filtering=link.vlan_filtering)
        elif isinstance(link, Bond) and isinstance(current, Bond):
            if link.lacp_rate is not None and (current.mode != "802.3ad" or current.up):
                raise FakeError(f"lacp_rate on {link.name}: EACCES outside 802.3ad, EBUSY while up")
            changes = {
                k: getattr(link, k)
                for k in ("miimon", "primary", "lacp_rate", "xmit_hash_policy")
                if getattr(link, k) is not None
            }
            self._set(link.name, **changes)
        else:
            raise FakeError(f"{link.name} is not a {type(link).__name__}")

    def set_mtu(self, name: str, mtu: int) -> None:
        self.calls.append(f"mtu {name} {mtu}")
        self._set(name, mtu=mtu)

    def set_up(self, name: str, up: bool) -> None:
        self.calls.append(f"up {name} {up}")
        if not up:
            self._set(name, routes=())
        self._set(name, up=up)

    def set_master(self, name: str, master: str | None) -> None:
        self.calls.append(f"master {name} {master}")
        self._get(name)
        self.port_vlans.pop(name, None)
        if master is None:
            self.master.pop(name, None)
            return
        upper = self._get(master)
        if not isinstance(upper, Bridge | Bond):
            raise FakeError(f"{master} cannot have members")
        self.master[name] = master
        if isinstance(upper, Bridge):
            self.port_vlans[name] = {1: True}

    def add_address(self, name: str, address: str) -> None:
        self.calls.append(f"addr {name} {address}")
        spec = self._get(name)
        if address in spec.addresses:
            raise FakeError(f"{address} exists")
        self._set(name, addresses=(*spec.addresses, address))

    def del_address(self, name: str, address: str) -> None:
        self.calls.append(f"deladdr {name} {address}")
        spec = self._get(name)
        self._set(name, addresses=tuple(a for a in spec.addresses if a != address))

    def add_route(self, name: str, route: Route) -> None:
        self.calls.append(f"route {name} {route.to}")
        spec = self._get(name)
        route = canonical_route(route)
        if not spec.up:
            raise FakeError("network is down")
        if route in spec.routes:
            raise FakeError("route exists")
        self._set(name, routes=(*spec.routes, route))

    def del_route(self, name: str, route: Route) -> None:
        self.calls.append(f"delroute {name} {route.to}")
        spec = self._get(name)
        self._set(name, routes=tuple(r for r in spec.routes if r != canonical_route(route)))

    def add_peer(self, name: str, peer: str) -> None:
        self.calls.append(f"peer {name} {peer}")
        spec = self._get(name)
        assert isinstance(spec, Vxlan)
        if peer in spec.peers:
            raise FakeError("peer exists")
        self._set(name, peers=(*spec.peers, peer))

    def del_peer(self, name: str, peer: str) -> None:
        self.calls.append(f"delpeer {name} {peer}")
        spec = self._get(name)
        assert isinstance(spec, Vxlan)
        self._set(name, peers=tuple(p for p in spec.peers if p != peer))

    def add_bridge_vlan(self, name: str, vid: int, *, pvid: bool) -> None:
        self.calls.append(f"vlan {name} {vid} {pvid}")
        entries = self.port_vlans.setdefault(name, {})
        if pvid:
            for other in entries:
                entries[other] = False  # the kernel moves the PVID flag
        entries[vid] = pvid

    def del_bridge_vlan(self, name: str, vid: int) -> None:
        self.calls.append(f"delvlan {name} {vid}")
        self.port_vlans.get(name, {}).pop(vid, None)
