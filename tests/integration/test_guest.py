"""The QEMU guest harness: Debian's kernel boots, the checkout's Python runs, failures show the guest's side.

The kernel-feature test is the reason the harness exists: bonds, 802.1Q VLANs and
VLAN-aware bridges, which the host kernel lacks, built and read back through pyroute2 (the
project's netlink library) inside the guest. Functions named `_in_guest_*` run inside the
guest (through `call_in_guest`); they live at module level so the guest can import them.
"""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

from tests.guest import GuestError, call_in_guest, guest_available, kernel, run_in_guest
from tests.kit.need import require_available

pytestmark = [pytest.mark.integration, pytest.mark.privileged, pytest.mark.qemu]


@pytest.fixture(autouse=True)
def _needs_guest() -> None:
    require_available(guest_available())


def test_guest_boots_debian_kernel_and_runs_the_checkouts_python() -> None:
    snippet = (
        "import sys, appliance, msgspec, pyroute2\n"
        "print('imports', appliance.__name__, msgspec.__name__, pyroute2.__name__)\n"
        "print('prefix', sys.prefix)\n"
        "print('to stderr', file=sys.stderr)\n"
        "sys.exit(7)\n"
    )
    result = run_in_guest(
        [
            "/bin/sh",
            "-c",
            'uname -r && echo "$DEBVISOR_PROBE|$DEBVISOR_IN_GUEST" && exec "$0" -c "$1"',
            sys.executable,
            snippet,
        ],
        modules=(),
        cwd="/",
        env={"DEBVISOR_PROBE": "x y"},
    )
    release, env, imports, prefix = result.stdout.splitlines()
    assert release == kernel().release  # Debian's kernel, not the host's
    assert release != subprocess.run(["uname", "-r"], capture_output=True, text=True, check=True).stdout.strip()
    assert env == "x y|1"  # the caller's environment, quoted safely, plus the harness's marker
    assert imports == "imports appliance msgspec pyroute2"
    assert prefix == f"prefix {sys.prefix}"  # the project's virtualenv
    assert result.stderr == "to stderr\n"
    assert result.returncode == 7
    assert 0 < result.boot_seconds < result.total_seconds


def _in_guest_bond_vlan_bridge() -> dict[str, Any]:
    """Build a bond of two dummies with a VLAN on it, and a VLAN-filtering bridge; read it all back."""
    from pyroute2 import IPRoute

    def info(link: Any) -> tuple[str, Any]:
        linkinfo = link.get("IFLA_LINKINFO")
        return linkinfo.get("IFLA_INFO_KIND"), linkinfo.get("IFLA_INFO_DATA")

    with IPRoute() as ipr:
        for name in ("dv0", "dv1", "dv2"):
            ipr.link("add", ifname=name, kind="dummy")
        ipr.link("add", ifname="bond0", kind="bond", bond_mode=1, bond_miimon=100)  # active-backup
        (bond,) = ipr.link_lookup(ifname="bond0")
        for name in ("dv0", "dv1"):
            ipr.link("set", index=ipr.link_lookup(ifname=name)[0], master=bond)
        ipr.link("add", ifname="bond0.100", kind="vlan", link=bond, vlan_id=100)
        ipr.link("add", ifname="br0", kind="bridge", br_vlan_filtering=1)
        (bridge,) = ipr.link_lookup(ifname="br0")
        (port,) = ipr.link_lookup(ifname="dv2")
        ipr.link("set", index=port, master=bridge)
        for vid in (10, 20):
            ipr.vlan_filter("add", index=port, vlan_info={"vid": vid})
        for name in ("dv0", "dv1", "dv2", "bond0", "bond0.100", "br0"):
            ipr.link("set", index=ipr.link_lookup(ifname=name)[0], state="up")

        links = {link.get("IFLA_IFNAME"): link for link in ipr.get_links()}
        bond_kind, bond_data = info(links["bond0"])
        vlan_kind, vlan_data = info(links["bond0.100"])
        bridge_kind, bridge_data = info(links["br0"])
        port_vlans = sorted(
            entry["vid"]
            for message in ipr.get_vlans(index=port)
            for entry in message.get("IFLA_AF_SPEC").get_attrs("IFLA_BRIDGE_VLAN_INFO")
        )
        return {
            "bond": [bond_kind, bond_data.get("IFLA_BOND_MODE")],
            "bond_ports": sorted(name for name, link in links.items() if link.get("IFLA_MASTER") == bond),
            "vlan": [vlan_kind, vlan_data.get("IFLA_VLAN_ID"), links["bond0.100"].get("IFLA_LINK") == bond],
            "bridge": [bridge_kind, bridge_data.get("IFLA_BR_VLAN_FILTERING")],
            "bridge_ports": sorted(name for name, link in links.items() if link.get("IFLA_MASTER") == bridge),
            "port_vlans": port_vlans,
        }


def test_bond_vlan_and_vlan_aware_bridge_in_debians_kernel() -> None:
    state = call_in_guest(_in_guest_bond_vlan_bridge, modules=("bonding", "8021q", "bridge", "dummy"))
    assert state == {
        "bond": ["bond", 1],  # 1 = active-backup
        "bond_ports": ["dv0", "dv1"],
        "vlan": ["vlan", 100, True],
        "bridge": ["bridge", 1],
        "bridge_ports": ["dv2"],
        "port_vlans": [1, 10, 20],  # VLAN 1 is the default PVID every new port gets
    }


def _in_guest_fail(word: str) -> None:
    print("about to fail")
    raise AssertionError(f"the guest says {word}")


def test_failure_in_the_guest_fails_with_its_traceback() -> None:
    with pytest.raises(GuestError) as failure:
        call_in_guest(_in_guest_fail, "boom", modules=())
    message = str(failure.value)
    assert "_in_guest_fail failed in the guest (exit 1)" in message
    assert "Traceback (most recent call last):" in message
    assert "AssertionError: the guest says boom" in message
    assert "about to fail" in message  # stdout comes along too


def test_a_command_past_its_timeout_is_killed() -> None:
    with pytest.raises(GuestError, match="did not finish in the guest within 6 s"):
        run_in_guest(["sleep", "600"], modules=(), timeout=6)
    # The autouse leak check then proves QEMU was killed and reaped.
