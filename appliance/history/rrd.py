"""Round-robin archives: fixed-size arrays of consolidated samples, the way rrdtool keeps them.

An `Archive` holds `rows` buckets of `step` seconds for a fixed set of columns, as two flat
`array('d')` (the average and the maximum of the samples that fell into each bucket), so its
memory is `rows * columns * 16` bytes whatever happens. Every sample goes into every archive
(`RoundRobin.add`): each archive averages the raw samples of its own bucket, so nothing is
averaged twice. The newest bucket is written at each sample (a chart shows the minute in
progress), its running sums kept beside the arrays.

Missing is NaN, never a guess: a bucket no sample reached (the node was down, the sampler
stalled) reads as NaN, and so does a column the sample did not have (the first sample after a
start has no rate yet). A wall clock that steps back leaves the archive as it is and drops
samples until time catches up with its newest bucket, unless the step back is longer than the
whole archive, which then starts again empty (a clock corrected from years ahead would
otherwise stop the history for years).

Deliberately left out: rrdtool's heartbeat and xfiles factor (a bucket with one sample in it
shows that sample), interpolation across gaps, and any I/O (appliance/history/store.py
persists the state, appliance/history/sampler.py makes the samples).
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Sequence
from dataclasses import dataclass

import msgspec

NAN = math.nan


@dataclass(frozen=True)
class Shape:
    """An archive's resolution and length: `rows` buckets of `step` seconds."""

    name: str  # the range it serves: "1h", "1d", "1w"
    step: int
    rows: int

    @property
    def span(self) -> int:
        return self.step * self.rows


class ArchiveState(msgspec.Struct, frozen=True, kw_only=True):
    """An archive as persisted: its shape, newest bucket and the raw bytes of its arrays."""

    step: int
    rows: int
    newest: int | None
    avg: bytes
    max: bytes
    sums: list[float]
    counts: list[int]
    peaks: list[float]


class Window(msgspec.Struct, frozen=True, kw_only=True):
    """What an archive holds for a time window: `len(times)` buckets, one list per column."""

    step: int
    times: list[int]  # each bucket's start, seconds since the epoch
    avg: list[list[float]]  # [column][bucket], NaN where nothing was recorded
    max: list[list[float]]


class Archive:
    """`rows` buckets of `step` seconds for `width` columns (see the module docstring)."""

    def __init__(self, shape: Shape, width: int) -> None:
        self.shape = shape
        self.width = width
        self._avg = array("d", [NAN]) * (shape.rows * width)
        self._max = array("d", [NAN]) * (shape.rows * width)
        self.newest: int | None = None  # start of the newest bucket written
        self._sums = [0.0] * width
        self._counts = [0] * width
        self._peaks = [NAN] * width

    @property
    def nbytes(self) -> int:
        """The bytes its two arrays hold (what bounds its memory)."""
        return (len(self._avg) + len(self._max)) * self._avg.itemsize

    def _slot(self, bucket: int) -> int:
        return (bucket // self.shape.step) % self.shape.rows * self.width

    def _clear(self, bucket: int) -> None:
        start = self._slot(bucket)
        for i in range(start, start + self.width):
            self._avg[i] = NAN
            self._max[i] = NAN

    def clear_all(self) -> None:
        self._avg = array("d", [NAN]) * (self.shape.rows * self.width)
        self._max = array("d", [NAN]) * (self.shape.rows * self.width)
        self.newest = None
        self._restart_bucket()

    def _restart_bucket(self) -> None:
        self._sums = [0.0] * self.width
        self._counts = [0] * self.width
        self._peaks = [NAN] * self.width

    def add(self, t: float, values: Sequence[float]) -> bool:
        """Record one sample taken at wall time `t`; False when it was dropped (clock stepped back)."""
        if len(values) != self.width:
            raise ValueError(f"a sample has {self.width} columns, not {len(values)}")
        step = self.shape.step
        bucket = int(t // step) * step
        if self.newest is not None and bucket < self.newest:
            if self.newest - bucket < self.shape.span:
                return False
            self.clear_all()
        if self.newest is None or bucket > self.newest:
            if self.newest is not None:
                skipped = (bucket - self.newest) // step  # buckets from the newest to this one
                if skipped >= self.shape.rows:
                    self.clear_all()
                else:
                    for k in range(1, skipped):
                        self._clear(self.newest + k * step)
            self.newest = bucket
            self._restart_bucket()
        slot = self._slot(bucket)
        for i, value in enumerate(values):
            if not math.isnan(value):
                self._sums[i] += value
                self._counts[i] += 1
                peak = self._peaks[i]
                self._peaks[i] = value if math.isnan(peak) or value > peak else peak
            count = self._counts[i]
            self._avg[slot + i] = self._sums[i] / count if count else NAN
            self._max[slot + i] = self._peaks[i]
        return True

    def window(self, now: float, columns: Sequence[int]) -> Window:
        """The whole archive's span ending with the bucket of `now`, for the given column indexes.

        Buckets after the newest one written, or too old to be in the arrays any more, are NaN."""
        step, rows = self.shape.step, self.shape.rows
        end = int(now // step) * step
        first = end - (rows - 1) * step
        times = list(range(first, end + step, step))
        if self.newest is None:
            lo, hi = rows, rows  # nothing held
        else:  # bucket k is held when newest - rows * step < first + k * step <= newest
            top = (self.newest - first) // step
            lo, hi = max(0, top - rows + 1), min(rows, top + 1)
        shift = (first // step) % rows  # the row of the first bucket

        def column_of(data: array[float], column: int) -> list[float]:
            ring = data[column :: self.width].tolist()
            ordered = ring[shift:] + ring[:shift]
            if hi <= lo:
                return [NAN] * rows
            return [NAN] * lo + ordered[lo:hi] + [NAN] * (rows - hi)

        return Window(
            step=step,
            times=times,
            avg=[column_of(self._avg, c) for c in columns],
            max=[column_of(self._max, c) for c in columns],
        )

    def state(self) -> ArchiveState:
        return ArchiveState(
            step=self.shape.step,
            rows=self.shape.rows,
            newest=self.newest,
            avg=self._avg.tobytes(),
            max=self._max.tobytes(),
            sums=list(self._sums),
            counts=list(self._counts),
            peaks=list(self._peaks),
        )

    def restore(self, state: ArchiveState) -> None:
        """Take a persisted state; ValueError if it does not fit this archive's shape."""
        size = self.shape.rows * self.width * self._avg.itemsize
        if (state.step, state.rows) != (self.shape.step, self.shape.rows):
            expected = f"{self.shape.rows} x {self.shape.step} s"
            raise ValueError(f"archive of {state.rows} x {state.step} s, expected {expected}")
        if len(state.avg) != size or len(state.max) != size:
            raise ValueError("archive arrays of the wrong size")
        if not len(state.sums) == len(state.counts) == len(state.peaks) == self.width:
            raise ValueError("archive accumulators of the wrong width")
        if state.newest is not None and state.newest % self.shape.step:
            raise ValueError("archive's newest bucket is not on its step")
        avg, peak = array("d"), array("d")
        avg.frombytes(state.avg)
        peak.frombytes(state.max)
        self._avg, self._max = avg, peak
        self.newest = state.newest
        self._sums, self._counts, self._peaks = list(state.sums), list(state.counts), list(state.peaks)


class RoundRobin:
    """Several archives of the same columns, each fed every sample."""

    def __init__(self, columns: Sequence[str], shapes: Sequence[Shape]) -> None:
        self.columns = tuple(columns)
        self.archives = {shape.name: Archive(shape, len(self.columns)) for shape in shapes}

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.archives.values())

    def add(self, t: float, values: Sequence[float]) -> None:
        for archive in self.archives.values():
            archive.add(t, values)

    def clear(self) -> None:
        for archive in self.archives.values():
            archive.clear_all()
