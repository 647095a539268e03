"""The history subsystem: sample the machine every 5 s into round-robin archives, persist
them now and then and at stop, and serve them at `/api/v1/nodes/{name}/history`. Each
sample is also published on the event bus (`history` events), so a live chart appends it
instead of asking again.

Samples are taken in the middle of each 5 s bucket of the wall clock (2.5 s past it), so the
jitter of a busy event loop never puts two samples in one bucket and none in the next. Reading
/proc takes well under a millisecond (bench/history.py), so it runs on the event loop; the
file is written in a worker thread from a snapshot taken on the loop. A failed reading is
logged once until one succeeds again and leaves its bucket empty.

Memory: the archives are fixed arrays (`HistoryStore.nbytes`, about 350 KiB for the default
shapes) whatever the uptime; the file is about the same size.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from math import isnan

from appliance.events.types import HistorySampled
from appliance.history.controller import history_routes
from appliance.history.rrd import Window
from appliance.history.sampler import COLUMNS, METRICS, Counters, CounterSource, Sources, rates
from appliance.history.store import FILE_NAME, SUBDIR, HistoryStore
from appliance.history.types import UNITS, History, Series
from appliance.subsystem import Core, Subsystem, Task

SAMPLE_SECONDS = 5.0  # the finest archive's step
PERSIST_SECONDS = 300.0  # how much history a crash (not a stop) may lose

log = logging.getLogger(__name__)


class Recorder:
    """Takes a sample from `sources` and adds it to `store` (one step of the sampling loop)."""

    def __init__(
        self,
        store: HistoryStore,
        sources: CounterSource,
        clock: Callable[[], float],
        monotonic: Callable[[], float],
        publish: Callable[[HistorySampled], None] = lambda _: None,
    ) -> None:
        self.store = store
        self.sources = sources
        self.clock = clock
        self.monotonic = monotonic
        self.publish = publish
        self._previous: Counters | None = None
        self._failing = False

    def sample(self) -> None:
        try:
            counters = self.sources.read(self.monotonic())
        except (OSError, ValueError, IndexError) as exc:
            if not self._failing:
                log.warning("resource history: cannot read the machine's counters: %s", exc)
            self._failing = True
            self._previous = None
            return
        if self._failing:
            log.info("resource history: reading the machine's counters again")
            self._failing = False
        now = self.clock()
        sample = rates(self._previous, counters)
        self.store.add(now, sample)
        self._previous = counters
        self.publish(sampled(now, sample))


def sampled(now: float, sample: Sequence[float]) -> HistorySampled:
    """The `history` event of a sample taken at `now` (values rounded as the API rounds them)."""
    cpu, mem_used, mem_available, net_rx, net_tx, disk_read, disk_write = (
        _rounded(column, [value])[0] for column, value in zip(COLUMNS, sample, strict=True)
    )
    step = int(SAMPLE_SECONDS)
    return HistorySampled(
        time=int(now // step) * step,
        cpu=cpu,
        mem_used=mem_used,
        mem_available=mem_available,
        net_rx=net_rx,
        net_tx=net_tx,
        disk_read=disk_read,
        disk_write=disk_write,
    )


def answer(store: HistoryStore, node: str, span: str, metrics: list[str], now: float) -> History:
    """This node's history over `span` for `metrics`, as the API sends it."""
    columns = [c for m in metrics for c in METRICS[m]]
    window: Window = store.window(span, now, columns)
    coarse = span != "1h"
    series = [
        Series(
            name=column,
            unit=UNITS[column],
            avg=_rounded(column, window.avg[i]),
            max=_rounded(column, window.max[i]) if coarse else None,
        )
        for i, column in enumerate(columns)
    ]
    return History(node=node, range=span, step=window.step, times=window.times, series=series)


def _rounded(column: str, values: list[float]) -> list[float | None]:
    """Percent to 0.1, bytes to whole bytes: a chart needs no more and the answer halves.
    NaN (nothing recorded) becomes null."""
    if column == "cpu":
        return [None if isnan(v) else round(v, 1) for v in values]
    return [None if isnan(v) else float(round(v)) for v in values]


def until_mid_bucket(now: float, step: float) -> float:
    """Seconds from `now` to the next middle of a `step`-second bucket of the wall clock."""
    target = (now // step) * step + step / 2
    return target - now if target > now else target + step - now


def build(core: Core, *, sources: CounterSource | None = None) -> Subsystem:
    store = HistoryStore(core.data_dir / SUBDIR / FILE_NAME, COLUMNS)
    recorder = Recorder(store, sources or Sources(), core.clock, core.monotonic, core.events.publish)

    async def start() -> None:
        store.load()

    async def sample_loop() -> None:
        while True:
            now = core.clock()
            await asyncio.sleep(until_mid_bucket(now, SAMPLE_SECONDS))
            recorder.sample()

    async def persist_loop() -> None:
        while True:
            await asyncio.sleep(PERSIST_SECONDS)
            if not store.changed:
                continue
            try:
                await asyncio.to_thread(store.write, store.encode())  # encoded here, written there
            except OSError as exc:
                store.changed = True
                log.warning("resource history: cannot save %s: %s", store.path, exc)

    async def stop() -> None:
        try:
            store.save()
        except OSError as exc:
            log.warning("resource history: cannot save %s: %s", store.path, exc)

    return Subsystem(
        name="history",
        routes=[
            history_routes(
                lambda span, metrics: answer(store, core.name, span, metrics, core.clock()), forwarder=core.forwarder
            )
        ],
        start=start,
        tasks=[Task("history-sample", sample_loop), Task("history-persist", persist_loop)],
        stop=stop,
        events=[HistorySampled],
    )
