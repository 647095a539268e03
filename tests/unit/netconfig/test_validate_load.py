"""Loading and validation: every error names the field path."""

from __future__ import annotations

from pathlib import Path

import pytest

from netconfig.load import dumps, load, loads
from netconfig.model import NetworkConfig
from netconfig.validate import ConfigError, validate

EXAMPLE = Path(__file__).parents[3] / "docs" / "examples" / "network.yaml"


def errors_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        loads(text)
    return info.value.errors


def test_the_documented_example_loads_and_validates() -> None:
    config = load(EXAMPLE)
    validate(config)
    assert {link.name for link in config.links()} >= {"bond0", "br0", "mgmt0", "vx100"}
    assert loads(dumps(config)) == config
    assert loads(dumps(config, json=True), json=True) == config


def test_ranges_are_reported_with_their_path() -> None:
    errors = errors_of(
        """
nics: [{name: eth0, mac: "02:00:00:00:00:01"}]
vlans:
  - {name: v1, link: eth0, id: 10}
  - {name: v2, link: eth0, id: 20}
  - {name: v3, link: eth0, id: 5000}
vxlans: [{name: vx0, vni: 16777216}]
"""
    )
    assert "$.vlans[2].id: 5000 is outside 1\u20134094" in errors
    assert "$.vxlans[0].vni: 16777216 is outside 1\u201316777215" in errors


def test_decode_errors_name_the_path() -> None:
    assert errors_of("vlans: [{name: v1, link: eth0, id: ten}]") == ["$.vlans[0].id: Expected `int`, got `str`"]
    assert errors_of("bridges: [{name: br0, colour: red}]")[0].startswith("$.bridges[0]: Object contains unknown field")
    assert errors_of("{nics: [")[0].startswith("$: not valid YAML")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("vlans: [{name: v1, link: nope, id: 1}]", "$.vlans[0].link: link 'nope' is not defined"),
        (
            'nics: [{name: a, mac: "02:00:00:00:00:01"}, {name: a, mac: "02:00:00:00:00:02"}]',
            "$.nics[1].name: 'a' is already defined at $.nics[0]",
        ),
        (
            'nics: [{name: a, mac: "02:00:00:00:00:01"}]\n'
            "vlans: [{name: v1, link: a, id: 7}, {name: v2, link: a, id: 7}]",
            "$.vlans[1].id: VLAN 7 on 'a' is already defined at $.vlans[0]",
        ),
        (
            'nics: [{name: a, mac: "02:00:00:00:00:01", mtu: 1400}]\nvlans: [{name: v1, link: a, id: 7, mtu: 1500}]',
            "$.nics[0].mtu: 1400 is smaller than the 1500 that 'v1' on top of it needs",
        ),
        (
            'nics: [{name: a, mac: "02:00:00:00:00:01", mtu: 1500}]\n'
            "vxlans: [{name: vx, vni: 1, dev: a, mtu: 1500, peers: [10.0.0.2]}]",
            "$.nics[0].mtu: 1500 is smaller than the 1550 that 'vx' on top of it needs",
        ),
        (
            "bridges: [{name: br0, ports: [{name: v1}]}]\nvlans: [{name: v1, link: br0, id: 3}]",
            "links depend on each other in a cycle",
        ),
        ('nics: [{name: a, mac: "zz"}]', "$.nics[0].mac: 'zz' is not a MAC address"),
        ('nics: [{name: a, mac: "02:00:00:00:00:01", addresses: [10.0.0.1]}]', "$.nics[0].addresses[0]:"),
        (
            'nics: [{name: a, mac: "02:00:00:00:00:01", up: false, routes: [{to: default, via: 10.0.0.1}]}]',
            "$.nics[0].up: a link that is down cannot keep routes",
        ),
        (
            'nics: [{name: a, mac: "02:00:00:00:00:01"}]\nbonds: [{name: b, mode: balance-rr, interfaces: [a], '
            "lacp_rate: fast}]",
            "$.bonds[0].lacp_rate: only an 802.3ad bond has a LACP rate",
        ),
        ("bridges: [{name: br0, vlans: [5]}]", "$.bridges[0].vlans: VLAN lists need a bridge with vlan_filtering"),
        (
            "vxlans: [{name: vx, vni: 5, group: 239.1.1.1, peers: [10.0.0.1]}]",
            "$.vxlans[0].group: use either a multicast group or unicast peers",
        ),
        ("bridges: [{name: this-name-is-too-long}]", "$.bridges[0].name:"),
    ],
)
def test_mistakes_are_reported_with_their_path(text: str, expected: str) -> None:
    assert any(expected in e for e in errors_of(text)), errors_of(text)


def test_an_empty_file_is_an_empty_configuration() -> None:
    assert loads("") == NetworkConfig()


def test_load_prefixes_the_file_name(tmp_path: Path) -> None:
    path = tmp_path / "net.json"
    path.write_text('{"vlans": [{"name": "v", "link": "x", "id": 0}]}')
    with pytest.raises(ConfigError, match=r"net\.json: \$\.vlans\[0\]\.id: 0 is outside"):
        load(path)
