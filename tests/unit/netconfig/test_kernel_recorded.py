"""KernelAdapter's netlink requests for what this host's kernel lacks (bonds, VLANs, VLAN
filtering), checked against a recording stand-in for pyroute2's IPRoute."""

from __future__ import annotations

from typing import Any

from netconfig.kernel import KernelAdapter
from netconfig.model import Bond, Bridge, Nic, Vlan


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


def test_a_bond_member_without_a_permanent_mac_is_known_by_the_one_the_bond_saved() -> None:
    # Measured in Debian's kernel (tests/integration/test_netconfig_guest.py): a dummy or veth
    # has no IFLA_PERM_ADDRESS, and once enslaved its current address is the bond's, the same
    # for every member; only the bond's slave data still has the member's own.
    member = _link(4, "eth1")
    member["IFLA_ADDRESS"] = "02:00:00:00:00:02"  # bond0's
    member["IFLA_MASTER"] = 2
    member["IFLA_LINKINFO"] = Message(
        IFLA_INFO_SLAVE_KIND="bond", IFLA_INFO_SLAVE_DATA=Message(IFLA_BOND_SLAVE_PERM_HWADDR="02:00:00:00:00:AA")
    )
    hardware = _link(5, "eth2")
    hardware["IFLA_PERM_ADDRESS"] = "02:00:00:00:00:BB"
    links = {kl.spec.name: kl.spec for kl in KernelAdapter(ipr=Recorder([*LINKS, member, hardware])).links()}
    assert links["eth1"] == Nic(name="eth1", mac="02:00:00:00:00:aa")
    assert links["eth2"] == Nic(name="eth2", mac="02:00:00:00:00:bb")
    assert links["eno1"] == Nic(name="eno1", mac="02:00:00:00:00:01")  # no permanent MAC, not a member


def _member(index: int, name: str, master: int | None, up: bool) -> Message:
    link = _link(index, name, up=up)
    link["IFLA_MASTER"] = master
    return link


def test_bond_membership_changes_keep_the_members_admin_state() -> None:
    # Measured in Debian's kernel: the bonding driver refuses a member that is up (EPERM), sets
    # members it takes up, and sets members it releases (or a deleted bond releases) down.
    links = [*LINKS, _member(4, "eth1", 2, up=True), _member(5, "eth2", 2, up=False), _member(6, "eth3", None, False)]
    ipr = Recorder(links)
    adapter = KernelAdapter(ipr=ipr)
    adapter.set_master("eth1", None)
    adapter.set_master("eth3", "bond0")
    adapter.set_master("eth3", "br0")  # a bridge changes neither
    adapter.delete("bond0")
    assert ipr.calls == [
        ("link", "set", {"index": 4, "master": 0}),
        ("link", "set", {"index": 4, "state": "up"}),
        ("link", "set", {"index": 6, "master": 2}),
        ("link", "set", {"index": 6, "state": "down"}),
        ("link", "set", {"index": 6, "master": 3}),
        ("link", "del", {"index": 2}),
        ("link", "set", {"index": 4, "state": "up"}),  # eth1 is (still, in the recording) a member that was up
    ]


def test_bond_options_are_reported_only_for_modes_that_use_them() -> None:
    # The kernel reports a LACP rate and hash policy for every mode but refuses a LACP rate at
    # creation outside 802.3ad (EACCES), so a snapshot holding one could not be restored.
    links = [
        _link(7, "ab0", "bond", IFLA_BOND_MODE=1, IFLA_BOND_AD_LACP_RATE=0, IFLA_BOND_XMIT_HASH_POLICY=0),
        _link(8, "xor0", "bond", IFLA_BOND_MODE=2, IFLA_BOND_AD_LACP_RATE=0, IFLA_BOND_XMIT_HASH_POLICY=2),
    ]
    specs = {kl.spec.name: kl.spec for kl in KernelAdapter(ipr=Recorder(links)).links()}
    assert specs["ab0"] == Bond(name="ab0", mode="active-backup", miimon=0, up=True)
    assert specs["xor0"] == Bond(name="xor0", mode="balance-xor", miimon=0, xmit_hash_policy="layer2+3", up=True)


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
