"""Prefixed tokens: a msgspec Struct as `<prefix>` + unpadded base64url JSON.

The join token (`dvj_`, appliance/cluster/join.py) and the PXE enrolment credential (`dve_`,
pxe/credential.py) are both written this way: nothing in them that a shell, iPXE or the
kernel command line splits, and a prefix that says what it is. Here, in the boot-server
library, because the PXE code may not import the appliance; the appliance imports it.
"""

from __future__ import annotations

import base64
from typing import TypeVar

import msgspec

T = TypeVar("T", bound=msgspec.Struct)


def encode(prefix: str, value: msgspec.Struct) -> str:
    """`prefix` + the value's JSON in unpadded base64url."""
    return prefix + base64.urlsafe_b64encode(msgspec.json.encode(value)).decode().rstrip("=")


def decode(text: str, prefix: str, kind: type[T], *, name: str, damaged: str, max_length: int | None = None) -> T:
    """The value in `text`; ValueError with a one-line reason otherwise. `name` says what it is
    ("join token"), `damaged` what the reason adds when it does not decode."""
    text = text.strip()
    if not text.startswith(prefix):
        raise ValueError(f"not a DebVisor {name} (it should start with {prefix})")
    if max_length is not None and len(text) > max_length:
        raise ValueError(f"the {name} is too long")
    body = text[len(prefix) :]
    try:
        return msgspec.json.decode(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)), type=kind)
    except (ValueError, msgspec.DecodeError) as exc:
        raise ValueError(f"the {name} is damaged ({damaged})") from exc
