"""`debvisor pxe set`: the merge-patch body it sends holds only what the command line names."""

from __future__ import annotations

import pytest

from appliance import cli
from appliance.cli_client import machine_patch
from appliance.cli_connect import ClientError


def patch_of(*argv: str) -> dict[str, object]:
    return machine_patch(cli._build_parser().parse_args(["pxe", "set", "n1", "52:54:00:aa:bb:01", *argv]))


def test_set_sends_only_the_fields_given() -> None:
    assert patch_of("--extra", "systemd.unit=rescue.target") == {"extra": ["systemd.unit=rescue.target"]}
    assert patch_of("--extra", "quiet", "--extra", "nomodeset", "--remote", "lab") == {"extra": ["quiet", "nomodeset"]}
    assert patch_of("--name", "rack1-n1", "--ip", "10.9.0.120") == {"name": "rack1-n1", "ip": "10.9.0.120"}


def test_clear_sends_null() -> None:
    assert patch_of("--clear", "extra", "--clear", "ip") == {"extra": None, "ip": None}


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [((), "at least one"), (("--ip", "10.9.0.1", "--clear", "ip"), "contradict")],
)
def test_an_empty_or_contradictory_set_is_refused(argv: tuple[str, ...], fragment: str) -> None:
    with pytest.raises(ClientError, match=fragment):
        patch_of(*argv)
