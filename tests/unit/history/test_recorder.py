"""The sampling step: readings become samples in the archives; an unreadable /proc leaves a gap."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from appliance.events.types import HistorySampled
from appliance.history.sampler import COLUMNS, Counters
from appliance.history.store import HistoryStore
from appliance.history.subsystem import Recorder, answer, until_mid_bucket
from tests.kit.clock import FakeClock


class ScriptedSources:
    """Counters that grow by fixed steps at each reading; `broken` makes the next reading fail."""

    def __init__(self) -> None:
        self.readings = 0
        self.broken = False

    def read(self, at: float) -> Counters:
        if self.broken:
            raise OSError("no /proc here")
        self.readings += 1
        k = self.readings
        return Counters(at, 30 * k, 100 * k, 1000, 3000, {"eth0": (500 * k, 50 * k)}, {"sda": (0, 4096 * k)})


def test_samples_and_the_gap_of_a_failed_reading(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock(6002.5)
    store = HistoryStore(tmp_path / "h.bin", COLUMNS)
    sources = ScriptedSources()
    events: list[HistorySampled] = []
    recorder = Recorder(store, sources, clock, clock, events.append)
    for _ in range(3):
        recorder.sample()
        clock.advance(5)
    sources.broken = True
    with caplog.at_level(logging.WARNING, "appliance.history.subsystem"):
        recorder.sample()
        clock.advance(5)
        recorder.sample()  # logged once, not at every step
        clock.advance(5)
    assert caplog.text.count("cannot read") == 1
    sources.broken = False
    recorder.sample()  # no rate right after a failure: the counters before it are forgotten
    clock.advance(5)
    recorder.sample()
    got = answer(store, "n1", "1h", ["cpu", "net", "disk"], clock())
    cpu, rx, _tx, _read, write = (s.avg[-7:] for s in got.series)
    assert cpu == [None, 30.0, 30.0, None, None, None, 30.0]
    assert rx == [None, 100.0, 100.0, None, None, None, 100.0]
    assert write == [None, 819.0, 819.0, None, None, None, 819.0]  # 4096 bytes / 5 s, rounded
    assert got.step == 5
    assert [e.time for e in events] == [6000, 6005, 6010, 6025, 6030]  # none for the failed readings
    assert (events[0].cpu, events[0].mem_used) == (None, 1000.0)  # no rate yet, memory at once
    assert (events[1].cpu, events[1].net_rx, events[1].disk_write) == (30.0, 100.0, 819.0)
    assert got.times[-1] == 6030
    assert all(s.max is None for s in got.series)  # 5 s buckets: the max is the average
    day = answer(store, "n1", "1d", ["memory"], clock())
    assert [s.name for s in day.series] == ["mem_used", "mem_available"]
    assert day.series[0].max is not None
    assert day.series[0].max[-1] == 1000.0


@pytest.mark.parametrize(("now", "delay"), [(12.4, 0.1), (12.6, 4.9), (10.0, 2.5), (12.5, 5.0)])
def test_samples_are_taken_mid_bucket(now: float, delay: float) -> None:
    assert until_mid_bucket(now, 5.0) == pytest.approx(delay)
