"""Signals coalesced into unit events: one per unit and burst, with its latest state; nothing
for changes that leave a unit where it was."""

from __future__ import annotations

import asyncio

from appliance.events.types import Event, UnitChanged
from appliance.units.bus import MANAGER, SystemBus
from appliance.units.changes import Coalescer
from appliance.units.jobs import JobTracker
from appliance.units.watch import UNIT_INTERFACE, UnitWatch


def fresh() -> Coalescer:
    coalescer = Coalescer()
    coalescer.snapshot([("web.service", "loaded", "inactive", "dead"), ("db.service", "loaded", "active", "running")])
    return coalescer


def test_a_start_burst_is_one_event_with_the_final_state() -> None:
    c = fresh()
    assert c.properties("web.service", {"ActiveState": "activating", "SubState": "start"})
    assert c.properties("web.service", {"ActiveState": "active", "SubState": "running"})
    c.job_removed("web.service", "done")
    (event,) = c.drain()
    assert (event.unit, event.load_state, event.active_state, event.sub_state) == (
        "web.service", "loaded", "active", "running",
    )  # fmt: skip
    assert event.job_result == "done"
    assert not event.unloaded
    assert c.drain() == []


def test_properties_other_than_the_state_publish_nothing() -> None:
    c = fresh()
    assert not c.properties("db.service", {"MainPID": 12, "StatusText": "ok"})
    assert c.drain() == []
    c.properties("db.service", {"ActiveState": "active", "SubState": "running"})  # unchanged
    assert c.drain() == []


def test_a_unit_loaded_and_collected_within_a_window_publishes_nothing() -> None:
    c = fresh()
    c.unit_new("var-tmp.mount")
    c.unit_removed("var-tmp.mount")
    assert c.drain() == []
    assert "var-tmp.mount" not in c.known


def test_a_known_unit_unloaded_is_published_and_forgotten() -> None:
    c = fresh()
    c.unit_removed("web.service")
    (event,) = c.drain()
    assert event.unloaded
    assert "web.service" not in c.known


def test_a_failed_job_is_published_even_when_the_state_did_not_move() -> None:
    c = fresh()
    c.job_removed("web.service", "dependency")
    (event,) = c.drain()
    assert (event.active_state, event.job_result) == ("inactive", "dependency")


def test_units_are_coalesced_separately() -> None:
    c = fresh()
    c.properties("web.service", {"ActiveState": "active"})
    c.properties("db.service", {"ActiveState": "failed", "SubState": "failed"})
    assert sorted(e.unit for e in c.drain()) == ["db.service", "web.service"]


def test_the_watcher_turns_signals_into_events_and_job_results_after_its_window() -> None:
    async def scenario() -> tuple[list[Event], str | None]:
        published: list[Event] = []
        jobs = JobTracker()
        watch = UnitWatch(
            SystemBus("unix:path=/nonexistent"), jobs, published.append, state=lambda *_: None, window=0.01
        )
        watch.coalescer.snapshot([("web.service", "loaded", "inactive", "dead")])
        path = "/org/freedesktop/systemd1/unit/web_2eservice"
        watch.handle_signal(path, "org.freedesktop.DBus.Properties", "PropertiesChanged",
                            [UNIT_INTERFACE, {"ActiveState": "active", "SubState": "running"}, []])  # fmt: skip
        watch.handle_signal("/org/freedesktop/systemd1", MANAGER, "JobRemoved", [7, "/job/7", "web.service", "done"])
        assert published == []  # not before the window ends
        result = await jobs.wait("/job/7", 1.0)  # the job ended before anyone waited: kept for the waiter
        await asyncio.sleep(0.05)
        return published, result

    published, result = asyncio.run(scenario())
    assert result == "done"
    assert published == [
        UnitChanged(
            unit="web.service", load_state="loaded", active_state="active", sub_state="running", job_result="done"
        )
    ]
