"""systemd's rules for unit names, checked before a name reaches the bus.

A name that systemd would refuse, or that could mean something else on the way (a path, a
glob, an empty instance), is refused here with a one-line reason, so the API can answer 422
without a D-Bus round trip and nothing the caller typed is ever interpreted by systemd as
anything but one unit's name. The rules are those of systemd.unit(5): at most 255
characters, `prefix[@instance].type`, the prefix and instance made of ASCII letters, digits
and `:-_.\\`, a known type suffix; a template (`foo@.service`) only where the caller allows it.
"""

from __future__ import annotations

import re

MAX_LENGTH = 255
UNIT_TYPES = (
    "service",
    "socket",
    "target",
    "device",
    "mount",
    "automount",
    "swap",
    "timer",
    "path",
    "slice",
    "scope",
)
_PART = r"[A-Za-z0-9:_.\\-]+"
_NAME = re.compile(rf"(?P<prefix>{_PART})(?:@(?P<instance>{_PART})?)?\.(?P<type>[a-z]+)")


class UnitNameError(ValueError):
    """A unit name systemd would refuse; the message says why, in one line."""


def unit_type(name: str) -> str:
    """The type suffix of a valid unit name (`service`, `timer`, ...)."""
    return name.rsplit(".", 1)[1]


def check_unit_name(name: str, *, template: bool = False, types: tuple[str, ...] = UNIT_TYPES) -> str:
    """`name` if it is a valid unit name of one of `types`; raises UnitNameError otherwise.

    `template` allows `prefix@.type` (a template, which can be enabled or edited but not
    started); an instance `prefix@instance.type` is always allowed."""
    if not name:
        raise UnitNameError("a unit name cannot be empty")
    if len(name) > MAX_LENGTH:
        raise UnitNameError(f"a unit name is at most {MAX_LENGTH} characters")
    if not name.isascii() or not name.isprintable():
        raise UnitNameError("a unit name is printable ASCII")
    match = _NAME.fullmatch(name)
    if match is None:
        raise UnitNameError(
            f"{name!r} is not a unit name: expected NAME.TYPE, NAME made of letters, digits and :-_.\\ "
            "(with @INSTANCE for a template's instance)"
        )
    kind = match["type"]
    if kind not in types:
        raise UnitNameError(f"{name!r}: the unit type must be one of {', '.join(types)}")
    if match["prefix"] in (".", "..") or match["prefix"].startswith("."):
        raise UnitNameError(f"{name!r}: a unit name does not start with a dot")
    if "@" in name and match["instance"] is None and not template:
        raise UnitNameError(f"{name!r} is a template: name an instance (NAME@INSTANCE.{kind})")
    return name
