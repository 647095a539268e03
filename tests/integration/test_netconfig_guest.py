"""netconfig against Debian's kernel in a QEMU guest: bonds, 802.1Q VLANs, VLAN-aware bridges.

The host kernel has none of these (see /work/shared/TESTBED.md), so each scenario runs as one
`call_in_guest` (a fresh guest per scenario, ~3 s boot plus ~5 s of Python start-up under
TCG): it drives netconfig's real `KernelAdapter` in the guest, which is thrown away after, so
the bond and bridge scenarios use the guest's root namespace and the traffic scenario two
namespaces inside it. Dummy links stand in for NICs and are found by MAC, like real ones;
they have no permanent address, so they also check that a bond member, whose current MAC is
the bond's, is still recognised.

Every step asserts, inside the guest, the properties issue 6 asks for: after applying, the
observed state equals the desired one (`blank_unmanaged`) and a second plan is empty. The
functions named `_in_guest_*` run in the guest; they return what the host-side tests check
against the kernel's own view (sysfs, `/proc/net/vlan/config`, `bridge -j vlan show`), which
does not go through the adapter's translation tables.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import msgspec
import pytest

from netconfig.actions import Action
from netconfig.confirm import ConfirmManager, NetConfig, PingCheck, RolledBack
from netconfig.kernel import KernelAdapter
from netconfig.load import loads
from netconfig.model import NetworkConfig
from netconfig.observe import blank_unmanaged, observe_managed
from netconfig.plan import plan, render
from netconfig.state import StateDir
from netconfig.validate import ConfigError
from tests.guest import call_in_guest, guest_available
from tests.kit.need import require_available

pytestmark = [pytest.mark.integration, pytest.mark.privileged, pytest.mark.qemu]

MODULES = ("bonding", "8021q", "bridge", "dummy", "veth")


@pytest.fixture(autouse=True)
def _needs_guest() -> None:
    require_available(guest_available())


# -- helpers that run in the guest ------------------------------------------------------------


def _sh(*argv: str) -> str:
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout


def _mac(i: int) -> str:
    return f"02:00:00:00:10:{i:02x}"


def _dummies(count: int) -> None:
    """Dummy links `tmpN` with MACs `_mac(N)`: the NICs, which configurations rename to `nicN`."""
    for i in range(count):
        _sh("ip", "link", "add", f"tmp{i}", "address", _mac(i), "type", "dummy")


def _nics(count: int) -> str:
    return "nics:\n" + "".join(f'  - {{name: nic{i}, mac: "{_mac(i)}"}}\n' for i in range(count))


def _settle(core: NetConfig, desired: NetworkConfig) -> list[str]:
    """Apply `desired`; assert observed == desired and an empty second plan; the actions run."""
    actions = core.apply_now(desired)
    _assert_settled(core.adapter, desired)
    return [str(a) for a in actions]


def _assert_settled(adapter: Any, desired: NetworkConfig) -> None:
    observed = blank_unmanaged(observe_managed(adapter, desired), desired)
    assert observed == desired, f"observed != desired:\n{_yaml(observed)}\n---\n{_yaml(desired)}"
    again: list[Action] = plan(desired, observe_managed(adapter, desired))
    assert again == [], f"second plan not empty:\n{render(again)}"


def _yaml(config: NetworkConfig) -> str:
    return msgspec.yaml.encode(config).decode()


def _bond_sysfs(name: str) -> dict[str, str]:
    """A bond as the bonding driver's sysfs files show it (first word: the option's name)."""
    base = Path(f"/sys/class/net/{name}/bonding")
    facts = {key: (base / key).read_text().split()[:1] for key in ("mode", "miimon", "lacp_rate", "xmit_hash_policy")}
    result = {key: value[0] if value else "" for key, value in facts.items()}
    result["primary"] = (base / "primary").read_text().strip()
    result["slaves"] = " ".join(sorted((base / "slaves").read_text().split()))
    return result


def _link_facts(*names: str) -> dict[str, dict[str, Any]]:
    """Master, admin state and current MAC of links, from `ip -j link`."""
    result = {}
    for name in names:
        (link,) = json.loads(_sh("ip", "-j", "link", "show", "dev", name))
        result[name] = {"master": link.get("master"), "up": "UP" in link["flags"], "mac": link["address"]}
    return result


def _vlan_devices() -> dict[str, list[Any]]:
    """name -> [VLAN id, lower device] from /proc/net/vlan/config."""
    lines = Path("/proc/net/vlan/config").read_text().splitlines()[2:]
    return {parts[0]: [int(parts[1]), parts[2]] for parts in ([p.strip() for p in line.split("|")] for line in lines)}


def _bridge_vlans() -> dict[str, list[list[Any]]]:
    """ifname -> [[vid, flags...], ...] from `bridge -j vlan show`."""
    result = {}
    for entry in json.loads(_sh("bridge", "-j", "vlan", "show")):
        result[entry["ifname"]] = [[v["vlan"], *sorted(v.get("flags", []))] for v in entry["vlans"]]
    return result


# -- scenario 1: bonds ------------------------------------------------------------------------


def _bonds_config(bonds: str, vlans: str = "") -> NetworkConfig:
    return loads(_nics(8) + "bonds:\n" + bonds + vlans)


BONDS_BASE = """\
  - {name: bond-rr, mode: balance-rr, interfaces: [nic0, nic1], miimon: 100}
  - {name: bond-ab, mode: active-backup, interfaces: [nic2, nic3], primary: nic3, miimon: 50}
  - {name: bond-xor, mode: balance-xor, interfaces: [nic4], xmit_hash_policy: layer2+3}
  - {name: bond-lacp, mode: 802.3ad, interfaces: [nic5, nic6], miimon: 100, lacp_rate: fast,
     xmit_hash_policy: layer3+4, mtu: 9000, addresses: [10.97.0.1/24],
     routes: [{to: 10.98.0.0/16, via: 10.97.0.254}]}
"""
BONDS_VLAN = "vlans:\n  - {name: ab.30, link: bond-ab, id: 30, addresses: [10.97.30.1/24]}\n"
BONDS = ("bond-rr", "bond-ab", "bond-xor", "bond-lacp")


def _in_guest_bonds() -> dict[str, Any]:
    """Every bond mode from a file, then in-place changes, mode changes and removal."""
    _dummies(8)
    steps: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as state, KernelAdapter() as adapter:
        core = NetConfig(adapter, StateDir(Path(state)))

        def step(name: str, config: NetworkConfig, bonds: tuple[str, ...]) -> None:
            started = time.monotonic()
            actions = _settle(core, config)
            steps[name] = {
                "actions": actions,
                "sysfs": {bond: _bond_sysfs(bond) for bond in bonds},
                "seconds": round(time.monotonic() - started, 2),
            }

        step("create", _bonds_config(BONDS_BASE, BONDS_VLAN), BONDS)
        steps["create"]["vlans"] = _vlan_devices()

        in_place = (
            BONDS_BASE.replace("miimon: 100}", "miimon: 200}")  # bond-rr
            .replace("primary: nic3", "primary: nic2")
            .replace("layer2+3", "layer3+4")
            .replace("interfaces: [nic5, nic6], miimon: 100", "interfaces: [nic5, nic6], miimon: 300")
        )
        step("in-place", _bonds_config(in_place, BONDS_VLAN), BONDS)

        modes = in_place.replace(
            "mode: active-backup, interfaces: [nic2, nic3], primary: nic2",
            "mode: balance-xor, interfaces: [nic2, nic3]",
        ).replace("mode: balance-rr", "mode: broadcast")
        step("mode", _bonds_config(modes, BONDS_VLAN), BONDS)
        steps["mode"]["vlans"] = _vlan_devices()

        lacp = modes.replace("lacp_rate: fast", "lacp_rate: slow")
        step("lacp-rate", _bonds_config(lacp, BONDS_VLAN), BONDS)

        kept = "\n".join(
            line for line in lacp.splitlines(keepends=True) if "bond-rr" not in line and "bond-xor" not in line
        )
        step("remove", _bonds_config(kept, BONDS_VLAN), ("bond-ab", "bond-lacp"))
        steps["remove"]["released"] = _link_facts("nic0", "nic1", "nic4")
    return steps


def _sysfs(mode: str, miimon: int, lacp: str, xmit: str, *, primary: str = "", slaves: str) -> dict[str, str]:
    return {
        "mode": mode,
        "miimon": str(miimon),
        "lacp_rate": lacp,
        "xmit_hash_policy": xmit,
        "primary": primary,
        "slaves": slaves,
    }


def test_bonds_every_mode_in_place_changes_mode_changes_and_removal() -> None:
    started = time.monotonic()
    steps = call_in_guest(_in_guest_bonds, modules=MODULES, timeout=240)
    print(f"bond scenario: {time.monotonic() - started:.1f} s", {k: v["seconds"] for k, v in steps.items()})

    create = steps["create"]
    assert create["sysfs"] == {
        "bond-rr": _sysfs("balance-rr", 100, "slow", "layer2", slaves="nic0 nic1"),
        "bond-ab": _sysfs("active-backup", 50, "slow", "layer2", primary="nic3", slaves="nic2 nic3"),
        "bond-xor": _sysfs("balance-xor", 0, "slow", "layer2+3", slaves="nic4"),
        "bond-lacp": _sysfs("802.3ad", 100, "fast", "layer3+4", slaves="nic5 nic6"),
    }
    assert create["vlans"] == {"ab.30": [30, "bond-ab"]}

    in_place = steps["in-place"]
    assert in_place["actions"] == [
        "ip link set dev bond-ab type bond primary nic2",  # only what changes
        "ip link set dev bond-lacp type bond miimon 300",
        "ip link set dev bond-rr type bond miimon 200",
        "ip link set dev bond-xor type bond xmit_hash_policy layer3+4",
    ]
    assert in_place["sysfs"]["bond-ab"]["primary"] == "nic2"
    assert in_place["sysfs"]["bond-lacp"] == _sysfs("802.3ad", 300, "fast", "layer3+4", slaves="nic5 nic6")

    mode = steps["mode"]
    deleted = [a for a in mode["actions"] if a.startswith("ip link del")]
    assert deleted == [
        "ip link del dev ab.30  # vlan",
        "ip link del dev bond-ab  # bond",
        "ip link del dev bond-rr  # bond",
    ]
    assert mode["sysfs"]["bond-ab"] == _sysfs("balance-xor", 50, "slow", "layer2", slaves="nic2 nic3")
    assert mode["sysfs"]["bond-rr"]["mode"] == "broadcast"
    assert mode["vlans"] == {"ab.30": [30, "bond-ab"]}  # re-created on the new bond

    assert steps["lacp-rate"]["sysfs"]["bond-lacp"]["lacp_rate"] == "slow"

    remove = steps["remove"]
    assert set(remove["sysfs"]) == {"bond-ab", "bond-lacp"}
    assert remove["released"] == {
        "nic0": {"master": None, "up": True, "mac": "02:00:00:00:10:00"},
        "nic1": {"master": None, "up": True, "mac": "02:00:00:00:10:01"},
        "nic4": {"master": None, "up": True, "mac": "02:00:00:00:10:04"},
    }


# -- scenario 2: 802.1Q VLANs and a VLAN-aware bridge -----------------------------------------

BRIDGE_BASE = """\
bonds:
  - {name: bond0, mode: active-backup, interfaces: [nic1, nic2], miimon: 100}
  - {name: bond1, mode: balance-xor, interfaces: [nic5], xmit_hash_policy: layer2}
bridges:
  - name: br0
    vlan_filtering: true
    vlans: [10, 40]
    pvid: null
    ports:
      - {name: bond0, vlans: [10, 20, 30], pvid: null}
      - {name: nic3, vlans: [20], pvid: 10}
      - {name: nic4}
vlans:
  - {name: vl-nic, link: nic0, id: 100, addresses: [10.97.100.1/24]}
  - {name: vl-bond, link: bond1, id: 200, addresses: [10.97.200.1/24]}
  - {name: vl-br, link: br0, id: 10, addresses: [10.97.10.1/24]}
  - {name: vl-br40, link: br0, id: 40}
"""


def _in_guest_vlans_and_bridge() -> dict[str, Any]:
    """VLANs on a NIC, a bond and a bridge; a VLAN-aware bridge; in-place and id changes."""
    _dummies(6)
    steps: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as state, KernelAdapter() as adapter:
        core = NetConfig(adapter, StateDir(Path(state)))

        def step(name: str, config: NetworkConfig) -> None:
            started = time.monotonic()
            actions = _settle(core, config)
            steps[name] = {
                "actions": actions,
                "vlans": _vlan_devices(),
                "bridge": _bridge_vlans(),
                "filtering": Path("/sys/class/net/br0/bridge/vlan_filtering").read_text().strip(),
                "seconds": round(time.monotonic() - started, 2),
            }

        step("create", loads(_nics(6) + BRIDGE_BASE))
        ports = (
            BRIDGE_BASE.replace(
                "{name: bond0, vlans: [10, 20, 30], pvid: null}", "{name: bond0, vlans: [10, 30], pvid: null}"
            )
            .replace("{name: nic3, vlans: [20], pvid: 10}", "{name: nic3, vlans: [10, 30], pvid: 20}")
            .replace("vlans: [10, 40]", "vlans: [10, 40, 50]")
        )
        step("ports", loads(_nics(6) + ports))
        ids = ports.replace("link: nic0, id: 100", "link: nic0, id: 101").replace(
            "link: bond1, id: 200", "link: bond1, id: 201"
        )
        step("ids", loads(_nics(6) + ids))
        try:
            loads(_nics(6) + ids + "  - {name: vl-dup, link: nic0, id: 101}\n")
        except ConfigError as exc:
            steps["duplicate"] = exc.errors
    return steps


def test_vlans_on_nic_bond_and_bridge_and_a_vlan_aware_bridge() -> None:
    started = time.monotonic()
    steps = call_in_guest(_in_guest_vlans_and_bridge, modules=MODULES, timeout=240)
    print(
        f"VLAN scenario: {time.monotonic() - started:.1f} s",
        {k: v["seconds"] for k, v in steps.items() if k != "duplicate"},
    )

    create = steps["create"]
    assert create["vlans"] == {
        "vl-nic": [100, "nic0"],
        "vl-bond": [200, "bond1"],
        "vl-br": [10, "br0"],
        "vl-br40": [40, "br0"],
    }
    assert create["filtering"] == "1"
    untagged = ["Egress Untagged", "PVID"]
    assert create["bridge"] == {
        "br0": [[10], [40]],  # the bridge itself: tagged 10 and 40, no PVID (pvid: null)
        "bond0": [[10], [20], [30]],
        "nic3": [[10, *untagged], [20]],
        "nic4": [[1, *untagged]],  # the kernel's default for a new port, which the model's default matches
    }

    ports = steps["ports"]
    assert all(a.startswith("bridge vlan ") for a in ports["actions"]), ports["actions"]  # in place
    assert ports["bridge"] == {
        "br0": [[10], [40], [50]],
        "bond0": [[10], [30]],
        "nic3": [[10], [20, *untagged], [30]],
        "nic4": [[1, *untagged]],
    }

    ids = steps["ids"]
    assert sorted(a for a in ids["actions"] if a.startswith("ip link ")) == [
        "ip link add vl-bond link bond1 type vlan id 201",
        "ip link add vl-nic link nic0 type vlan id 101",
        "ip link del dev vl-bond  # vlan",
        "ip link del dev vl-nic  # vlan",
        "ip link set dev vl-bond up",
        "ip link set dev vl-nic up",
    ]
    assert ids["vlans"]["vl-nic"] == [101, "nic0"]
    assert ids["vlans"]["vl-bond"] == [201, "bond1"]
    assert ids["bridge"] == ports["bridge"]

    assert steps["duplicate"] == ["$.vlans[4].id: VLAN 101 on 'nic0' is already defined at $.vlans[0]"]


# -- scenario 3: commit-confirmed rollback, and traffic over a VLAN on a bond -------------------

SIDES = {"a": 1, "b": 2}


def _side_config(side: str, *, mode: str = "balance-rr", vid: int = 100, miimon: int = 100) -> NetworkConfig:
    me = SIDES[side]
    return loads(
        f"""
nics:
  - {{name: up0, mac: "{_mac(16 * me)}"}}
  - {{name: up1, mac: "{_mac(16 * me + 1)}"}}
bonds:
  - {{name: bond0, mode: {mode}, interfaces: [up0, up1], miimon: {miimon}}}
vlans:
  - {{name: vlan0, link: bond0, id: {vid}, addresses: [10.97.100.{me}/24]}}
"""
    )


def _ping(netns: str, address: str, attempts: int = 3) -> bool:
    return PingCheck(netns=netns, attempts=attempts, timeout=1)(address)


def _in_guest_commit_confirmed() -> dict[str, Any]:
    """Two namespaces joined by two veth pairs, each with a bond and a VLAN on it; then a change
    that is not confirmed, and one whose reachability check fails."""
    result: dict[str, Any] = {}
    for side in SIDES:
        _sh("ip", "netns", "add", side)
        _sh("ip", "-n", side, "link", "set", "lo", "up")
    for i in range(2):  # veth pairs a:ethI <-> b:ethI, with the MACs the configurations name
        _sh(
            "ip", "link", "add", f"a{i}", "netns", "a", "address", _mac(16 + i), "type", "veth",
            "peer", "name", f"b{i}", "netns", "b", "address", _mac(32 + i),
        )  # fmt: skip
    states = {side: StateDir(Path(tempfile.mkdtemp())) for side in SIDES}
    for side in SIDES:
        with KernelAdapter(side) as adapter:
            _settle(NetConfig(adapter, states[side]), _side_config(side))
    result["ping"] = _ping("a", "10.97.100.2")
    base, changed = _side_config("a"), _side_config("a", mode="802.3ad", vid=101, miimon=250)

    async def unconfirmed() -> dict[str, Any]:
        with KernelAdapter("a") as adapter:
            manager = ConfirmManager(NetConfig(adapter, states["a"]))
            await manager.start()
            try:
                started = time.monotonic()
                pending, actions = await manager.apply(
                    changed, confirm_within=6
                )  # Python under TCG: keep the checks inside it
                during = {
                    "actions": [str(a) for a in actions],
                    "vlan": await asyncio.to_thread(_sh, "ip", "netns", "exec", "a", "cat", "/proc/net/vlan/config"),
                    "mode": await asyncio.to_thread(
                        _sh, "ip", "netns", "exec", "a", "cat", "/sys/class/net/bond0/bonding/mode"
                    ),
                    "ping": await asyncio.to_thread(_ping, "a", "10.97.100.2", 1),
                }
                while (await manager.status()).pending is not None:
                    assert time.monotonic() - started < 60, "not rolled back in time"
                    await asyncio.sleep(0.2)
                status = await manager.status()
                assert status.last_outcome is not None
                during["outcome"] = status.last_outcome.result
                during["window"] = round(time.monotonic() - started, 1)
                during["snapshot"] = pending.snapshot
                return during
            finally:
                await manager.close()

    result["unconfirmed"] = asyncio.run(unconfirmed())
    snapshot = result["unconfirmed"].pop("snapshot")
    with KernelAdapter("a") as adapter:
        # Exactly the snapshot again: every attribute observe reports, not only the managed ones.
        now = observe_managed(adapter, snapshot, changed)
        assert now == snapshot, f"{_yaml(now)}\n---\n{_yaml(snapshot)}"
        assert plan(snapshot, now) == []
        _assert_settled(adapter, base)
    result["ping_after_rollback"] = _ping("a", "10.97.100.2")

    with KernelAdapter("a") as adapter:
        core = NetConfig(adapter, states["a"], check=PingCheck(netns="a", attempts=2, timeout=1))
        try:
            core.begin(_side_config("a", vid=102), confirm_within=60, check="10.97.100.2")
            result["checked"] = "not rolled back"
        except RolledBack as exc:
            result["checked"] = str(exc)
        _assert_settled(adapter, base)
    result["ping_after_check"] = _ping("a", "10.97.100.2")
    return result


def test_unconfirmed_bond_and_vlan_change_rolls_back_and_traffic_flows_over_a_vlan_on_a_bond() -> None:
    started = time.monotonic()
    result = call_in_guest(_in_guest_commit_confirmed, modules=MODULES, timeout=240)
    print(f"commit-confirmed scenario: {time.monotonic() - started:.1f} s, window {result['unconfirmed']['window']} s")

    assert result["ping"]  # a VLAN on a balance-rr bond over two veth pairs carries traffic
    during = result["unconfirmed"]
    assert during["actions"][:2] == ["ip link del dev vlan0  # vlan", "ip link del dev bond0  # bond"]
    assert "vlan0          | 101  | bond0" in during["vlan"]
    assert during["mode"].split() == ["802.3ad", "4"]
    assert not during["ping"]  # VLAN 101 on one side, 100 on the other
    assert during["outcome"] == "rolled-back"
    assert result["ping_after_rollback"]
    assert result["checked"] == "10.97.100.2 did not answer after the change; rolled back"
    assert result["ping_after_check"]
