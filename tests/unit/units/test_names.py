"""Unit names are checked against systemd's rules before they reach the bus."""

from __future__ import annotations

import pytest

from appliance.units.names import MAX_LENGTH, UnitNameError, check_unit_name, unit_type


@pytest.mark.parametrize(
    "name",
    ["sshd.service", "getty@tty1.service", "dev-disk-by\\x2duuid-1.device", "a:b_c-d.e.timer", "-.mount", "x.slice"],
)
def test_valid_names_pass(name: str) -> None:
    assert check_unit_name(name) == name


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("", "empty"),
        ("sshd", "not a unit name"),
        ("../etc/passwd.service", "not a unit name"),
        ("a/b.service", "not a unit name"),
        ("*.service", "not a unit name"),
        ("a b.service", "not a unit name"),
        ("sshd.exe", "unit type must be one of"),
        (".hidden.service", "does not start with a dot"),
        ("getty@.service", "is a template"),
        ("caf\u00e9.service", "printable ASCII"),
        ("a\n.service", "printable ASCII"),
        ("x" * MAX_LENGTH + ".service", f"at most {MAX_LENGTH}"),
    ],
)
def test_bad_names_are_refused_with_the_reason(name: str, reason: str) -> None:
    with pytest.raises(UnitNameError, match=reason):
        check_unit_name(name)


def test_templates_only_where_allowed_and_types_narrowed() -> None:
    assert check_unit_name("getty@.service", template=True) == "getty@.service"
    assert unit_type("backup.timer") == "timer"
    with pytest.raises(UnitNameError, match="one of service, timer"):
        check_unit_name("x.socket", types=("service", "timer"))
