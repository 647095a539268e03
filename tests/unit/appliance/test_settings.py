"""Listen addresses and node names: what operators may type, and the errors they get."""

from __future__ import annotations

import ipaddress

import pytest

from appliance.settings import SettingsError, default_node_name, parse_host_port, validate_node_name


@pytest.mark.parametrize(
    ("text", "host", "port"),
    [
        ("127.0.0.1:8443", "127.0.0.1", 8443),
        ("0.0.0.0", "0.0.0.0", 9000),
        (":7000", "0.0.0.0", 7000),
        ("[::1]:8443", "::1", 8443),
        ("[::]", "::", 9000),
        ("::1", "::1", 9000),
        ("10.0.0.1:0", "10.0.0.1", 0),
    ],
)
def test_parse_host_port_accepts(text: str, host: str, port: int) -> None:
    parsed = parse_host_port(text, 9000)
    assert parsed.host == ipaddress.ip_address(host)
    assert parsed.port == port


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("example.org:80", "not an IP address"),
        ("127.0.0.1:99999", "port must be"),
        ("127.0.0.1:http", "port must be"),
        ("[::1:8443", "missing ']'"),
        ("[::1]8443", "expected ':PORT'"),
    ],
)
def test_parse_host_port_rejects_with_reason(text: str, fragment: str) -> None:
    with pytest.raises(SettingsError, match=fragment):
        parse_host_port(text, 9000)


def test_host_port_prints_ipv6_in_brackets() -> None:
    assert str(parse_host_port("[::1]:8443", 1)) == "[::1]:8443"
    assert str(parse_host_port("127.0.0.1:8443", 1)) == "127.0.0.1:8443"


@pytest.mark.parametrize("name", ["n1", "node-01", "a", "x" * 63])
def test_valid_node_names(name: str) -> None:
    assert validate_node_name(name) == name


@pytest.mark.parametrize("name", ["", "-a", "a-", "Node1", "a_b", "a.b", "x" * 64, "nöde"])
def test_invalid_node_names(name: str) -> None:
    with pytest.raises(SettingsError, match="node name"):
        validate_node_name(name)


def test_default_node_name_is_valid() -> None:
    assert validate_node_name(default_node_name())
