"""Overlay definitions + membership -> links (pure), and the reconciler over an in-memory kernel."""

from __future__ import annotations

import asyncio
from pathlib import Path

from appliance.network.overlay_config import Endpoint, gossip_host, keep_host_addressing, overlay_links
from appliance.network.reconciler import OverlayReconciler
from appliance.network.types import OverlayRecord
from netconfig.model import Bridge, BridgePort, NetworkConfig, Vxlan
from netconfig.state import StateDir
from tests.unit.netconfig.fakekernel import FakeKernel

ME = Endpoint(name="n0", gossip="10.0.0.10", addresses=("10.0.0.10/24", "172.16.0.10/24"))
PEERS = [
    Endpoint(name="n1", gossip="10.0.0.11", addresses=("10.0.0.11/24", "172.16.0.11/24")),
    Endpoint(name="n2", gossip="10.0.0.12", addresses=("10.0.0.12/24",)),  # nothing in 172.16/16
    Endpoint(name="n0", gossip="10.0.0.10"),  # itself, as a member list has it
]
BLUE = OverlayRecord(name="blue", vni=100, bridge="ovl0")


def test_gossip_host() -> None:
    assert gossip_host("10.0.0.1:7946") == "10.0.0.1"
    assert gossip_host("[fd00::1]:7946") == "fd00::1"
    assert gossip_host("fd00::1") == "fd00::1"


def test_one_network_gives_a_bridge_and_a_vxlan_flooding_to_the_others() -> None:
    result = overlay_links([BLUE], ME, PEERS)
    assert result.config == NetworkConfig(
        bridges=(Bridge(name="ovl0", mtu=1450, ports=(BridgePort(name="vx100"),)),),
        vxlans=(Vxlan(name="vx100", vni=100, local="10.0.0.10", peers=("10.0.0.11", "10.0.0.12"), mtu=1450),),
    )
    assert result.states[0].peers == ["10.0.0.11", "10.0.0.12"]
    assert not result.states[0].error


def test_underlay_network_picks_published_addresses() -> None:
    record = OverlayRecord(name="green", vni=7, bridge="ovl7", underlay="172.16.0.0/16", port=8472, mtu=9000)
    result = overlay_links([record], ME, PEERS)
    (vxlan,) = result.config.vxlans
    assert (vxlan.local, vxlan.peers, vxlan.port, vxlan.mtu) == ("172.16.0.10", ("172.16.0.11",), 8472, 9000)
    lonely = overlay_links([record], Endpoint(name="n2", gossip="10.0.0.12"), PEERS)
    assert lonely.config == NetworkConfig()
    assert lonely.states[0].error == "this node has no address in the underlay 172.16.0.0/16"


def test_clashes_skip_the_later_definition_and_say_why() -> None:
    records = [
        OverlayRecord(name="b", vni=100, bridge="ovl1"),  # same VNI as "a", sorted after it
        OverlayRecord(name="a", vni=100, bridge="ovl0"),
        OverlayRecord(name="c", vni=300, bridge="ovl0"),  # same bridge as "a"
        OverlayRecord(name="d", vni=400, bridge="mine"),  # the node's own configuration has "mine"
    ]
    result = overlay_links(records, ME, PEERS, reserved={"mine"})
    assert result.config.names() == {"ovl0", "vx100"}
    errors = {s.name: s.error for s in result.states}
    assert errors == {
        "a": "",
        "b": "VNI 100 is also used by network 'a'",
        "c": "link name 'ovl0' is also used by network 'a'",
        "d": "link name 'mine' is managed by this node's own network configuration",
    }


def test_host_addressing_on_the_bridge_is_kept() -> None:
    wanted = overlay_links([BLUE], ME, PEERS).config
    observed = NetworkConfig(bridges=(Bridge(name="ovl0", addresses=("10.200.0.1/24",)),))
    kept = keep_host_addressing(wanted, observed)
    assert kept.bridges[0].addresses == ("10.200.0.1/24",)
    assert kept.vxlans == wanted.vxlans


def test_reconciler_creates_follows_members_and_removes(tmp_path: Path) -> None:
    class Store:
        def __init__(self) -> None:
            self.records = [BLUE]

        def all(self) -> list[OverlayRecord]:
            return list(self.records)

    store = Store()
    members = list(PEERS)
    kernel = FakeKernel()
    asked: list[int] = []

    def endpoints() -> tuple[Endpoint, list[Endpoint]]:
        asked.append(1)
        return ME, members

    reconciler = OverlayReconciler(
        overlays=store,  # type: ignore[arg-type]
        endpoints=endpoints,
        reserved=set,
        adapter=kernel,
        state=StateDir(tmp_path / "overlays"),
    )

    async def scenario() -> None:
        await reconciler.reconcile()
        vxlan = kernel.specs["vx100"]
        assert isinstance(vxlan, Vxlan)
        assert vxlan.learning is False
        assert kernel.master["vx100"] == "ovl0"
        assert vxlan.peers == ("10.0.0.11", "10.0.0.12")
        assert vxlan.local == "10.0.0.10"
        members.pop(1)  # n2 died
        await reconciler.reconcile()
        assert kernel.specs["vx100"].peers == ("10.0.0.11",)  # type: ignore[union-attr]
        assert await reconciler.reconcile() == []  # idempotent
        store.records = []
        await reconciler.reconcile()
        assert "vx100" not in kernel.specs
        assert "ovl0" not in kernel.specs
        calls, endpoint_calls = len(kernel.calls), len(asked)
        assert await reconciler.reconcile() == []
        assert len(kernel.calls) == calls
        # Nothing defined, nothing left: later passes (one per membership event) skip the work.
        assert await reconciler.reconcile() == []
        assert len(asked) == endpoint_calls + 1
        store.records = [BLUE]  # defined again: back to full passes
        await reconciler.reconcile()
        assert "vx100" in kernel.specs
        await reconciler.close()

    asyncio.run(scenario())
