"""tests/kit/wait.py: the one poll loop returns how long it took and fails saying what it waited for."""

from __future__ import annotations

import asyncio
import os
import time

import pytest

from tests.kit.wait import WaitTimeout, wait_until, wait_until_async


def test_returns_the_seconds_until_the_predicate_held() -> None:
    start = time.monotonic()
    took = wait_until(lambda: time.monotonic() - start > 0.1, 2.0, 0.01)
    assert 0.1 <= took < 1.0


def test_times_out_naming_what_it_waited_for_and_the_last_value() -> None:
    start = time.monotonic()
    with pytest.raises(WaitTimeout) as raised:
        wait_until(lambda: [], 0.2, 0.05, what="the answer to be 42")
    assert 0.2 <= time.monotonic() - start < 1.0
    assert str(raised.value) == "timed out after 0.2 s waiting for the answer to be 42; last value: []"
    assert isinstance(raised.value, TimeoutError)


def test_without_a_description_the_lambda_source_names_the_condition() -> None:
    members: dict[str, str] = {}
    with pytest.raises(
        WaitTimeout, match=r'waiting for lambda: members.get\("b", "\)"\) == "alive"; last value: False$'
    ):
        wait_until(lambda: members.get("b", ")") == "alive", 0.05, 0.01)


def test_exceptions_count_as_not_yet_and_the_last_one_is_reported() -> None:
    calls = []

    def flaky() -> bool:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionRefusedError("not listening yet")
        return True

    assert wait_until(flaky, 2.0, 0.01) < 1.0
    with pytest.raises(WaitTimeout, match="last error: ConnectionRefusedError: down"):
        wait_until(lambda: (_ for _ in ()).throw(ConnectionRefusedError("down")), 0.05, 0.01, what="up")


def test_ignore_lets_other_exceptions_through() -> None:
    with pytest.raises(KeyError):
        wait_until(lambda: os.environ["DEBVISOR_NO_SUCH_VARIABLE_X9"], 1.0, 0.01, ignore=(OSError,))


async def test_the_async_variant_awaits_coroutine_predicates_and_times_out_the_same_way() -> None:
    ticks = []

    async def later() -> bool:
        await asyncio.sleep(0)
        ticks.append(1)
        return len(ticks) >= 3

    assert await wait_until_async(later, 2.0, 0.01) < 1.0
    with pytest.raises(WaitTimeout, match=r"timed out after 0\.05 s waiting for nothing; last value: False"):
        await wait_until_async(lambda: False, 0.05, 0.01, what="nothing")
