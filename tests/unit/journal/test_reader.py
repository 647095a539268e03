"""The reader ends journalctl once it has a page, and never holds an over-long line.

A stand-in `journalctl` (a shell script given as the command) prints an endless journal; a
page must come back at once with `more`, and the process must be gone afterwards.
"""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path

import pytest

from appliance.journal.query import JournalQuery
from appliance.journal.reader import MAX_LINE, Journal, JournalFailed, JournalUnavailable

ENTRY = """printf '{"__CURSOR":"s=1;i=%s","_BOOT_ID":"b","MESSAGE":"line %s"}\\n' $i $i"""


def script(tmp_path: Path, body: str) -> str:
    path = tmp_path / "journalctl"
    path.write_text(f'#!/bin/sh\necho "$@" > {tmp_path}/argv\n{body}\n')
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def test_a_page_of_an_endless_journal_ends_journalctl(tmp_path: Path) -> None:
    endless = script(tmp_path, f"i=0; while :; do i=$((i+1)); {ENTRY}; done")
    journal = Journal(Path("/"), endless)

    async def read() -> list[str]:
        page = await asyncio.wait_for(journal.page(JournalQuery(limit=5)), 10)
        assert page.more
        return [e.message for e in page.entries]

    assert asyncio.run(read()) == [f"line {i}" for i in (5, 4, 3, 2, 1)]  # read backward, answered oldest first
    assert "--reverse" in (tmp_path / "argv").read_text()
    assert not [p for p in os.listdir("/proc") if p.isdigit() and _runs(p, endless)]


def _runs(pid: str, command: str) -> bool:
    try:
        return command.encode() in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def test_an_over_long_line_is_skipped(tmp_path: Path) -> None:
    long = "x" * (MAX_LINE + 10)
    body = f"i=1; {ENTRY}; head -c {len(long)} /dev/zero | tr '\\0' x; echo; i=2; {ENTRY}"
    journal = Journal(Path("/"), script(tmp_path, body))
    page = asyncio.run(journal.page(JournalQuery(after="s=0")))
    assert [e.message for e in page.entries] == ["line 1", "line 2"]
    assert not page.more


def test_journalctl_refusing_and_missing(tmp_path: Path) -> None:
    refusing = Journal(Path("/"), script(tmp_path, "echo 'No such boot ID in journal' >&2; exit 1"))
    with pytest.raises(JournalFailed, match="No such boot"):
        asyncio.run(refusing.page(JournalQuery(boot="-3")))
    nothing = Journal(Path("/"), script(tmp_path, "exit 1"))  # --grep without a match: empty, not an error
    assert asyncio.run(nothing.page(JournalQuery(match="x"))).entries == []
    with pytest.raises(JournalUnavailable):
        asyncio.run(Journal(Path("/"), str(tmp_path / "none")).page(JournalQuery()))
