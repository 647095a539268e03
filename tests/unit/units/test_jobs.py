"""Job results reach their waiter whether the signal comes before or after the wait starts."""

from __future__ import annotations

import asyncio

from appliance.units.jobs import JobTracker


def test_a_result_that_arrives_while_waiting_wakes_the_waiter() -> None:
    async def scenario() -> str | None:
        jobs = JobTracker()
        asyncio.get_running_loop().call_later(0.01, jobs.finished, "/job/1", "failed")
        return await jobs.wait("/job/1", 1.0)

    assert asyncio.run(scenario()) == "failed"


def test_a_result_that_arrived_first_is_kept_once() -> None:
    async def scenario() -> tuple[str | None, str | None]:
        jobs = JobTracker()
        jobs.finished("/job/2", "done")
        first = await jobs.wait("/job/2", 1.0)
        second = await jobs.wait("/job/2", 0.01)
        return first, second

    assert asyncio.run(scenario()) == ("done", None)


def test_a_job_still_running_at_the_deadline_gives_none_and_leaves_nothing_behind() -> None:
    async def scenario() -> tuple[str | None, int]:
        jobs = JobTracker()
        result = await jobs.wait("/job/3", 0.01)
        return result, jobs.pending

    assert asyncio.run(scenario()) == (None, 0)


def test_unclaimed_results_are_bounded() -> None:
    async def scenario() -> tuple[str | None, str | None]:
        jobs = JobTracker(keep=2)
        for n in range(3):
            jobs.finished(f"/job/{n}", "done")
        return await jobs.wait("/job/0", 0.01), await jobs.wait("/job/2", 0.01)

    assert asyncio.run(scenario()) == (None, "done")
