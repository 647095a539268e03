"""Protected units refuse stop, kill, disable and mask without force; everything else passes."""

from __future__ import annotations

import pytest

from appliance.units.protect import ALWAYS, is_protected, needs_state, refusal
from appliance.units.types import UnitAction


@pytest.mark.parametrize("unit", ["debvisor.service", "dbus.service", "dbus.socket", "systemd-journald.service",
                                  "systemd-udevd.service"])  # fmt: skip
@pytest.mark.parametrize("action", [UnitAction.STOP, UnitAction.KILL, UnitAction.DISABLE, UnitAction.MASK])
def test_the_node_s_own_units_refuse_what_would_cut_it_off(unit: str, action: UnitAction) -> None:
    reason = refusal(unit, action, networkd_active=False)
    assert reason is not None
    assert unit in reason
    assert "force" in reason


@pytest.mark.parametrize("action", [UnitAction.START, UnitAction.RESTART, UnitAction.RELOAD, UnitAction.ENABLE,
                                    UnitAction.UNMASK, UnitAction.RESET_FAILED])  # fmt: skip
def test_restarting_or_enabling_a_protected_unit_is_allowed(action: UnitAction) -> None:
    assert refusal("dbus.service", action, networkd_active=False) is None


def test_networkd_is_protected_only_while_active() -> None:
    assert needs_state("systemd-networkd.service")
    assert not needs_state("dbus.service")
    assert refusal("systemd-networkd.service", UnitAction.STOP, networkd_active=False) is None
    assert refusal("systemd-networkd.service", UnitAction.STOP, networkd_active=True) is not None
    assert is_protected("systemd-networkd.service", networkd_active=True)


def test_other_units_are_not_protected() -> None:
    assert refusal("ssh.service", UnitAction.STOP, networkd_active=True) is None
    assert not is_protected("ssh.service", networkd_active=True)
    assert "debvisor.service" in ALWAYS
