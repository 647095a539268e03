"""The machine's side of PXE enrolment, without a server: when it runs, what it resumes, bad input."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import msgspec
import pytest

from appliance.node.enrol import EnrolError, _Resume, _resumed, enrol, enrol_before_join, read_serial
from appliance.settings import HostPort, ServeSettings, parse_ip


def _settings(tmp_path: Path, **changes: object) -> ServeSettings:
    base = ServeSettings(
        data_dir=tmp_path / "node",
        api=HostPort(parse_ip("127.0.0.1"), 8443),
        gossip=HostPort(parse_ip("127.0.0.1"), 7946),
        name=None,
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def test_no_credential_or_a_join_token_given_means_no_enrolment(tmp_path: Path) -> None:
    plain = _settings(tmp_path)
    assert enrol_before_join(plain) is plain
    joining = _settings(tmp_path, enrol="dve_x", join="dvj_y")
    assert enrol_before_join(joining) is joining  # an explicit join wins, nothing is contacted


def test_a_damaged_credential_is_a_clear_error_before_any_connection() -> None:
    with pytest.raises(EnrolError, match=r"debvisor\.enrol: the enrolment credential is damaged"):
        enrol("dve_bm90LWpzb24", mac=None, serial=None)


def test_a_kept_wait_is_resumed_only_for_the_same_mac(tmp_path: Path) -> None:
    path = tmp_path / "node.enrolment"
    assert _resumed(path, "52:54:00:aa:bb:01") is None  # nothing kept
    kept = _Resume("c1", "52:54:00:aa:bb:01", "poll")
    path.write_bytes(msgspec.json.encode(kept))
    assert _resumed(path, "52:54:00:aa:bb:01") == kept  # a restart, or a reboot with a data disk
    assert _resumed(path, "52:54:00:aa:bb:02") is None  # the disk moved to another machine
    path.write_text("{broken")
    assert _resumed(path, "52:54:00:aa:bb:01") is None


def test_the_dmi_serial_is_read_when_meaningful(tmp_path: Path) -> None:
    serial = tmp_path / "product_serial"
    assert read_serial(serial) is None
    serial.write_text("7XYZ123\n")
    assert read_serial(serial) == "7XYZ123"
    serial.write_text("  \n")
    assert read_serial(serial) is None
