"""A journal query: every filter checked, then turned into journalctl's arguments.

What a caller types never reaches journalctl as anything but the value of one option it
names itself: each filter is parsed into a typed value here (a unit name by systemd's rules,
a cursor by its `k=hex;...` shape, a time into seconds since the epoch, a priority into 0-7,
a boot into an offset or a 128-bit id, a text match into a literal), and only that value is
formatted back, always as `--option=value` (so even a value starting with `-` is never read
as an option). A bad filter raises `QueryError` naming the field, which the API answers as 422.

The text match is a case-insensitive literal: it is escaped for journalctl's PCRE2 `--grep`,
so a caller cannot hand the node an expensive regular expression.

Deliberately left out: arbitrary `FIELD=value` matches (a field name is one more thing to
validate, and the filters here cover what the UI and CLI ask for) and several units at once.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path

import msgspec

from appliance.units.names import UnitNameError, check_unit_name

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
MAX_MATCH = 200
MAX_CURSOR = 512
PRIORITIES = ("emerg", "alert", "crit", "err", "warning", "notice", "info", "debug")
_CURSOR = re.compile(r"[a-z]=[0-9a-f]{1,64}(;[a-z]=[0-9a-f]{1,64}){0,15}")
_BOOT_ID = re.compile(r"[0-9a-f]{32}")
_IDENTIFIER = re.compile(r"[A-Za-z0-9_.@:+-]{1,64}")
_RELATIVE = re.compile(r"-(\d{1,9})(s|m|h|d)")
FILTERS = frozenset({"unit", "identifier", "since", "until", "priority", "boot", "match", "after", "before", "limit"})
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
# The fields an entry shows; journalctl adds the cursor, the timestamps and the boot id.
OUTPUT_FIELDS = (
    "MESSAGE",
    "PRIORITY",
    "_SYSTEMD_UNIT",
    "UNIT",
    "SYSLOG_IDENTIFIER",
    "_COMM",
    "_PID",
    "_HOSTNAME",
    "_TRANSPORT",
)


class QueryError(ValueError):
    """A filter journalctl must never see; `field` names it, the message says why."""

    def __init__(self, field: str, text: str) -> None:
        super().__init__(f"{field}: {text}")
        self.field = field
        self.text = text


class JournalQuery(msgspec.Struct, frozen=True, kw_only=True):
    """Checked filters of one journal read (see `parse`)."""

    unit: str | None = None
    identifier: str | None = None
    since: float | None = None  # seconds since the epoch
    until: float | None = None
    priority: int | None = None  # this priority and the more important ones (0 emerg .. 7 debug)
    boot: str | None = None  # "0", "-1", ... or a boot id
    match: str | None = None  # case-insensitive literal text in MESSAGE
    after: str | None = None  # a cursor: entries after it (oldest first)
    before: str | None = None  # a cursor: entries before it
    limit: int = DEFAULT_LIMIT


def parse_time(field: str, text: str, now: Callable[[], float] = time.time) -> float:
    """Seconds since the epoch from a number, an ISO 8601 time (UTC unless it says otherwise)
    or a relative `-30m` / `-2h` / `-1d` / `-90s`."""
    text = text.strip()
    relative = _RELATIVE.fullmatch(text)
    if relative is not None:
        return now() - int(relative[1]) * _UNIT_SECONDS[relative[2]]
    try:
        value = float(text)
    except ValueError:
        pass
    else:
        if not 0 <= value < 1e11:
            raise QueryError(field, "seconds since the epoch must be between 0 and 1e11")
        return value
    try:
        stamp = datetime.fromisoformat(text)
    except ValueError:
        raise QueryError(
            field, f"{text[:40]!r} is not a time: give an ISO 8601 time, seconds since the epoch, or -30m/-2h/-1d"
        ) from None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)
    return stamp.timestamp()


def parse_priority(text: str) -> int:
    text = text.strip().lower()
    if text.isdigit() and int(text) < len(PRIORITIES):
        return int(text)
    if text in PRIORITIES:
        return PRIORITIES.index(text)
    raise QueryError("priority", f"{text[:20]!r} is not a priority: 0-7 or one of {', '.join(PRIORITIES)}")


def parse_boot(text: str) -> str:
    text = text.strip().lower()
    if text.lstrip("-").isdigit() and len(text) <= 6 and int(text) <= 0:
        return str(int(text))
    if _BOOT_ID.fullmatch(text.replace("-", "")):
        return text.replace("-", "")
    raise QueryError("boot", f"{text[:40]!r} is not a boot: 0 (this one), -1, -2 ... or a 32-digit boot id")


def check_cursor(field: str, text: str) -> str:
    if len(text) > MAX_CURSOR or not _CURSOR.fullmatch(text):
        raise QueryError(field, "not a journal cursor (as the `cursor` of an entry: s=...;i=...;b=...)")
    return text


def _text_filters(params: Mapping[str, str], values: dict[str, object]) -> None:
    if params.get("unit"):
        try:
            values["unit"] = check_unit_name(params["unit"])
        except UnitNameError as exc:
            raise QueryError("unit", str(exc)) from None
    if params.get("identifier"):
        if not _IDENTIFIER.fullmatch(params["identifier"]):
            raise QueryError("identifier", "a syslog identifier is 1-64 letters, digits and _.@:+-")
        values["identifier"] = params["identifier"]
    if params.get("match"):
        text = params["match"]
        if len(text) > MAX_MATCH or not text.isprintable():
            raise QueryError("match", f"a text match is at most {MAX_MATCH} printable characters")
        values["match"] = text


def _time_filters(params: Mapping[str, str], values: dict[str, object], now: Callable[[], float]) -> None:
    since = parse_time("since", params["since"], now) if params.get("since") else None
    until = parse_time("until", params["until"], now) if params.get("until") else None
    if since is not None and until is not None and since > until:
        raise QueryError("until", "until is before since")
    values.update({k: v for k, v in (("since", since), ("until", until)) if v is not None})
    if params.get("priority"):
        values["priority"] = parse_priority(params["priority"])
    if params.get("boot"):
        values["boot"] = parse_boot(params["boot"])


def _paging(params: Mapping[str, str], values: dict[str, object]) -> None:
    for field in ("after", "before"):
        if params.get(field):
            values[field] = check_cursor(field, params[field])
    if "after" in values and "before" in values:
        raise QueryError("before", "give after or before, not both")
    limit = params.get("limit") or params.get("lines")
    if limit:
        if not limit.isdigit() or not 1 <= int(limit) <= MAX_LIMIT:
            raise QueryError("limit", f"limit is a number from 1 to {MAX_LIMIT}")
        values["limit"] = int(limit)


def parse(params: Mapping[str, str], now: Callable[[], float] = time.time) -> JournalQuery:
    """A checked query from request parameters (unknown ones are refused, so a typo is not
    silently ignored); raises QueryError on the first bad one."""
    unknown = sorted(set(params) - FILTERS - {"lines"})
    if unknown:
        raise QueryError(unknown[0], f"unknown filter; known: {', '.join(sorted(FILTERS))}")
    values: dict[str, object] = {}
    _text_filters(params, values)
    _time_filters(params, values, now)
    _paging(params, values)
    return JournalQuery(**values)  # type: ignore[arg-type]


def pcre_literal(text: str) -> str:
    """`text` as a PCRE2 pattern matching exactly it: every ASCII character that is not a letter
    or digit gets a backslash (before a non-alphanumeric it always means the character itself);
    other characters have no meaning in a pattern and stay as they are."""
    return "".join(f"\\{c}" if c.isascii() and not c.isalnum() else c for c in text)


def _stamp(seconds: float) -> str:
    return f"@{seconds:.6f}".rstrip("0").rstrip(".")


def filter_args(query: JournalQuery) -> list[str]:
    """journalctl options for the query's filters (not its paging)."""
    args: list[str] = []
    if query.unit is not None:
        args.append(f"--unit={query.unit}")
    if query.identifier is not None:
        args.append(f"--identifier={query.identifier}")
    if query.since is not None:
        args.append(f"--since={_stamp(query.since)}")
    if query.until is not None:
        args.append(f"--until={_stamp(query.until)}")
    if query.priority is not None:
        args.append(f"--priority={query.priority}")
    if query.boot is not None:
        args.append(f"--boot={query.boot}")
    if query.match is not None:
        args += [f"--grep={pcre_literal(query.match)}", "--case-sensitive=false"]
    return args


def base_args(journalctl: str, root: Path) -> list[str]:
    """journalctl reading the managed machine's journal (under `root`) as JSON: only the fields
    an entry shows, each whole (`--all`; the reader bounds a line's length), no pager."""
    args = [journalctl, "--output=json", f"--output-fields={','.join(OUTPUT_FIELDS)}", "--all", "--no-pager", "--quiet"]
    if root != Path("/"):
        args.append(f"--root={root}")
    return args


def page_args(journalctl: str, root: Path, query: JournalQuery) -> list[str]:
    """The command for one page: forward from `after`, backward from `before` (the cursor's own
    entry comes first and is dropped by the reader), or backward from the newest entry."""
    args = base_args(journalctl, root) + filter_args(query)
    if query.after is not None:
        args.append(f"--after-cursor={query.after}")
    elif query.before is not None:
        args += [f"--cursor={query.before}", "--reverse"]
    else:
        args.append("--reverse")
    return args


def follow_args(journalctl: str, root: Path, query: JournalQuery) -> list[str]:
    """The command for a followed stream: from `after` (or the last `limit` entries), then on."""
    args = base_args(journalctl, root) + filter_args(query) + ["--follow"]
    if query.after is not None:
        args.append(f"--after-cursor={query.after}")
    else:
        args.append(f"--lines={query.limit}")
    return args
