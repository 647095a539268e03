"""The unit list is answered from the last one while systemd has signalled no change since."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from appliance.units.bus import SystemBus
from appliance.units.jobs import JobTracker
from appliance.units.systemd import Systemd

ROW = ["a.service", "A", "loaded", "active", "running", "", "/u/a", 0, "", "/"]


class CountingBus(SystemBus):
    """Answers ListUnits from memory and counts the calls; `during` runs while a call is answered."""

    def __init__(self) -> None:
        super().__init__("unix:path=/nonexistent")
        self.calls = 0
        self.open = True
        self.during: Any = None

    @property
    def connected(self) -> bool:
        return self.open

    async def call(self, *, member: str, body: Sequence[Any] = (), **_: Any) -> list[Any]:
        self.calls += 1
        if self.during is not None:
            self.during()
        return [[ROW]]


def test_a_second_list_without_a_signal_asks_nobody_and_a_signal_makes_it_ask_again() -> None:
    bus = CountingBus()
    systemd = Systemd(bus, JobTracker())

    async def scenario() -> list[int]:
        counts = []
        await systemd.list_units()
        await systemd.list_units()
        counts.append(bus.calls)
        systemd.changed()
        await systemd.list_units()
        counts.append(bus.calls)
        bus.open = False  # a closed connection would not have carried the signals
        await systemd.list_units()
        counts.append(bus.calls)
        return counts

    assert asyncio.run(scenario()) == [1, 2, 3]


def test_a_list_raced_by_a_signal_is_not_kept() -> None:
    bus = CountingBus()
    systemd = Systemd(bus, JobTracker())
    bus.during = systemd.changed  # a signal arrives while ListUnits is being answered

    async def scenario() -> int:
        await systemd.list_units()
        bus.during = None
        await systemd.list_units()
        return bus.calls

    assert asyncio.run(scenario()) == 2
