"""Kernel command line settings: what a PXE server or boot menu may pass, and the errors they get."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from appliance.bootparams import (
    BootParams,
    BootParamsError,
    StaticAddress,
    networkd_unit,
    parse_cmdline,
    read_boot_params,
    split_cmdline,
)

DEBIAN = "BOOT_IMAGE=/live/vmlinuz boot=live live-media-path=/live quiet console=ttyS0,115200n8"


def test_split_cmdline_groups_double_quotes_like_the_kernel() -> None:
    assert split_cmdline('  a=1 b="x y"  "c d" e=\n') == ["a=1", "b=x y", "c d", "e="]
    assert split_cmdline("") == []


def test_split_cmdline_rejects_an_unbalanced_quote() -> None:
    with pytest.raises(BootParamsError, match="unbalanced"):
        split_cmdline('a="b')


def test_a_plain_debian_cmdline_sets_nothing() -> None:
    assert parse_cmdline(DEBIAN) == BootParams()


def test_every_key_parses() -> None:
    params = parse_cmdline(
        f"{DEBIAN} debvisor.name=rack1-n3 debvisor.join=dvj1.abc_DEF-123 debvisor.api=10.0.0.5:9443 "
        "debvisor.gossip=[::]:7000 debvisor.advertise=10.0.0.5 debvisor.ip=10.0.0.5/24,10.0.0.1 "
        "debvisor.data=ram debvisor.pxe-http=10.0.0.5:8081\n"
    )
    assert params.name == "rack1-n3"
    assert params.join == "dvj1.abc_DEF-123"
    assert params.api is not None
    assert str(params.api) == "10.0.0.5:9443"
    assert params.gossip is not None
    assert str(params.gossip) == "[::]:7000"
    assert params.advertise == ipaddress.ip_address("10.0.0.5")
    assert params.ip == StaticAddress(ipaddress.ip_interface("10.0.0.5/24"), ipaddress.ip_address("10.0.0.1"))
    assert params.data == "ram"
    assert params.pxe_http is not None
    assert str(params.pxe_http) == "10.0.0.5:8081"
    assert set(params.keys) == {"name", "join", "api", "gossip", "advertise", "ip", "data", "pxe-http"}


def test_the_last_occurrence_wins_as_for_kernel_parameters() -> None:
    assert parse_cmdline("debvisor.name=a debvisor.name=b").name == "b"


def test_ip_dhcp_and_defaults() -> None:
    assert parse_cmdline("debvisor.ip=dhcp").ip == "dhcp"
    api_only = parse_cmdline("debvisor.api=127.0.0.1")
    assert api_only.api is not None
    assert api_only.api.port == 8443
    pxe_http = parse_cmdline("debvisor.pxe-http=10.0.0.5").pxe_http
    assert pxe_http is not None
    assert pxe_http.port == 8080


@pytest.mark.parametrize(
    ("cmdline", "fragment"),
    [
        ("debvisor.nmae=x", "unknown key debvisor.nmae"),
        ("debvisor.name", "debvisor.name needs a value"),
        ("debvisor.join=", "debvisor.join needs a value"),
        ("debvisor.name=Not_A_Label", "node name 'Not_A_Label' is invalid"),
        ("debvisor.api=example.org:8443", "is not an IP address"),
        ("debvisor.api=10.0.0.1:http", "port must be"),
        ("debvisor.advertise=nowhere", "is not an IP address"),
        ("debvisor.pxe-http=boot.example:8080", "debvisor.pxe-http: 'boot.example:8080'"),
        ("debvisor.ip=10.0.0.5", "use 'dhcp' or ADDRESS/PREFIX"),
        ("debvisor.ip=10.0.0.500/24", "is not an ADDRESS/PREFIX"),
        ("debvisor.ip=10.0.0.5/24,gw", "gateway 'gw' is not an IP address"),
        ("debvisor.ip=10.0.0.5/24,fe80::1", "not of the address's IP version"),
        ("debvisor.join=" + "x" * 5000, "not a join token"),
    ],
)
def test_bad_values_are_errors_that_name_the_key(cmdline: str, fragment: str) -> None:
    with pytest.raises(BootParamsError) as raised:
        parse_cmdline(f"{DEBIAN} {cmdline}")
    assert fragment in str(raised.value)
    assert "debvisor." in str(raised.value) or "node name" in str(raised.value)


def test_read_boot_params_reads_a_file_and_explains_a_missing_one(tmp_path: Path) -> None:
    cmdline = tmp_path / "cmdline"
    cmdline.write_text(f"{DEBIAN} debvisor.name=n1\n")
    assert read_boot_params(cmdline).name == "n1"
    with pytest.raises(BootParamsError, match="cannot read the kernel command line"):
        read_boot_params(tmp_path / "absent")


def test_bootif_names_the_boot_port_and_a_malformed_one_is_ignored() -> None:
    assert parse_cmdline(f"{DEBIAN} BOOTIF=01-52-54-00-AB-cd-0f").boot_mac == "52:54:00:ab:cd:0f"
    # The boot loader's parameter, not ours: never an error, and not one of our keys.
    assert parse_cmdline("BOOTIF=52:54:00:ab:cd:0f") == BootParams()
    assert parse_cmdline("BOOTIF=01-52-54-00-ab-cd") == BootParams()
    assert parse_cmdline("BOOTIF=01-52-54-00-ab-cd-0f BOOTIF=garbage").boot_mac is None  # the last one wins
    assert parse_cmdline("BOOTIF=01-52-54-00-ab-cd-0f").keys == ()


def test_networkd_unit_matches_one_port_by_mac() -> None:
    static = parse_cmdline("debvisor.ip=192.0.2.7/24,192.0.2.1").ip
    assert isinstance(static, StaticAddress)
    unit = networkd_unit(static, "52:54:00:ab:cd:0f")
    assert "[Match]\nMACAddress=52:54:00:ab:cd:0f\nType=ether\n" in unit
    assert "\n[Network]\nAddress=192.0.2.7/24\nGateway=192.0.2.1\n" in unit
    assert "DHCP" not in unit


def test_networkd_unit_without_gateway_and_for_ipv6() -> None:
    unit = networkd_unit(StaticAddress(ipaddress.ip_interface("fd00:5::7/64")), "52:54:00:ab:cd:0f")
    assert "Address=fd00:5::7/64\n" in unit
    assert "Gateway" not in unit


def test_enlist_takes_only_the_boot_servers_plain_http_enlistment_url() -> None:
    for url in ("http://10.0.0.2:8080/pxe/enlist", "http://boot.example/pxe/enlist", "http://[fd00::2]:80/pxe/enlist"):
        assert parse_cmdline(f"debvisor.enlist={url}").enlist == url
    for bad in (
        "https://10.0.0.2/pxe/enlist",  # the listener is plain HTTP
        "http://10.0.0.2/api/v1/nodes",  # only the enlistment path
        "http://10.0.0.2/pxe/enlist?x=1",
        "http://user@10.0.0.2/pxe/enlist",
        "http://10.0.0.2:70000/pxe/enlist",
        "http://[zz::1]/pxe/enlist",
        "file:///etc/passwd",
    ):
        with pytest.raises(BootParamsError, match=r"debvisor\.enlist"):
            parse_cmdline(f"debvisor.enlist={bad}")
