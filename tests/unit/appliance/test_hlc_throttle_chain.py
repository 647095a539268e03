"""Pure pieces of the accounts issue: the hybrid clock, rate limits, login back-off, audit chain."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from appliance.audit.chain import GENESIS, AuditEntry, entry_hash, verify
from appliance.auth.permissions import ROLE_PERMISSIONS, Permission, Role, role_within
from appliance.auth.throttle import LoginThrottle, RateLimiter, Schedule, retry_after_header
from appliance.store.hlc import HybridClock, Timestamp
from tests.kit.clock import FakeClock


def test_hlc_never_goes_backwards_even_when_the_wall_clock_does() -> None:
    clock = FakeClock(1000.0)
    hlc = HybridClock("a", clock)
    first = hlc.now()
    clock.now -= 5
    second = hlc.now()
    assert second > first
    assert second.wall_ms == first.wall_ms
    assert second.counter == first.counter + 1


def test_hlc_moves_past_observed_remote_timestamps() -> None:
    clock = FakeClock(1000.0)
    hlc = HybridClock("a", clock)
    remote = Timestamp(int(clock.now * 1000) + 60_000, 7, "b")
    hlc.observe(remote)
    assert hlc.now() > remote


@given(st.lists(st.tuples(st.integers(0, 10**13), st.integers(0, 0xFFFF), st.sampled_from("abc")), max_size=30))
def test_hlc_encoding_sorts_like_timestamps(raw: list[tuple[int, int, str]]) -> None:
    stamps = [Timestamp(*r) for r in raw]
    assert sorted(stamps) == sorted(stamps, key=lambda t: t.encode())
    assert all(Timestamp.decode(t.encode()) == t for t in stamps)


def test_rate_limiter_allows_burst_then_rate() -> None:
    clock = FakeClock(1000.0)
    limiter = RateLimiter(rate=10, burst=20, clock=clock)
    assert all(limiter.take("u") == 0 for _ in range(20))
    wait = limiter.take("u")
    assert wait == pytest.approx(0.1)
    clock.now += 0.1
    assert limiter.take("u") == 0
    assert limiter.take("other") == 0  # per key


def test_rate_limiter_off_at_zero() -> None:
    limiter = RateLimiter(rate=0, burst=0)
    assert all(limiter.take("u") == 0 for _ in range(1000))


def test_login_back_off_doubles_after_free_failures_and_resets_on_success() -> None:
    clock = FakeClock(1000.0)
    throttle = LoginThrottle(pair=Schedule(free_failures=3, base_delay=1, max_delay=8), clock=clock)
    delays = [throttle.failed(["join:a"]) for _ in range(7)]
    assert delays == [0, 0, 1, 2, 4, 8, 8]
    assert throttle.retry_after(["join:a"]) == 8
    clock.now += 8
    assert throttle.retry_after(["join:a"]) <= 0
    throttle.succeeded("join:a")
    assert throttle.failures("join:a") == 0
    assert throttle.failed(["join:a"]) == 0


def test_retry_after_header_is_whole_seconds_at_least_one() -> None:
    assert retry_after_header(0.01) == {"Retry-After": "1"}
    assert retry_after_header(2.2) == {"Retry-After": "3"}


def test_roles_follow_the_seed() -> None:
    assert ROLE_PERMISSIONS[Role.ADMIN] == frozenset(Permission)
    assert Permission.USERS_MANAGE not in ROLE_PERMISSIONS[Role.OPERATOR]
    assert Permission.NODE_WRITE in ROLE_PERMISSIONS[Role.OPERATOR]
    assert not any(
        p.value.endswith((":write", ":manage")) and p is not Permission.SELF for p in ROLE_PERMISSIONS[Role.VIEWER]
    )
    assert role_within(Role.VIEWER, Role.OPERATOR)
    assert not role_within(Role.ADMIN, Role.OPERATOR)
    assert not role_within(Role.OPERATOR, Role.DEVELOPER)


def _chain(n: int) -> list[AuditEntry]:
    entries, prev = [], GENESIS
    for seq in range(1, n + 1):
        fields = {
            "seq": seq,
            "ts": 1000.0 + seq,
            "node": "n1",
            "user": "admin",
            "source": "127.0.0.1",
            "action": "user.create",
            "target": f"u{seq}",
            "outcome": "success",
            "detail": "",
            "prev_hash": prev,
        }
        digest = entry_hash(**fields)  # type: ignore[arg-type]
        entries.append(AuditEntry(**fields, hash=digest))  # type: ignore[arg-type]
        prev = digest
    return entries


def test_intact_chain_verifies() -> None:
    chain = _chain(5)
    verdict = verify(chain, (5, chain[-1].hash))
    assert verdict.bad_seq is None
    assert verdict.entries == 5


def test_modified_entry_is_named() -> None:
    import msgspec

    chain = _chain(5)
    chain[2] = msgspec.structs.replace(chain[2], target="someone-else")
    verdict = verify(chain, (5, chain[-1].hash))
    assert (verdict.bad_seq, verdict.reason) == (3, "its contents were modified")


def test_deleted_entry_is_named() -> None:
    chain = _chain(5)
    del chain[1]
    verdict = verify(chain, (5, chain[-1].hash))
    assert verdict.bad_seq == 3
    assert "missing" in verdict.reason


def test_reordered_entries_are_named() -> None:
    chain = _chain(5)
    chain[1], chain[2] = chain[2], chain[1]
    verdict = verify(chain, (5, chain[-1].hash))
    assert verdict.bad_seq == 3


def test_truncated_tail_is_caught_by_the_head() -> None:
    chain = _chain(5)
    verdict = verify(chain[:3], (5, chain[-1].hash))
    assert verdict.bad_seq == 4
    assert "removed from the end" in verdict.reason
