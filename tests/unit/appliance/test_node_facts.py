"""When a node republishes its facts: structural changes at once, gauges by step or refresh."""

from __future__ import annotations

import msgspec

from appliance.node.facts import GAUGE_MIN_INTERVAL, REFRESH_INTERVAL, should_publish
from appliance.node.types import Cpu, Disk, InterfaceAddress, Memory, NodeFacts

GIB = 1 << 30
T0 = 1_800_000_000.0


def facts(at: float = T0, *, available: int = 10 * GIB, free: int = 300 * GIB, **changes: object) -> NodeFacts:
    base = NodeFacts(
        version="1.0",
        kernel="6.1.0",
        cpu=Cpu(count=8, model="x"),
        memory=Memory(total_bytes=32 * GIB, available_bytes=available),
        disk=Disk(path="/var/lib/debvisor", total_bytes=500 * GIB, free_bytes=free),
        addresses=[
            InterfaceAddress(interface="eth0", family="inet", address="10.0.0.1", prefix_len=24, scope="global")
        ],
        description="",
        labels={},
        started_at=T0 - 100,
        published_at=at,
    )
    return msgspec.structs.replace(base, **changes)


def test_first_publish_and_identical_facts() -> None:
    assert should_publish(None, facts())
    assert not should_publish(facts(), facts(T0 + 30))
    assert not should_publish(facts(), facts(T0 + 2 * REFRESH_INTERVAL))  # nothing moved: nothing to refresh


def test_anything_but_a_gauge_goes_out_at_once() -> None:
    published = facts()
    assert should_publish(published, facts(T0 + 1, labels={"rack": "a"}))
    assert should_publish(published, facts(T0 + 1, version="1.1"))
    assert should_publish(published, facts(T0 + 1, started_at=T0))  # a restart
    assert should_publish(published, facts(T0 + 1, addresses=[]))
    # A total is not a gauge: more memory is news even if available memory did not move.
    assert should_publish(published, facts(T0 + 1, memory=Memory(total_bytes=64 * GIB, available_bytes=10 * GIB)))


def test_small_gauge_moves_wait_for_the_refresh() -> None:
    published = facts()
    small = {"available": 10 * GIB + 123_456_789, "free": 300 * GIB - 7 * GIB}  # 0.4 % and 1.4 % of the totals
    for age in (30, 90, 300, REFRESH_INTERVAL - 1):
        assert not should_publish(published, facts(T0 + age, **small)), age
    assert should_publish(published, facts(T0 + REFRESH_INTERVAL, **small))


def test_a_gauge_step_of_more_than_five_percent_goes_out_after_a_minute() -> None:
    published = facts()
    memory_step = facts(T0 + GAUGE_MIN_INTERVAL, available=10 * GIB - 2 * GIB)  # 6.25 % of 32 GiB
    disk_step = facts(T0 + GAUGE_MIN_INTERVAL, free=300 * GIB + 30 * GIB)  # 6 % of 500 GiB
    assert should_publish(published, memory_step)
    assert should_publish(published, disk_step)
    # ... but not sooner than a minute after the last publish, so a swinging workload costs
    # at most one publish a minute.
    assert not should_publish(published, facts(T0 + 30, available=2 * GIB))
    # 5 % exactly is not more than 5 %.
    assert not should_publish(published, facts(T0 + GAUGE_MIN_INTERVAL, free=300 * GIB - 25 * GIB))


def test_a_gauge_running_low_is_followed_by_a_quarter_of_its_value() -> None:
    published = facts(free=20 * GIB)  # 4 % of the disk free
    assert should_publish(published, facts(T0 + GAUGE_MIN_INTERVAL, free=14 * GIB))  # 1.2 % of the disk
    assert not should_publish(published, facts(T0 + GAUGE_MIN_INTERVAL, free=17 * GIB))  # less than a quarter
    assert should_publish(facts(available=GIB // 2), facts(T0 + GAUGE_MIN_INTERVAL, available=GIB // 8))


def test_a_clock_that_stepped_back_republishes_with_the_new_time() -> None:
    assert should_publish(facts(), facts(T0 - 3600, available=10 * GIB - 1))


def test_zero_totals_do_not_divide_by_zero() -> None:
    unknown = Memory(total_bytes=0, available_bytes=0)  # /proc/meminfo could not be read
    published = facts(memory=unknown)
    assert not should_publish(published, facts(T0 + 90, memory=unknown, free=300 * GIB - 1))
