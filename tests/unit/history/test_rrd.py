"""The round-robin arithmetic: buckets, averages and maxima, wrap-around, gaps, clock steps."""

from __future__ import annotations

import math

import pytest

from appliance.history.rrd import Archive, RoundRobin, Shape
from tests.kit.clock import FakeClock

NAN = math.nan


def values(column: list[float]) -> list[float | None]:
    return [None if math.isnan(v) else v for v in column]


def test_samples_in_one_bucket_are_averaged_and_the_max_kept() -> None:
    archive = Archive(Shape("x", 60, 4), 2)
    clock = FakeClock(6000.0)
    for cpu in (10.0, 20.0, 60.0):
        archive.add(clock(), [cpu, 1.0])
        clock.advance(5)
    window = archive.window(clock(), [0, 1])
    assert window.times == [5820, 5880, 5940, 6000]
    assert values(window.avg[0]) == [None, None, None, 30.0]
    assert values(window.max[0]) == [None, None, None, 60.0]
    assert values(window.avg[1]) == [None, None, None, 1.0]


def test_a_missing_column_is_left_out_of_the_average_not_counted_as_zero() -> None:
    archive = Archive(Shape("x", 60, 2), 1)
    archive.add(0.0, [NAN])  # the first sample after a start has no rate
    assert values(archive.window(0.0, [0]).avg[0]) == [None, None]
    archive.add(10.0, [40.0])
    archive.add(20.0, [NAN])
    archive.add(30.0, [20.0])
    assert values(archive.window(30.0, [0]).avg[0]) == [None, 30.0]


def test_wrap_around_overwrites_the_oldest_bucket_only() -> None:
    archive = Archive(Shape("x", 5, 3), 1)
    for k in range(5):  # buckets 0, 5, 10, 15, 20 into three rows
        archive.add(k * 5.0 + 1, [float(k)])
    window = archive.window(21.0, [0])
    assert window.times == [10, 15, 20]
    assert values(window.avg[0]) == [2.0, 3.0, 4.0]


def test_a_gap_reads_as_missing_not_as_old_data_or_interpolation() -> None:
    archive = Archive(Shape("x", 5, 6), 1)
    for k in range(6):
        archive.add(k * 5.0, [float(k + 1)])  # every row filled: 1..6
    archive.add(40.0, [9.0])  # 30 and 35 were never reached
    window = archive.window(40.0, [0])
    assert window.times == [15, 20, 25, 30, 35, 40]
    assert values(window.avg[0]) == [4.0, 5.0, 6.0, None, None, 9.0]


def test_a_gap_longer_than_the_archive_clears_it() -> None:
    archive = Archive(Shape("x", 5, 4), 1)
    for k in range(4):
        archive.add(k * 5.0, [1.0])
    archive.add(1000.0, [2.0])
    assert values(archive.window(1000.0, [0]).avg[0]) == [None, None, None, 2.0]


def test_reading_after_the_newest_bucket_shows_the_silence_as_missing() -> None:
    archive = Archive(Shape("x", 5, 4), 1)
    archive.add(0.0, [1.0])
    archive.add(5.0, [2.0])
    assert values(archive.window(10.0, [0]).avg[0]) == [None, 1.0, 2.0, None]
    assert values(archive.window(100.0, [0]).avg[0]) == [None] * 4  # all of it too old now


def test_a_clock_stepping_back_drops_samples_until_it_catches_up() -> None:
    archive = Archive(Shape("x", 5, 4), 1)
    assert archive.add(100.0, [1.0])
    assert not archive.add(90.0, [7.0])  # within the archive's span: dropped
    assert values(archive.window(100.0, [0]).avg[0]) == [None, None, None, 1.0]
    assert archive.add(105.0, [2.0])
    assert values(archive.window(105.0, [0]).avg[0]) == [None, None, 1.0, 2.0]


def test_a_clock_stepping_back_beyond_the_span_starts_again() -> None:
    archive = Archive(Shape("x", 5, 4), 1)
    archive.add(10_000.0, [1.0])
    assert archive.add(50.0, [3.0])  # a clock corrected from far ahead
    assert archive.newest == 50
    assert values(archive.window(50.0, [0]).avg[0]) == [None, None, None, 3.0]


def test_the_wrong_number_of_columns_is_refused() -> None:
    with pytest.raises(ValueError, match="2 columns"):
        Archive(Shape("x", 5, 4), 2).add(0.0, [1.0])


def test_downsampling_each_archive_averages_the_raw_samples_of_its_bucket() -> None:
    rrd = RoundRobin(["cpu"], [Shape("fine", 5, 24), Shape("coarse", 60, 10)])
    clock = FakeClock(600.0)
    for k in range(24):  # two minutes of 5 s samples: 0..11 then 100..111
        rrd.add(clock() + 2.5, [float(k if k < 12 else 100 + k - 12)])
        clock.advance(5)
    coarse = rrd.archives["coarse"].window(clock() - 1, [0])
    assert coarse.times[-2:] == [600, 660]
    assert values(coarse.avg[0])[-2:] == [5.5, 105.5]
    assert values(coarse.max[0])[-2:] == [11.0, 111.0]
    fine = rrd.archives["fine"].window(clock() - 1, [0])
    assert values(fine.avg[0]) == [float(v) for v in [*range(12), *range(100, 112)]]


def test_memory_is_fixed_by_the_shapes() -> None:
    rrd = RoundRobin(["a", "b"], [Shape("fine", 5, 720), Shape("coarse", 60, 1440)])
    before = rrd.nbytes
    assert before == (720 + 1440) * 2 * 2 * 8  # rows x columns x (avg, max) x 8 bytes
    for k in range(5000):
        rrd.add(k * 5.0, [1.0, 2.0])
    assert rrd.nbytes == before
