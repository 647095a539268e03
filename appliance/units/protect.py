"""The units a node cannot live without, and the actions on them that need `force`.

Stopping the appliance itself, D-Bus (every call after it fails), the journal (logging stops)
or udev (devices stop appearing) through the API would cut the operator off from the node
they are fixing; so would systemd-networkd where it runs the node's network. Those units refuse
stop, kill, disable and mask with 409 unless an admin passes `force`. Restarting them stays
allowed: it is how one recovers them. systemd-networkd counts only while it is active (a node
whose network another tool runs may stop or mask it freely).

Pure: the caller says whether systemd-networkd is active.
"""

from __future__ import annotations

from appliance.units.types import UnitAction

ALWAYS = frozenset(
    {
        "debvisor.service",
        "dbus.service",
        "dbus.socket",
        "systemd-journald.service",
        "systemd-journald.socket",
        "systemd-journald-dev-log.socket",
        "systemd-udevd.service",
        "systemd-udevd-control.socket",
        "systemd-udevd-kernel.socket",
    }
)
WHEN_ACTIVE = frozenset({"systemd-networkd.service", "systemd-networkd.socket"})
NETWORKD = "systemd-networkd.service"
REFUSED = frozenset({UnitAction.STOP, UnitAction.KILL, UnitAction.DISABLE, UnitAction.MASK})


def needs_state(name: str) -> bool:
    """Whether `is_protected(name, ...)` depends on systemd-networkd being active."""
    return name in WHEN_ACTIVE


def is_protected(name: str, *, networkd_active: bool) -> bool:
    return name in ALWAYS or (networkd_active and name in WHEN_ACTIVE)


def refusal(name: str, action: UnitAction, *, networkd_active: bool) -> str | None:
    """Why `action` on `name` needs force, or None when it does not."""
    if action not in REFUSED or not is_protected(name, networkd_active=networkd_active):
        return None
    why = "the node runs its network with it" if name in WHEN_ACTIVE else "the node cannot work without it"
    return f"{name} is protected ({why}): {action} it only with force=true, as an admin"
