"""Journal filters: what a caller sends becomes journalctl options only through checked values."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from appliance.journal.query import (
    JournalQuery,
    QueryError,
    filter_args,
    follow_args,
    page_args,
    parse,
    parse_time,
    pcre_literal,
)

NOW = 1_800_000_000.0
CURSOR = "s=30d8ceb6d9cf448b80832ea28104f09e;i=3e;b=a5aec7fa0b3d484f95f282c5a6c197e4;m=2b93ae6ca;t=66214272ced34"


def test_every_filter_becomes_one_option_with_its_value() -> None:
    query = parse(
        {"unit": "nginx.service", "identifier": "jprobe", "since": "-1h", "until": "2027-01-15T08:00:00Z",
         "priority": "warning", "boot": "-1", "match": "a.b (c)", "limit": "20"},
        now=lambda: NOW,
    )  # fmt: skip
    assert query == JournalQuery(
        unit="nginx.service", identifier="jprobe", since=NOW - 3600,
        until=datetime(2027, 1, 15, 8, tzinfo=UTC).timestamp(), priority=4, boot="-1", match="a.b (c)", limit=20,
    )  # fmt: skip
    assert filter_args(query) == [
        "--unit=nginx.service",
        "--identifier=jprobe",
        "--since=@1799996400",
        "--until=@1800000000",
        "--priority=4",
        "--boot=-1",
        "--grep=a\\.b\\ \\(c\\)",
        "--case-sensitive=false",
    ]


def test_paging_reads_in_the_direction_it_needs() -> None:
    root = Path("/proc/42/root")
    newest = page_args("/usr/bin/journalctl", root, JournalQuery())
    assert newest[:2] == ["/usr/bin/journalctl", "--output=json"]
    assert "--root=/proc/42/root" in newest
    assert newest[-1] == "--reverse"
    assert page_args("journalctl", root, JournalQuery(after=CURSOR))[-1] == f"--after-cursor={CURSOR}"
    assert page_args("journalctl", root, JournalQuery(before=CURSOR))[-2:] == [f"--cursor={CURSOR}", "--reverse"]
    assert "--root=/" not in " ".join(page_args("journalctl", Path("/"), JournalQuery()))
    assert follow_args("journalctl", root, JournalQuery(limit=5))[-2:] == ["--follow", "--lines=5"]
    assert follow_args("journalctl", root, JournalQuery(after=CURSOR))[-1] == f"--after-cursor={CURSOR}"


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"unit": "--root=/"}, "unit"),
        ({"unit": "a/b.service"}, "unit"),
        ({"unit": "x@.service"}, "unit"),
        ({"identifier": "-o json"}, "identifier"),
        ({"since": "yesterday"}, "since"),
        ({"since": "-5y"}, "since"),
        ({"until": "-1"}, "until"),
        ({"since": "2027-01-02", "until": "2027-01-01"}, "until"),
        ({"priority": "8"}, "priority"),
        ({"priority": "-1"}, "priority"),
        ({"boot": "1"}, "boot"),
        ({"boot": "--list-boots"}, "boot"),
        ({"boot": "abc"}, "boot"),
        ({"match": "x" * 201}, "match"),
        ({"match": "a\nb"}, "match"),
        ({"after": "s=1;--root"}, "after"),
        ({"before": "x" * 600}, "before"),
        ({"after": CURSOR, "before": CURSOR}, "before"),
        ({"limit": "0"}, "limit"),
        ({"limit": "1001"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"output": "cat"}, "output"),
    ],
)
def test_bad_filters_are_refused_naming_the_field(params: dict[str, str], field: str) -> None:
    with pytest.raises(QueryError) as refused:
        parse(params, now=lambda: NOW)
    assert refused.value.field == field


def test_times_and_boots_in_their_accepted_forms() -> None:
    assert parse_time("since", "1700000000.5") == 1700000000.5
    assert parse_time("since", "2026-12-08T10:00:00+01:00") == datetime(2026, 12, 8, 9, tzinfo=UTC).timestamp()
    assert parse_time("since", "-90s", now=lambda: NOW) == NOW - 90
    assert parse_time("since", "-2d", now=lambda: NOW) == NOW - 2 * 86400
    assert parse({"boot": "0"}).boot == "0"
    assert parse({"boot": "A5AEC7FA-0B3D-484F-95F2-82C5A6C197E4"}).boot == "a5aec7fa0b3d484f95f282c5a6c197e4"
    assert parse({"priority": "ERR"}).priority == 3


def test_a_text_match_is_a_literal_pattern() -> None:
    assert pcre_literal("a.b*c") == "a\\.b\\*c"
    assert pcre_literal("(?{x})") == "\\(\\?\\{x\\}\\)"
    assert pcre_literal("\\d") == "\\\\d"
    assert pcre_literal("naïve 100%") == "naïve\\ 100\\%"
