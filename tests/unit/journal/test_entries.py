"""journalctl's JSON lines as the API's entries: text always, whatever the journal holds."""

from __future__ import annotations

import msgspec

from appliance.journal.entries import MAX_MESSAGE, parse_entry, text

BASE = {
    "__CURSOR": "s=1;i=2",
    "__REALTIME_TIMESTAMP": "1796688556363761",
    "_BOOT_ID": "a5aec7fa0b3d484f95f282c5a6c197e4",
}


def line(**fields: object) -> bytes:
    return msgspec.json.encode(BASE | fields)


def test_an_entry_with_its_fields() -> None:
    entry = parse_entry(
        line(MESSAGE="hello", PRIORITY="4", _SYSTEMD_UNIT="a.service", SYSLOG_IDENTIFIER="a", _PID="12",
             _HOSTNAME="h", _TRANSPORT="stdout")
    )  # fmt: skip
    assert entry is not None
    assert (entry.cursor, entry.time, entry.message, entry.priority) == ("s=1;i=2", 1796688556.363761, "hello", 4)
    assert (entry.unit, entry.identifier, entry.pid, entry.hostname) == ("a.service", "a", 12, "h")
    assert not entry.truncated


def test_bytes_that_are_not_utf8_become_text() -> None:
    entry = parse_entry(line(MESSAGE=list(b"odd \xff\xfe bytes \xc3\xa9")))
    assert entry is not None
    assert entry.message == "odd \ufffd\ufffd bytes é"


def test_repeated_null_and_missing_fields() -> None:
    assert text(["first", "second"]) == "second"
    assert text([list(b"x"), None]) == "x"
    assert text(None) is None
    entry = parse_entry(line(MESSAGE=None, UNIT="b.service", _COMM="sh", PRIORITY="loud"))
    assert entry is not None
    assert (entry.message, entry.unit, entry.identifier, entry.priority) == ("", "b.service", "sh", None)


def test_a_long_message_is_cut_and_marked() -> None:
    entry = parse_entry(line(MESSAGE="x" * (MAX_MESSAGE + 10)))
    assert entry is not None
    assert len(entry.message) == MAX_MESSAGE
    assert entry.truncated


def test_lines_that_are_not_entries_are_skipped() -> None:
    assert parse_entry(b"-- No entries --") is None
    assert parse_entry(b'{"MESSAGE": "no cursor"}') is None
    assert parse_entry(b"[1, 2]") is None
