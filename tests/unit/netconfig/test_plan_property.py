"""Property: for any valid desired/observed pair of NICs, bridges and VXLANs (what the host
kernel can build), applying the plan to a simulated kernel yields the desired state, a second
plan is empty, and links outside the configuration are untouched."""

from __future__ import annotations

import msgspec
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from netconfig.apply import apply
from netconfig.model import AnyLink, Bridge, BridgePort, NetworkConfig, Nic, Route, Vxlan, canonical_config
from netconfig.observe import blank_unmanaged, observe_managed
from netconfig.plan import plan
from netconfig.validate import problems
from tests.unit.netconfig.fakekernel import FakeKernel

MACS = ["02:00:00:00:00:01", "02:00:00:00:00:02", "02:00:00:00:00:03"]
ADDRESSES = ["10.1.0.1/24", "10.1.0.2/24", "10.2.0.1/16", "fd00::1/64"]
ROUTES = [Route(to="10.9.0.0/16", via="10.1.0.254"), Route(to="default", via="10.1.0.254", metric=100)]


@st.composite
def configs(draw: st.DrawFn, *, nic_names: list[str]) -> NetworkConfig:
    def common() -> dict[str, object]:
        up = draw(st.booleans())
        addresses = draw(st.lists(st.sampled_from(ADDRESSES), unique=True, max_size=2))
        if not up:
            addresses = [a for a in addresses if ":" not in a]
        routes = draw(st.lists(st.sampled_from(ROUTES), unique=True, max_size=2)) if up else []
        return {
            "mtu": draw(st.sampled_from([None, 1400, 1500, 9000])),
            "up": up,
            "addresses": tuple(addresses),
            "routes": tuple(routes),
        }

    nics = [
        Nic(name=nic_names[i], mac=MACS[i], **common())  # type: ignore[arg-type]
        for i in draw(st.lists(st.sampled_from(range(len(MACS))), unique=True))
    ]
    vxlans = [
        Vxlan(
            name=name,
            vni=draw(st.sampled_from([10, 20])),
            local=draw(st.sampled_from([None, "10.1.0.1"])),
            peers=tuple(draw(st.lists(st.sampled_from(["10.1.0.7", "10.1.0.8", "10.1.0.9"]), unique=True))),
            learning=draw(st.booleans()),
            port=draw(st.sampled_from([4789, 8472])),
            **common(),  # type: ignore[arg-type]
        )
        for name in draw(st.lists(st.sampled_from(["vx0", "vx1"]), unique=True))
    ]
    candidates = [link.name for link in [*nics, *vxlans]]
    bridges = []
    taken: set[str] = set()
    for name in draw(st.lists(st.sampled_from(["br0", "br1"]), unique=True)):
        ports = (
            [p for p in draw(st.lists(st.sampled_from(candidates), unique=True)) if p not in taken]
            if candidates
            else []
        )
        taken |= set(ports)
        bridges.append(
            Bridge(
                name=name,
                stp=draw(st.booleans()),
                ports=tuple(BridgePort(name=p) for p in ports),
                **common(),  # type: ignore[arg-type]
            )
        )
    config = NetworkConfig(nics=tuple(nics), bridges=tuple(bridges), vxlans=tuple(vxlans))
    assume(not problems(config))
    return canonical_config(config)


def kernel_from(config: NetworkConfig) -> FakeKernel:
    """A simulated kernel holding `config`, every NIC, and links nobody manages."""
    links: list[AnyLink] = [msgspec.structs.replace(x, mtu=x.mtu or 1500) for x in config.links()]
    present = {nic.mac for nic in config.nics}
    links += [Nic(name=f"eth{i}", mac=mac, mtu=1500) for i, mac in enumerate(MACS) if mac not in present]
    links += [Nic(name="tap0", mac="02:00:00:00:00:99", mtu=1500), Bridge(name="other0", mtu=1500)]
    kernel = FakeKernel(links)
    for bridge in config.bridges:
        for port in bridge.ports:
            kernel.master[port.name] = bridge.name
            kernel.port_vlans[port.name] = {1: True}
    if config.bridges:
        kernel.master["tap0"] = config.bridges[0].name  # a VM's tap on a managed bridge
    return kernel


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow])
@given(
    desired=configs(nic_names=["lan0", "lan1", "lan2"]) | configs(nic_names=["eth0", "eth1", "eth2"]),
    before=configs(nic_names=["eth0", "eth1", "eth2"]),
)
def test_applying_the_plan_reaches_the_desired_state(desired: NetworkConfig, before: NetworkConfig) -> None:
    kernel = kernel_from(before)
    tap_master = kernel.master.get("tap0")
    observed = observe_managed(kernel, desired, before)
    apply(plan(desired, observed), kernel)

    again = observe_managed(kernel, desired, before)
    assert plan(desired, again) == []
    assert blank_unmanaged(observe_managed(kernel, desired), desired) == desired
    # Unmanaged links are untouched.
    assert kernel.specs["other0"] == Bridge(name="other0", mtu=1500)
    assert kernel.specs["tap0"] == Nic(name="tap0", mac="02:00:00:00:00:99", mtu=1500)
    if tap_master is not None and tap_master in desired.names():
        assert kernel.master.get("tap0") == tap_master


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow])
@given(config=configs(nic_names=["eth0", "eth1", "eth2"]))
def test_a_state_needs_no_change_to_become_itself(config: NetworkConfig) -> None:
    kernel = kernel_from(config)
    observed = observe_managed(kernel, config)
    assert plan(observed, observed) == []
    assert plan(config, observed) == []
