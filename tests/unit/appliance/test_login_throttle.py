"""The login back-off: per (user, source), per source, the per-user ceiling, and persistence.

Pure logic on a hand-moved clock, with the dict store standing in for the database (and one
test of the SQLite adapter itself on a real node database).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

from appliance.auth.throttle import (
    PAIR,
    SOURCE,
    USER,
    Entry,
    LoginThrottle,
    MemoryStore,
    Schedule,
    pair_key,
    source_group,
    user_key,
)
from appliance.auth.throttle_store import SqliteBackoffStore
from appliance.store.database import Database
from tests.kit.clock import FakeClock


class CountingStore(MemoryStore):
    """Counts writes, to show that a plain successful login writes nothing."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def save(self, changes: Mapping[str, Entry | None]) -> None:
        self.writes += 1
        super().save(changes)


def fail(throttle: LoginThrottle, user: str, source: str, times: int) -> list[float]:
    return [throttle.login_failed(user, source) for _ in range(times)]


def test_the_schedules_are_the_documented_ones() -> None:
    assert [PAIR.delay(n) for n in (4, 5, 6, 7, 20)] == [0, 1, 2, 4, 900]
    assert [SOURCE.delay(n) for n in (9, 10, 11)] == [0, 1, 2]
    assert [USER.delay(n) for n in (19, 20, 21, 40)] == [0, 1, 2, 300]
    assert Schedule(1, 1.0, 5.0).delay(10_000) == 5.0  # no overflow far past the ceiling


def test_a_guesser_is_held_after_five_failures_with_a_doubling_delay() -> None:
    clock = FakeClock()
    throttle = LoginThrottle(clock=clock)
    assert fail(throttle, "admin", "10.0.0.1", 7) == [0, 0, 0, 0, 1, 2, 4]
    assert throttle.login_wait("admin", "10.0.0.1") == 4
    clock.now += 4
    assert throttle.login_wait("admin", "10.0.0.1") == 0


def test_hammering_a_name_from_one_source_never_holds_another_source() -> None:
    clock = FakeClock()
    throttle = LoginThrottle(clock=clock)
    for _ in range(40):  # the guesser retries the moment its wait is over
        clock.now += throttle.login_wait("admin", "10.0.0.1")
        throttle.login_failed("admin", "10.0.0.1")
    assert throttle.login_wait("admin", "10.0.0.1") > 0
    assert throttle.counts("admin", "10.0.0.1") == (40, 40, 40)  # the ceiling is far past its free 20
    assert throttle.login_wait("admin", "10.0.0.2") == 0  # the real admin, elsewhere, may try now
    throttle.login_succeeded("admin", "10.0.0.2")
    assert throttle.login_wait("admin", "10.0.0.1") > 0  # and that does not free the guesser


def test_the_ceiling_holds_a_distributed_guesser_but_not_a_clean_source() -> None:
    clock = FakeClock()
    throttle = LoginThrottle(clock=clock)
    sources = [f"10.1.0.{i}" for i in range(1, 31)]
    for source in sources:  # one guess each: no source is held by its own counts
        throttle.login_failed("admin", source)
    assert throttle.counts("admin", sources[0])[2] == 30
    wait = throttle.login_wait("admin", sources[0])
    assert wait == USER.delay(30) == 300  # every source that failed waits for the ceiling
    assert all(throttle.login_wait("admin", s) == wait for s in sources)
    assert throttle.login_wait("admin", "10.2.0.1") == 0  # one that never failed does not
    assert throttle.login_wait("bob", sources[0]) == 0  # and the ceiling is per name
    throttle.login_failed("admin", "10.2.0.1")
    assert throttle.login_wait("admin", "10.2.0.1") == 300  # once it fails, it waits too
    clock.now += 300
    assert throttle.login_wait("admin", sources[0]) == 0


def test_a_source_trying_many_names_is_held_after_ten() -> None:
    throttle = LoginThrottle(clock=FakeClock())
    for i in range(10):
        throttle.login_failed(f"user{i}", "10.0.0.9")
    assert throttle.login_wait("someone-else", "10.0.0.9") == 1
    assert throttle.login_wait("someone-else", "10.0.0.8") == 0


def test_success_clears_the_pair_and_source_but_not_the_ceiling() -> None:
    throttle = LoginThrottle(clock=FakeClock())
    fail(throttle, "admin", "10.0.0.1", 3)
    throttle.login_succeeded("admin", "10.0.0.1")
    assert throttle.counts("admin", "10.0.0.1") == (0, 0, 3)


def test_ipv6_sources_count_per_64_and_mapped_ipv4_as_ipv4() -> None:
    assert source_group("2001:db8:1:2:aaaa::1") == source_group("2001:db8:1:2:bbbb::2") == "2001:db8:1:2::/64"
    assert source_group("::ffff:192.0.2.7") == "192.0.2.7"
    assert source_group("testclient") == "testclient"
    throttle = LoginThrottle(clock=FakeClock())
    fail(throttle, "admin", "2001:db8::1", 5)
    assert throttle.login_wait("admin", "2001:db8::ffff") == 1  # another address of the same /64
    assert throttle.login_wait("admin", "2001:db8:0:1::1") == 0


def test_keys_do_not_collide_and_long_names_are_cut() -> None:
    assert pair_key("a b", "10.0.0.1") != pair_key("b", "10.0.0.1 a")
    assert user_key("x" * 500) == user_key("x" * 64)


def test_state_survives_a_restart_through_the_store() -> None:
    clock, store = FakeClock(), MemoryStore()
    first = LoginThrottle(clock=clock, store=store)
    fail(first, "admin", "10.0.0.1", 6)
    wait = first.login_wait("admin", "10.0.0.1")
    second = LoginThrottle(clock=clock, store=store)  # the node restarted
    assert second.login_wait("admin", "10.0.0.1") == wait == 2
    assert second.counts("admin", "10.0.0.1") == (6, 6, 6)
    second.login_failed("admin", "10.0.0.1")  # counting goes on where it was
    assert second.failures(pair_key("admin", "10.0.0.1")) == 7


def test_a_successful_login_without_failures_writes_nothing() -> None:
    store = CountingStore()
    throttle = LoginThrottle(clock=FakeClock(), store=store)
    for _ in range(100):
        assert throttle.login_wait("admin", "10.0.0.1") == 0
        throttle.login_succeeded("admin", "10.0.0.1")
    assert store.writes == 0
    throttle.login_failed("admin", "10.0.0.1")
    throttle.login_succeeded("admin", "10.0.0.1")
    throttle.login_succeeded("admin", "10.0.0.1")
    assert store.writes == 3  # the failure, then clearing pair and source; the second success: nothing


def test_keys_are_forgotten_a_day_after_their_last_failure() -> None:
    clock, store = FakeClock(), MemoryStore()
    throttle = LoginThrottle(clock=clock, store=store)
    fail(throttle, "admin", "10.0.0.1", 5)
    clock.now += 24 * 3600 - 1
    assert throttle.counts("admin", "10.0.0.1") == (5, 5, 5)
    clock.now += 1
    assert throttle.counts("admin", "10.0.0.1") == (0, 0, 0)
    assert len(store.entries) == 3
    assert throttle.prune() == 3
    assert store.entries == {}


def test_forgotten_entries_are_dropped_on_load() -> None:
    clock, store = FakeClock(), MemoryStore()
    fail(LoginThrottle(clock=clock, store=store), "admin", "10.0.0.1", 1)
    clock.now += 2 * 24 * 3600
    LoginThrottle(clock=clock, store=store)
    assert store.entries == {}


def test_the_number_of_keys_is_bounded_in_memory_and_in_the_store() -> None:
    store = MemoryStore()
    throttle = LoginThrottle(clock=FakeClock(), store=store, max_keys=50)
    for i in range(100):
        throttle.login_failed(f"name{i}", "10.0.0.1")
    assert len(store.entries) == 50
    assert user_key("name99") in store.entries
    assert user_key("name0") not in store.entries
    smaller = LoginThrottle(clock=FakeClock(), store=store, max_keys=10)  # a lower bound on load
    assert len(store.entries) == 10
    assert smaller.failures(user_key("name99")) == 1


def test_a_wall_clock_stepped_back_cannot_hold_past_the_ceiling() -> None:
    clock = FakeClock()
    throttle = LoginThrottle(clock=clock)
    fail(throttle, "admin", "10.0.0.1", 30)
    clock.now -= 10 * 24 * 3600
    assert throttle.login_wait("admin", "10.0.0.1") == PAIR.max_delay


def test_reset_forgets_everything() -> None:
    store = MemoryStore()
    throttle = LoginThrottle(clock=FakeClock(), store=store)
    fail(throttle, "admin", "10.0.0.1", 6)
    throttle.reset()
    assert throttle.login_wait("admin", "10.0.0.1") == 0
    assert store.entries == {}


class Broken:
    def load(self) -> Iterable[tuple[str, Entry]]:
        return []

    def save(self, changes: Mapping[str, Entry | None]) -> None:
        raise OSError("disk full")


def test_a_store_that_cannot_write_fails_the_attempt_loudly() -> None:
    throttle = LoginThrottle(clock=FakeClock(), store=Broken())
    with pytest.raises(OSError, match="disk full"):
        throttle.login_failed("admin", "10.0.0.1")


def test_the_sqlite_store_round_trips_and_deletes(tmp_path: Path) -> None:
    db = Database.create(tmp_path / "node.db")
    try:
        clock = FakeClock()
        throttle = LoginThrottle(clock=clock, store=SqliteBackoffStore(db))
        fail(throttle, "admin", "10.0.0.1", 6)
        fail(throttle, "ops", "10.0.0.2", 1)
        throttle.login_succeeded("ops", "10.0.0.2")
        rows = dict(db.conn.execute("SELECT key, failures FROM auth_backoff").fetchall())
        assert rows == {
            pair_key("admin", "10.0.0.1"): 6,
            "source:10.0.0.1": 6,
            user_key("admin"): 6,
            user_key("ops"): 1,
        }
        again = LoginThrottle(clock=clock, store=SqliteBackoffStore(db))
        assert again.login_wait("admin", "10.0.0.1") == 2
    finally:
        db.close()


def test_checks_in_flight_count_as_failures_so_a_burst_gets_no_more_than_the_free_tries() -> None:
    clock = FakeClock()
    throttle = LoginThrottle(clock=clock)
    started = [throttle.login_begin("admin", "10.0.0.1") for _ in range(8)]
    assert started == [0, 0, 0, 0, 0, 1, 1, 1]  # five run at once; the rest are told to wait
    for _ in range(5):
        throttle.login_failed("admin", "10.0.0.1")
    assert throttle.login_wait("admin", "10.0.0.1") == 1
    clock.now += 1
    assert throttle.login_begin("admin", "10.0.0.1") == 0  # in its back-off: one at a time
    assert throttle.login_begin("admin", "10.0.0.1") == 1
    throttle.login_release("admin", "10.0.0.1")  # the check never ran: nothing counted
    assert throttle.counts("admin", "10.0.0.1") == (5, 5, 5)
    assert throttle.login_begin("admin", "10.0.0.1") == 0


def test_a_clean_source_gets_one_check_at_a_time_while_the_ceiling_holds() -> None:
    throttle = LoginThrottle(clock=FakeClock())
    for i in range(25):
        throttle.login_failed("admin", f"10.1.0.{i}")
    assert throttle.login_begin("admin", "10.2.0.1") == 0
    assert throttle.login_begin("admin", "10.2.0.1") > 0  # its own check is in flight
    assert throttle.login_begin("admin", "10.2.0.2") == 0  # another clean source is not held
    throttle.login_succeeded("admin", "10.2.0.1")
    assert throttle.login_begin("admin", "10.2.0.1") == 0


def test_key_level_reservations_hold_a_burst_of_joins_to_the_free_failures() -> None:
    clock = FakeClock()
    throttle = LoginThrottle(clock=clock)
    keys = ["join:10.0.0.9"]
    started = [throttle.begin(keys) for _ in range(8)]
    assert started == [0, 0, 0, 0, 0, 1, 1, 1]  # the pair schedule's five free failures, in flight
    for _ in range(5):
        throttle.release(keys)
        throttle.failed(keys)
    assert throttle.failures(keys[0]) == 5
    assert throttle.retry_after(keys) == 1  # now in its back-off
    clock.now += 1
    assert throttle.begin(keys) == 0  # one at a time
    assert throttle.begin(keys) == 1
    throttle.release(keys)  # ended without a verdict: nothing counted, the key is free again
    assert throttle.failures(keys[0]) == 5
    assert throttle.begin(keys) == 0
    throttle.release(keys)
    throttle.succeeded(keys[0])
    assert throttle.failures(keys[0]) == 0
    assert throttle.begin(keys) == 0
