"""Plan ordering and the kinds the host kernel cannot test (bonds, VLANs, VLAN-aware bridges)."""

from __future__ import annotations

import msgspec
import pytest

from netconfig.actions import Action
from netconfig.apply import apply
from netconfig.load import loads
from netconfig.model import Bridge, NetworkConfig, Nic, Vxlan
from netconfig.observe import blank_unmanaged, observe_managed
from netconfig.plan import PlanError, plan, render
from tests.unit.netconfig.fakekernel import FakeKernel

NICS = [Nic(name=f"eth{i}", mac=f"02:00:00:00:00:0{i}", mtu=1500, up=False) for i in range(3)]


def converge(kernel: FakeKernel, desired: NetworkConfig, *also: NetworkConfig) -> list[Action]:
    actions = plan(desired, observe_managed(kernel, desired, *also))
    apply(actions, kernel)
    assert plan(desired, observe_managed(kernel, desired, *also)) == []
    assert blank_unmanaged(observe_managed(kernel, desired), desired) == desired
    return actions


BOND_STACK = """
nics:
  - {name: eno1, mac: "02:00:00:00:00:00", mtu: 9000}
  - {name: eno2, mac: "02:00:00:00:00:01", mtu: 9000}
bonds:
  - {name: bond0, mode: 802.3ad, interfaces: [eno1, eno2], miimon: 100, lacp_rate: fast,
     xmit_hash_policy: layer3+4, mtu: 9000}
bridges:
  - name: br0
    vlan_filtering: true
    vlans: [10]
    pvid: null
    mtu: 9000
    ports: [{name: bond0, vlans: [10, 20], pvid: 30}]
vlans:
  - {name: mgmt0, link: br0, id: 10, addresses: [192.0.2.11/24], routes: [{to: default, via: 192.0.2.1}]}
"""


def test_bond_vlan_bridge_stack_is_built_lower_first() -> None:
    kernel = FakeKernel(list(NICS))
    actions = converge(kernel, loads(BOND_STACK))
    text = render(actions).splitlines()
    assert text[:2] == ["ip link set dev eth0 name eno1", "ip link set dev eth1 name eno2"]
    assert text.index(
        "ip link add bond0 type bond mode 802.3ad miimon 100 lacp_rate fast xmit_hash_policy layer3+4"
    ) < (text.index("ip link add br0 type bridge stp_state 0 vlan_filtering 1"))
    assert text.index("ip link add br0 type bridge stp_state 0 vlan_filtering 1") < text.index(
        "ip link add mgmt0 link br0 type vlan id 10"
    )
    assert "bridge vlan add dev bond0 vid 30 pvid untagged" in text
    assert "bridge vlan del dev br0 vid 1 self" in text
    assert text.index("ip link set dev mgmt0 up") < text.index("ip route add default via 192.0.2.1 metric 0 dev mgmt0")
    # MTU: the NICs (lower) are raised before the bond and the bridge on top.
    mtus = [line for line in text if " mtu " in line]
    assert mtus[0].startswith("ip link set dev eno1") and mtus[-1].startswith("ip link set dev br0")  # noqa: PT018


def test_removal_goes_upper_first_and_mtu_reduction_upper_first() -> None:
    kernel = FakeKernel(list(NICS))
    first = loads(BOND_STACK)
    converge(kernel, first)
    second = loads(
        """
nics:
  - {name: eno1, mac: "02:00:00:00:00:00", mtu: 1500}
  - {name: eno2, mac: "02:00:00:00:00:01", mtu: 1500}
bonds:
  - {name: bond0, mode: 802.3ad, interfaces: [eno1, eno2], mtu: 1500}
"""
    )
    text = render(converge(kernel, second, first)).splitlines()
    assert text[:2] == ["ip link del dev mgmt0  # vlan", "ip link del dev br0  # bridge"]
    mtus = [line for line in text if " mtu " in line]
    assert mtus == ["ip link set dev bond0 mtu 1500", "ip link set dev eno1 mtu 1500", "ip link set dev eno2 mtu 1500"]


def test_changing_a_fixed_attribute_recreates_the_link_and_what_is_stacked_on_it() -> None:
    kernel = FakeKernel(list(NICS))
    first = loads(BOND_STACK)
    converge(kernel, first)
    changed = BOND_STACK.replace("mode: 802.3ad", "mode: balance-xor").replace("lacp_rate: fast,", "")
    text = render(converge(kernel, loads(changed), first)).splitlines()
    assert "ip link del dev bond0  # bond" in text
    assert "ip link add bond0 type bond mode balance-xor miimon 100 xmit_hash_policy layer3+4" in text
    assert "ip link set dev bond0 master br0" in text


def test_in_place_changes_do_not_recreate() -> None:
    kernel = FakeKernel(list(NICS))
    first = loads(BOND_STACK)
    converge(kernel, first)
    changed = BOND_STACK.replace("miimon: 100", "miimon: 250").replace("vlans: [10, 20]", "vlans: [10, 40]")
    text = render(converge(kernel, loads(changed), first)).splitlines()
    assert text == [
        # Only what changes: the kernel refuses even an unchanged lacp_rate on an up bond.
        "ip link set dev bond0 type bond miimon 250",
        "bridge vlan del dev bond0 vid 20",
        "bridge vlan add dev bond0 vid 40",
    ]


def test_a_lacp_rate_change_recreates_the_bond_and_what_is_stacked_on_it() -> None:
    kernel = FakeKernel(list(NICS))
    first = loads(BOND_STACK)
    converge(kernel, first)
    text = render(converge(kernel, loads(BOND_STACK.replace("lacp_rate: fast", "lacp_rate: slow")), first))
    lines = text.splitlines()
    assert lines[0] == "ip link del dev bond0  # bond"
    assert "ip link add bond0 type bond mode 802.3ad miimon 100 lacp_rate slow xmit_hash_policy layer3+4" in lines
    assert "ip link set dev bond0 master br0" in lines


def test_vxlan_peers_change_in_place_and_vni_change_recreates() -> None:
    kernel = FakeKernel([NICS[0]])
    first = loads("vxlans: [{name: vx0, vni: 5, peers: [10.0.0.2, 10.0.0.3]}]")
    converge(kernel, first)
    text = render(converge(kernel, loads("vxlans: [{name: vx0, vni: 5, peers: [10.0.0.3, 10.0.0.4]}]"))).splitlines()
    assert text == [
        "bridge fdb del 00:00:00:00:00:00 dev vx0 dst 10.0.0.2",
        "bridge fdb append 00:00:00:00:00:00 dev vx0 dst 10.0.0.4",
    ]
    text = render(converge(kernel, loads("vxlans: [{name: vx0, vni: 6}]"))).splitlines()
    assert text[:2] == ["ip link del dev vx0  # vxlan", "ip link add vx0 type vxlan id 6 dstport 4789 nolearning"]


def test_plan_refuses_what_it_cannot_do() -> None:
    kernel = FakeKernel(list(NICS))
    with pytest.raises(PlanError, match="no interface has MAC 02:00:00:00:00:09"):
        plan(
            loads('nics: [{name: x, mac: "02:00:00:00:00:09"}]'),
            observe_managed(kernel, loads('nics: [{name: x, mac: "02:00:00:00:00:09"}]')),
        )
    desired = loads("bridges: [{name: eth1}]")
    with pytest.raises(PlanError, match="'eth1' is a physical interface"):
        plan(desired, observe_managed(kernel, desired))
    swap = loads('nics: [{name: eth1, mac: "02:00:00:00:00:00"}, {name: eth0, mac: "02:00:00:00:00:01"}]')
    with pytest.raises(PlanError, match="cannot rename"):
        plan(swap, observe_managed(kernel, swap))


def test_a_nic_leaving_the_configuration_is_released_but_not_deleted() -> None:
    kernel = FakeKernel(list(NICS))
    first = loads('nics: [{name: eth0, mac: "02:00:00:00:00:00"}]\nbridges: [{name: br0, ports: [{name: eth0}]}]')
    converge(kernel, first)
    second = loads("bridges: [{name: br0}]")
    assert render(converge(kernel, second, first)) == "ip link set dev eth0 nomaster\n"
    assert "eth0" in kernel.specs


def test_actions_encode_as_tagged_json() -> None:
    kernel = FakeKernel(list(NICS))
    desired = loads(BOND_STACK)
    encoded = msgspec.json.decode(msgspec.json.encode(plan(desired, observe_managed(kernel, desired))))
    assert encoded[0] == {"op": "rename", "name": "eth0", "new_name": "eno1"}
    assert {"op": "create", "name": "mgmt0", "link": {"name": "mgmt0", "link": "br0", "id": 10}} in encoded


def test_observe_leaves_out_unmanaged_links_and_members() -> None:
    kernel = FakeKernel([*NICS, Bridge(name="br0", mtu=1500), Vxlan(name="vx7", vni=7, mtu=1500)])
    kernel.master["eth2"] = "br0"  # not managed: not listed as a port
    observed = observe_managed(kernel, loads("bridges: [{name: br0}]"))
    assert [link.name for link in observed.links()] == ["br0"]
    assert observed.bridges[0].ports == ()
