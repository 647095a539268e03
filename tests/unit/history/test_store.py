"""Persistence of the archives: a round trip, a restart that leaves a gap, a corrupt or missing file."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import pytest

from appliance.history.rrd import Shape
from appliance.history.store import HistoryStore
from tests.kit.clock import FakeClock

COLUMNS = ("cpu", "mem_used")
SHAPES = (Shape("1h", 5, 12), Shape("1d", 60, 5))


def store(path: Path) -> HistoryStore:
    return HistoryStore(path, COLUMNS, SHAPES)


def avg(s: HistoryStore, range_name: str, now: float, column: str = "cpu") -> list[float | None]:
    return [None if math.isnan(v) else v for v in s.window(range_name, now, [column]).avg[0]]


def test_round_trip_keeps_every_archive_and_the_bucket_in_progress(tmp_path: Path) -> None:
    path = tmp_path / "history" / "history.bin"
    clock = FakeClock(6000.0)
    first = store(path)
    for k in range(6):
        first.add(clock(), [float(k), 100.0])
        clock.advance(5)
    first.save()
    assert path.stat().st_mode & 0o777 == 0o600
    second = store(path)
    second.load()
    assert avg(second, "1h", clock()) == avg(first, "1h", clock())
    assert avg(second, "1d", clock()) == avg(first, "1d", clock())
    # the minute in progress goes on averaging with the samples from before the restart
    second.add(clock(), [12.0, 100.0])
    assert avg(second, "1d", clock())[-1] == pytest.approx((0 + 1 + 2 + 3 + 4 + 5 + 12) / 7)


def test_a_restart_after_a_while_shows_the_gap(tmp_path: Path) -> None:
    path = tmp_path / "history.bin"
    clock = FakeClock(6000.0)
    before = store(path)
    for _ in range(3):
        before.add(clock(), [50.0, 1.0])
        clock.advance(5)
    before.save()
    clock.advance(20)  # down for 20 s: four buckets
    after = store(path)
    after.load()
    after.add(clock(), [70.0, 1.0])
    assert avg(after, "1h", clock())[-8:] == [50.0, 50.0, 50.0, None, None, None, None, 70.0]


def test_a_missing_file_starts_empty(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    s = store(tmp_path / "none.bin")
    with caplog.at_level(logging.INFO, "appliance.history.store"):
        s.load()
    assert "starting empty" in caplog.text
    assert set(avg(s, "1h", 6000.0)) == {None}


def test_a_failed_save_is_tried_again(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    s = store(blocker / "history.bin")
    s.add(6000.0, [1.0, 2.0])
    with pytest.raises(FileExistsError):  # its directory cannot be made
        s.save()
    assert s.changed


def test_a_corrupt_file_starts_empty_is_set_aside_and_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "history.bin"
    good = store(path)
    good.add(6000.0, [1.0, 2.0])
    good.save()
    path.write_bytes(path.read_bytes()[:100])  # a torn write (which the rename prevents) or a bad disk
    s = store(path)
    with caplog.at_level(logging.WARNING, "appliance.history.store"):
        s.load()
    assert "unreadable" in caplog.text
    assert set(avg(s, "1h", 6000.0)) == {None}
    assert not path.exists()
    assert (tmp_path / "history.bin.bad").exists()
    s.add(6005.0, [3.0, 2.0])
    s.save()  # and the next save writes a good file again
    again = store(path)
    again.load()
    assert avg(again, "1h", 6005.0)[-1] == 3.0


def test_a_file_of_other_columns_is_not_read_as_these(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "history.bin"
    other = HistoryStore(path, ("mem_used", "cpu"), SHAPES)
    other.add(6000.0, [1.0, 2.0])
    other.save()
    s = store(path)
    with caplog.at_level(logging.WARNING, "appliance.history.store"):
        s.load()
    assert "columns" in caplog.text
    assert set(avg(s, "1h", 6000.0)) == {None}


def test_an_archive_whose_shape_changed_starts_empty_alone(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "history.bin"
    old = store(path)
    old.add(6000.0, [1.0, 2.0])
    old.save()
    s = HistoryStore(path, COLUMNS, (Shape("1h", 5, 12), Shape("1d", 60, 10)))
    with caplog.at_level(logging.WARNING, "appliance.history.store"):
        s.load()
    assert "archive 1d starts empty" in caplog.text
    assert avg(s, "1h", 6000.0)[-1] == 1.0
    assert set(avg(s, "1d", 6000.0)) == {None}


def test_save_replaces_the_file_atomically_and_only_after_a_change(tmp_path: Path) -> None:
    path = tmp_path / "history.bin"
    s = store(path)
    s.save()
    assert not path.exists()  # nothing recorded, nothing to write
    s.add(6000.0, [1.0, 2.0])
    s.save()
    first = path.stat().st_ino
    s.save()
    assert path.stat().st_ino == first  # unchanged: not written again
    s.add(6005.0, [1.0, 2.0])
    s.save()
    assert path.stat().st_ino != first  # a new file renamed over the old, never rewritten in place
    assert sorted(p.name for p in tmp_path.iterdir()) == ["history.bin"]
