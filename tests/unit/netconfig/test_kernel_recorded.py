"""KernelAdapter's netlink requests for what this host's kernel lacks (bonds, VLANs, VLAN
filtering), checked against a recording stand-in for pyroute2's IPRoute."""

from __future__ import annotations

from typing import Any

from netconfig.kernel import KernelAdapter
from netconfig.model import Bond, Bridge, Vlan


class Message(dict[str, Any]):
    """Enough of a pyroute2 netlink message: `get` by attribute name, `get_attrs`."""

    def get_attrs(self, name: str) -> list[Any]:
        return list(self.get(f"*{name}", []))


class Recorder:
    def __init__(self, links: list[Message]) -> None:
        self._links = links
        self.calls: list[tuple[str, str, dict[str, Any]]] = []

    def link_lookup(self, ifname: str) -> list[int]:
        return [m["index"] for m in self._links if m["IFLA_IFNAME"] == ifname]

    def get_links(self, *indexes: int) -> list[Message]:
        return [m for m in self._links if not indexes or m["index"] in indexes]

    def get_vlans(self) -> list[Message]:
        return [
            Message(
                index=3,
                IFLA_AF_SPEC=Message({"*IFLA_BRIDGE_VLAN_INFO": [{"vid": 1, "flags": 6}, {"vid": 20, "flags": 0}]}),
            )
        ]

    def get_addr(self) -> list[Message]:
        return []

    def get_routes(self, **_: Any) -> list[Message]:
        return []

    def fdb(self, command: str, **kwargs: Any) -> list[Message]:
        self.calls.append(("fdb", command, kwargs))
        return []

    def link(self, command: str, **kwargs: Any) -> None:
        self.calls.append(("link", command, kwargs))

    def vlan_filter(self, command: str, **kwargs: Any) -> None:
        self.calls.append(("vlan_filter", command, kwargs))

    def close(self) -> None:
        pass


def _link(index: int, name: str, kind: str | None = None, up: bool = True, **data: Any) -> Message:
    info = Message(IFLA_INFO_KIND=kind, IFLA_INFO_DATA=Message(data)) if kind else None
    return Message(
        index=index,
        flags=1 if up else 0,
        IFLA_IFNAME=name,
        IFLA_LINKINFO=info,
        IFLA_ADDRESS="02:00:00:00:00:0" + str(index),
    )


LINKS = [
    _link(1, "eno1", up=True),
    _link(2, "bond0", "bond", IFLA_BOND_MODE=4, IFLA_BOND_MIIMON=100, IFLA_BOND_AD_LACP_RATE=1),
    _link(3, "br0", "bridge", IFLA_BR_VLAN_FILTERING=1),
]


def test_bond_creation_options_and_enslaving() -> None:
    ipr = Recorder(LINKS)
    adapter = KernelAdapter(ipr=ipr)
    adapter.create(Bond(name="bond1", mode="802.3ad", miimon=100, lacp_rate="fast", xmit_hash_policy="layer3+4"))
    adapter.set_master("eno1", "bond0")
    adapter.set_options(Bond(name="bond0", mode="active-backup", primary="eno1", miimon=200))
    assert ipr.calls == [
        (
            "link",
            "add",
            {
                "ifname": "bond1",
                "kind": "bond",
                "bond_mode": 4,
                "bond_miimon": 100,
                "bond_ad_lacp_rate": 1,
                "bond_xmit_hash_policy": 1,
            },
        ),
        ("link", "set", {"index": 1, "state": "down"}),  # bonding refuses a member that is up
        ("link", "set", {"index": 1, "master": 2}),
        ("link", "set", {"index": 2, "kind": "bond", "bond_miimon": 200, "bond_primary": 1}),
    ]


def test_vlan_and_bridge_vlan_requests() -> None:
    ipr = Recorder(LINKS)
    adapter = KernelAdapter(ipr=ipr)
    adapter.create(Vlan(name="mgmt0", link="br0", id=10))
    adapter.add_bridge_vlan("br0", 10, pvid=False)
    adapter.add_bridge_vlan("bond0", 30, pvid=True)
    adapter.del_bridge_vlan("bond0", 1)
    adapter.create(Bridge(name="br1", vlan_filtering=True, stp=True))
    assert ipr.calls == [
        ("link", "add", {"ifname": "mgmt0", "kind": "vlan", "link": 3, "vlan_id": 10}),
        ("vlan_filter", "add", {"index": 3, "vlan_flags": "self", "vlan_info": {"vid": 10, "flags": 0}}),
        ("vlan_filter", "add", {"index": 2, "vlan_info": {"vid": 30, "flags": 6}}),
        ("vlan_filter", "del", {"index": 2, "vlan_info": {"vid": 1}}),
        ("link", "add", {"ifname": "br1", "kind": "bridge", "br_stp_state": 1, "br_vlan_filtering": 1}),
    ]


def test_observing_bonds_and_vlan_aware_bridges() -> None:
    links = {kl.spec.name: kl for kl in KernelAdapter(ipr=Recorder(LINKS)).links()}
    assert links["bond0"].spec == Bond(
        name="bond0", mode="802.3ad", miimon=100, lacp_rate="fast", xmit_hash_policy="layer2", up=True
    )
    bridge = links["br0"].spec
    assert isinstance(bridge, Bridge)
    assert (bridge.vlan_filtering, bridge.vlans, bridge.pvid) == (True, (20,), 1)


class CountingRecorder(Recorder):
    """A Recorder that also counts the per-name lookups the adapter makes."""

    def __init__(self, links: list[Message]) -> None:
        super().__init__(links)
        self.lookups = 0

    def link_lookup(self, ifname: str) -> list[int]:
        self.lookups += 1
        return super().link_lookup(ifname)


def test_indexes_come_from_the_last_dump_and_follow_own_changes() -> None:
    ipr = CountingRecorder(LINKS)
    adapter = KernelAdapter(ipr=ipr)
    adapter.links()
    adapter.set_mtu("eno1", 9000)
    adapter.set_master("eno1", "bond0")
    adapter.add_bridge_vlan("br0", 10, pvid=False)
    assert ipr.lookups == 0  # names, indexes and kinds all known from links()
    adapter.rename("eno1", "lan0")
    adapter.set_mtu("lan0", 1500)
    adapter.delete("br0")
    adapter.set_up("br0", True)  # gone from what it knows: asks the kernel again
    assert ipr.lookups == 1
    assert ("link", "set", {"index": 1, "mtu": 1500}) in ipr.calls
