"""One line of `journalctl --output=json` turned into the API's entry, its message as text.

journalctl writes a field that is not valid UTF-8 (or holds control characters) as an array
of byte values, and a field set several times in one entry as an array of its values. The API
always answers text: bytes are decoded as UTF-8 with U+FFFD for what is not, and of a
repeated field the last value is kept (as journalctl's short output shows). A message longer
than `MAX_MESSAGE` characters is cut there and marked `truncated`.
"""

from __future__ import annotations

from typing import Any

import msgspec

MAX_MESSAGE = 64 * 1024


class JournalEntry(msgspec.Struct, frozen=True, kw_only=True):
    """One journal entry as the API returns it."""

    cursor: str  # pass as `after` or `before` to page from here
    time: float  # wall-clock seconds since the epoch (microsecond precision)
    boot: str  # the boot id
    message: str
    priority: int | None = None  # 0 emerg .. 7 debug
    unit: str | None = None  # the systemd unit that logged it, or that it is about
    identifier: str | None = None  # syslog identifier, or the command's name
    pid: int | None = None
    hostname: str | None = None
    transport: str | None = None  # journal, stdout, syslog, kernel, audit, driver
    truncated: bool = False  # the message was longer than the API returns


_decoder = msgspec.json.Decoder(dict[str, Any])


def text(value: Any) -> str | None:
    """A journal field's value as text (see the module docstring); None when absent or null
    (journalctl gives null for a field it will not print)."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        if value and all(isinstance(b, int) for b in value):
            return bytes(b & 0xFF for b in value).decode("utf-8", errors="replace")
        values = [text(v) for v in value]
        present = [v for v in values if v is not None]
        return present[-1] if present else None
    return str(value)


def _int(value: Any) -> int | None:
    raw = text(value)
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        return None


def parse_entry(line: bytes) -> JournalEntry | None:
    """The entry a JSON line holds; None for a line that is not one (journalctl's notes)."""
    try:
        fields = _decoder.decode(line)
    except msgspec.DecodeError:
        return None
    cursor = fields.get("__CURSOR")
    if not isinstance(cursor, str):
        return None
    message = text(fields.get("MESSAGE")) or ""
    truncated = len(message) > MAX_MESSAGE
    realtime = _int(fields.get("__REALTIME_TIMESTAMP")) or 0
    return JournalEntry(
        cursor=cursor,
        time=realtime / 1e6,
        boot=text(fields.get("_BOOT_ID")) or "",
        message=message[:MAX_MESSAGE] if truncated else message,
        priority=_int(fields.get("PRIORITY")),
        unit=text(fields.get("_SYSTEMD_UNIT")) or text(fields.get("UNIT")),
        identifier=text(fields.get("SYSLOG_IDENTIFIER")) or text(fields.get("_COMM")),
        pid=_int(fields.get("_PID")),
        hostname=text(fields.get("_HOSTNAME")),
        transport=text(fields.get("_TRANSPORT")),
        truncated=truncated,
    )
