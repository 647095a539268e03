"""netconfig against the real kernel, inside throwaway network namespaces.

Every test builds its own namespaces with random names (`dv` + hex), holds an `unreachable`
route in the root namespace for every subnet it uses (tests/netns.py explains why), sends
packets only from inside a namespace, and deletes everything on the way out. Bonds, VLANs
and VLAN-aware bridges are missing from this host's kernel: they are covered by unit tests
with a recording adapter, and against Debian's kernel in a QEMU guest by
test_netconfig_guest.py.
"""

from __future__ import annotations

import asyncio
import errno
import json
import secrets
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from netconfig.actions import AddAddress, SetMtu
from netconfig.apply import ApplyError, apply
from netconfig.confirm import ConfirmManager, NetConfig, PingCheck, RolledBack
from netconfig.kernel import KernelAdapter
from netconfig.load import loads
from netconfig.model import NetworkConfig
from netconfig.observe import blank_unmanaged, observe_managed
from netconfig.plan import plan
from netconfig.state import StateDir
from tests.kit.need import require_available
from tests.netns import _quiet, _run, available

pytestmark = [pytest.mark.privileged, pytest.mark.integration]

UNDERLAY = "10.96.0.0/24"
OVERLAY = "10.95.0.0/24"
LAN = "10.94.0.0/24"


class Namespaces:
    """Named namespaces plus root-namespace safety routes, all removed by `close()`."""

    def __init__(self) -> None:
        self.prefix = f"dv{secrets.token_hex(3)}"
        self.names: list[str] = []
        self.routes: list[str] = []

    def add(self, suffix: str) -> str:
        name = f"{self.prefix}-{suffix}"
        self.names.append(name)
        _run(["ip", "netns", "add", name])
        _run(["ip", "-n", name, "link", "set", "lo", "up"])
        return name

    def guard(self, subnet: str) -> None:
        for _attempt in range(5):
            metric = str(1000 + secrets.randbelow(60000))
            if _run(["ip", "route", "add", "unreachable", subnet, "metric", metric], check=False).returncode == 0:
                self.routes.append(f"{subnet} metric {metric}")
                return
        raise RuntimeError(f"cannot guard {subnet}")

    def close(self) -> None:
        for name in reversed(self.names):
            _quiet(["ip", "netns", "del", name])
        for route in self.routes:
            _quiet(["ip", "route", "del", "unreachable", *route.split()])


@pytest.fixture
def lab() -> Iterator[Namespaces]:
    require_available(available())
    namespaces = Namespaces()
    for subnet in (UNDERLAY, OVERLAY, LAN):
        namespaces.guard(subnet)
    try:
        yield namespaces
    finally:
        namespaces.close()


def ip(netns: str, *args: str) -> str:
    return _run(["ip", "-n", netns, *args]).stdout


def link_json(netns: str, name: str) -> dict[str, object]:
    data: list[dict[str, object]] = json.loads(ip(netns, "-j", "-d", "link", "show", "dev", name))
    return data[0]


def mac_of(netns: str, name: str) -> str:
    return str(link_json(netns, name)["address"])


def ping(netns: str, address: str, *, tries: int = 5) -> bool:
    for _ in range(tries):
        result = subprocess.run(
            ["ip", "netns", "exec", netns, "ping", "-n", "-q", "-c", "1", "-W", "1", address],
            capture_output=True,
            timeout=10,
            check=False,
        )
        if result.returncode == 0:
            return True
    return False


def test_bridge_veth_addresses_routes_mtu(lab: Namespaces) -> None:
    ns = lab.add("a")
    ip(ns, "link", "add", "e0", "type", "veth", "peer", "name", "e1")
    config = loads(
        f"""
nics:
  - {{name: lan0, mac: "{mac_of(ns, "e0")}", mtu: 9000}}
  - {{name: e1, mac: "{mac_of(ns, "e1")}", addresses: [10.94.0.9/24]}}
bridges:
  - name: br0
    mtu: 9000
    stp: false
    ports: [{{name: lan0}}]
    addresses: [10.94.0.1/24, "fd00:94::1/64"]
    routes:
      - {{to: 10.93.0.0/16, via: 10.94.0.254}}
      - {{to: default, via: 10.94.0.254, metric: 50}}
"""
    )
    with KernelAdapter(ns) as adapter:
        actions = plan(config, observe_managed(adapter, config))
        assert any(str(a) == "ip link set dev e0 name lan0" for a in actions)
        apply(actions, adapter)
        observed = observe_managed(adapter, config)
        assert blank_unmanaged(observed, config) == config
        assert plan(config, observed) == []
    assert link_json(ns, "lan0")["master"] == "br0"
    assert "10.93.0.0/16 via 10.94.0.254" in ip(ns, "route", "show")


def overlay_config(mac: str, me: int, *, with_overlay_address: bool = True, vxlan_up: bool = True) -> NetworkConfig:
    other = 2 if me == 1 else 1
    overlay = f"addresses: [10.95.0.{me}/24]" if with_overlay_address else "addresses: []"
    return loads(
        f"""
nics:
  - {{name: under0, mac: "{mac}", addresses: [10.96.0.{me}/24]}}
vxlans:
  - {{name: vx0, vni: 4242, local: 10.96.0.{me}, peers: [10.96.0.{other}], dev: under0, up: {str(vxlan_up).lower()}}}
bridges:
  - name: ovl0
    ports: [{{name: vx0}}]
    {overlay}
"""
    )


@pytest.fixture
def overlay(lab: Namespaces) -> Iterator[tuple[list[str], list[str]]]:
    """Two namespaces joined by a veth underlay; returns (namespaces, underlay MACs)."""
    h1, h2 = lab.add("h1"), lab.add("h2")
    _run(
        [
            "ip",
            "link",
            "add",
            f"{lab.prefix}u",
            "netns",
            h1,
            "type",
            "veth",
            "peer",
            "name",
            f"{lab.prefix}v",
            "netns",
            h2,
        ]
    )
    macs = [mac_of(h1, f"{lab.prefix}u"), mac_of(h2, f"{lab.prefix}v")]
    for i, (ns, mac) in enumerate(zip([h1, h2], macs, strict=True), start=1):
        with KernelAdapter(ns) as adapter:
            NetConfig(adapter, StateDir(Path(f"/tmp/{ns}-state"))).apply_now(overlay_config(mac, i))
    try:
        yield [h1, h2], macs
    finally:
        for ns in (h1, h2):
            _quiet(["rm", "-rf", f"/tmp/{ns}-state"])


def test_vxlan_overlay_with_unicast_peers_carries_traffic(overlay: tuple[list[str], list[str]]) -> None:
    (h1, h2), macs = overlay
    assert ping(h1, "10.95.0.2")
    assert ping(h2, "10.95.0.1")
    with KernelAdapter(h1) as adapter:
        config = overlay_config(macs[0], 1)
        assert blank_unmanaged(observe_managed(adapter, config), config) == config
        assert plan(config, observe_managed(adapter, config)) == []


def test_unconfirmed_change_is_rolled_back_and_confirmed_change_stays(
    overlay: tuple[list[str], list[str]], tmp_path: Path
) -> None:
    (h1, _h2), macs = overlay
    breaking = overlay_config(macs[0], 1, with_overlay_address=False)

    async def scenario() -> None:
        with KernelAdapter(h1) as adapter:
            manager = ConfirmManager(NetConfig(adapter, StateDir(Path(f"/tmp/{h1}-state"))))
            await manager.start()
            try:
                started = time.monotonic()
                await manager.apply(breaking, confirm_within=3)
                assert not await asyncio.to_thread(ping, h1, "10.95.0.2", tries=1)
                while (await manager.status()).pending is not None:
                    assert time.monotonic() - started < 15, "not rolled back in time"
                    await asyncio.sleep(0.2)
                assert time.monotonic() - started >= 2.9
                assert await asyncio.to_thread(ping, h1, "10.95.0.2")
                outcome = (await manager.status()).last_outcome
                assert outcome is not None
                assert outcome.result == "rolled-back"

                # Confirmed within the window: the change stays.
                await manager.apply(breaking, confirm_within=3)
                await manager.confirm()
                await asyncio.sleep(3.5)
                assert not await asyncio.to_thread(ping, h1, "10.95.0.2", tries=1)
                status = await manager.status()
                assert status.applied == breaking
                assert status.pending is None
            finally:
                await manager.close()

    asyncio.run(scenario())


def test_restart_in_the_window_still_rolls_back(overlay: tuple[list[str], list[str]]) -> None:
    (h1, _h2), macs = overlay
    breaking = overlay_config(macs[0], 1, vxlan_up=False)
    state = StateDir(Path(f"/tmp/{h1}-state"))
    with KernelAdapter(h1) as adapter:
        NetConfig(adapter, state).begin(breaking, confirm_within=3)  # the "service" that dies
    assert not ping(h1, "10.95.0.2", tries=1)

    async def restarted() -> None:
        with KernelAdapter(h1) as adapter:
            manager = ConfirmManager(NetConfig(adapter, state))
            await manager.start()
            try:
                deadline = time.monotonic() + 15
                while (await manager.status()).pending is not None:
                    assert time.monotonic() < deadline
                    await asyncio.sleep(0.2)
            finally:
                await manager.close()

    asyncio.run(restarted())
    assert ping(h1, "10.95.0.2")


def test_failed_reachability_check_rolls_back_at_once(overlay: tuple[list[str], list[str]]) -> None:
    (h1, _h2), macs = overlay
    breaking = overlay_config(macs[0], 1, with_overlay_address=False)
    state = StateDir(Path(f"/tmp/{h1}-state"))
    with KernelAdapter(h1) as adapter:
        core = NetConfig(adapter, state, check=PingCheck(netns=h1, attempts=1))
        started = time.monotonic()
        with pytest.raises(RolledBack, match="did not answer"):
            core.begin(breaking, confirm_within=60, check="10.95.0.2")
        assert time.monotonic() - started < 10
        assert state.pending() is None
    assert ping(h1, "10.95.0.2")


def test_unmanaged_links_are_untouched_and_removed_links_are_deleted(lab: Namespaces, tmp_path: Path) -> None:
    ns = lab.add("d")
    ip(ns, "link", "add", "e0", "type", "veth", "peer", "name", "e1")
    ip(ns, "link", "add", "keep0", "type", "bridge")
    ip(ns, "addr", "add", "10.94.0.77/24", "dev", "keep0")
    ip(ns, "link", "add", "tap0", "type", "veth", "peer", "name", "tap1")
    first = loads(
        f"""
nics: [{{name: e0, mac: "{mac_of(ns, "e0")}"}}]
bridges: [{{name: br0, ports: [{{name: e0}}], addresses: [10.94.0.1/24]}}]
vxlans: [{{name: vx9, vni: 9, local: 10.94.0.1, peers: [10.94.0.2]}}]
"""
    )
    with KernelAdapter(ns) as adapter:
        core = NetConfig(adapter, StateDir(tmp_path))
        core.apply_now(first)
        ip(ns, "link", "set", "tap0", "master", "br0")  # a VM's tap joins the managed bridge
        before = {name: link_json(ns, name) for name in ("keep0", "tap0", "tap1")}
        second = loads(
            f"""
nics: [{{name: e0, mac: "{mac_of(ns, "e0")}"}}]
bridges: [{{name: br0, ports: [{{name: e0}}], addresses: [10.94.0.2/24], mtu: 1400}}]
"""
        )
        actions = core.apply_now(second)
        assert "ip link del dev vx9  # vxlan" in [str(a) for a in actions]
        assert not any("tap" in str(a) or "keep0" in str(a) for a in actions)
    after = {name: link_json(ns, name) for name in ("keep0", "tap0", "tap1")}
    for name, facts in before.items():
        for key in ("ifname", "mtu", "master", "operstate", "address", "flags"):
            assert facts.get(key) == after[name].get(key), (name, key)
    assert "10.94.0.77/24" in ip(ns, "addr", "show", "dev", "keep0")
    assert "vx9" not in ip(ns, "link", "show")


def test_nic_renamed_back_by_mac(lab: Namespaces, tmp_path: Path) -> None:
    ns = lab.add("e")
    ip(ns, "link", "add", "e0", "type", "veth", "peer", "name", "e1")
    config = loads(f'nics: [{{name: uplink0, mac: "{mac_of(ns, "e0")}", addresses: [10.94.0.5/24]}}]')
    with KernelAdapter(ns) as adapter:
        core = NetConfig(adapter, StateDir(tmp_path))
        core.apply_now(config)
        ip(ns, "link", "set", "uplink0", "down")
        ip(ns, "link", "set", "uplink0", "name", "renamed9")
        actions = core.apply_now(config)
        assert [str(a) for a in actions] == ["ip link set dev renamed9 name uplink0", "ip link set dev uplink0 up"]
        assert blank_unmanaged(observe_managed(adapter, config), config) == config
    assert "UP" in str(link_json(ns, "uplink0")["flags"])


def test_the_fast_netlink_channel_reads_what_pyroute2_reads(lab: Namespaces) -> None:
    # KernelAdapter talks through netconfig.rtnl; handed a plain pyroute2 IPRoute it reads
    # through pyroute2's own API and decoders. Both must see the same links, including what
    # is not ours: an unmanaged bridge with an address, routes of other protocols, types and
    # tables, learned and static FDB entries next to flooding peers.
    ns = lab.add("f")
    ip(ns, "link", "add", "e0", "type", "veth", "peer", "name", "e1")
    ip(ns, "link", "add", "keep0", "type", "bridge")
    ip(ns, "addr", "add", "10.94.0.77/24", "dev", "keep0")
    ip(ns, "link", "set", "keep0", "up")
    config = loads(
        f"""
nics: [{{name: e0, mac: "{mac_of(ns, "e0")}", mtu: 1500, addresses: [10.96.0.1/24, "fd00:96::1/64"],
        routes: [{{to: 10.94.0.0/27, via: 10.96.0.254, metric: 7}}, {{to: "fd00:96:100::/48", via: "fd00:96::fe"}}]}}]
bridges: [{{name: br0, ports: [{{name: vx0}}], addresses: [10.95.0.1/24], stp: true}}]
vxlans:
  - {{name: vx0, vni: 42, local: 10.96.0.1, dev: e0, peers: [10.96.0.2, 10.96.0.3]}}
  - {{name: vx6, vni: 43, local: "fd00:96::1", port: 4790, learning: true, peers: ["fd00:96::2"]}}
"""
    )
    with KernelAdapter(ns) as adapter:
        apply(plan(config, observe_managed(adapter, config)), adapter)
        assert blank_unmanaged(observe_managed(adapter, config), config) == config
        ip(ns, "route", "add", "10.94.0.32/27", "via", "10.96.0.254", "proto", "boot")
        ip(ns, "route", "add", "10.94.0.64/27", "via", "10.96.0.254", "proto", "kernel")
        ip(ns, "route", "add", "blackhole", "10.94.0.96/27")
        ip(ns, "route", "add", "10.94.0.128/27", "via", "10.96.0.254", "table", "100")
        ip(ns, "route", "add", "10.94.0.160/27", "via", "10.96.0.254", "table", "1000")
        _run(["bridge", "-n", ns, "fdb", "add", "02:00:00:00:00:09", "dev", "vx0", "dst", "10.96.0.9"])
        _run(["bridge", "-n", ns, "fdb", "add", "02:00:00:00:00:0a", "dev", "vx0", "master", "static"])
        fast = adapter.links()
        with KernelAdapter(ipr=IPRoute(netns=ns)) as reference:
            assert fast == reference.links()
        e0 = next(kl.spec for kl in fast if kl.spec.name == "e0")
        assert [r.to for r in e0.routes] == ["10.94.0.0/27", "10.94.0.32/27", "fd00:96:100::/48"]


def test_a_failed_request_is_the_action_that_failed(lab: Namespaces) -> None:
    ns = lab.add("g")
    ip(ns, "link", "add", "e0", "type", "veth", "peer", "name", "e1")
    config = loads(f'nics: [{{name: e0, mac: "{mac_of(ns, "e0")}", addresses: [10.96.0.1/24]}}]')
    with KernelAdapter(ns) as adapter:
        actions = plan(config, observe_managed(adapter, config))
        apply(actions, adapter)
        again = [AddAddress(name="e0", address="10.96.0.2/24"), *actions, SetMtu(name="e0", mtu=1400)]
        with pytest.raises(ApplyError) as failed:
            apply(again, adapter)  # the address is there already: EEXIST, and nothing after it runs
        assert failed.value.done == 1
        assert failed.value.action == actions[0]
        assert isinstance(failed.value.cause, NetlinkError)
        assert failed.value.cause.code == errno.EEXIST
        adapter.set_mtu("e0", 1450)  # the channel is usable after an error
    assert link_json(ns, "e0")["mtu"] == 1450
    assert "10.96.0.2/24" in ip(ns, "addr", "show", "dev", "e0")
