"""`wait_until`: the suite's one poll loop, with a deadline and a message that says what failed.

Tests of real components wait for things that happen in other processes (a node becomes
ready, a member is seen dead). Each used to carry its own loop, some returning False, some
raising bare TimeoutErrors without saying what they waited for. This one raises
`WaitTimeout` naming the condition, how long it waited, and the last value or exception the
predicate gave, so a failure reads on its own.

Exceptions from the predicate count as "not yet" by default (the component is still coming
up); pass `ignore=()` to let them through.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable

_NOT_CALLED = object()


class WaitTimeout(TimeoutError):
    """The condition did not hold before the deadline."""


def describe(predicate: Callable[..., object]) -> str:
    """A readable name for `predicate`: a lambda's source text, else its qualified name."""
    name = getattr(predicate, "__qualname__", repr(predicate))
    if name.endswith("<lambda>"):
        try:
            source = inspect.getsource(predicate).strip()
        except (OSError, TypeError):
            return name
        at = source.find("lambda")
        return " ".join(_expression(source[at:]).split())[:200] if at >= 0 else name
    return str(name)


def _expression(text: str) -> str:
    """`text` up to the end of the expression it starts with: a comma or closing bracket at
    depth 0 (a lambda's source line goes on with the call's other arguments)."""
    depth = 0
    quote = ""
    for at, char in enumerate(text):
        if quote:
            if char == quote and text[at - 1] != "\\":
                quote = ""
        elif char in "\"'":
            quote = char
        elif char in "([{":
            depth += 1
        elif char in ")]}":
            if depth == 0:
                return text[:at]
            depth -= 1
        elif char in ",\n" and depth == 0:
            return text[:at]
    return text


def _message(what: str, predicate: Callable[..., object], timeout: float, last: object) -> str:
    text = f"timed out after {timeout:g} s waiting for {what or describe(predicate)}"
    if isinstance(last, BaseException):
        return f"{text}; last error: {type(last).__name__}: {last}"
    if last is not _NOT_CALLED:
        return f"{text}; last value: {last!r:.300}"
    return text


def wait_until(
    predicate: Callable[[], object],
    timeout: float,
    interval: float = 0.05,
    *,
    what: str = "",
    ignore: tuple[type[BaseException], ...] = (Exception,),
) -> float:
    """Call `predicate` every `interval` s until it returns something true; the seconds that took.

    Raises `WaitTimeout` (saying `what`, or the predicate's source) once `timeout` s pass.
    The predicate is called at least once, and once more at the deadline.
    """
    start = time.monotonic()
    deadline = start + timeout
    last: object = _NOT_CALLED
    while True:
        try:
            last = predicate()
        except ignore as error:
            last = error
        else:
            if last:
                return time.monotonic() - start
        now = time.monotonic()
        if now >= deadline:
            raise WaitTimeout(_message(what, predicate, timeout, last))
        time.sleep(min(interval, deadline - now))


async def wait_until_async(
    predicate: Callable[[], object | Awaitable[object]],
    timeout: float,  # noqa: ASYNC109 - the deadline of the whole wait, as in wait_until
    interval: float = 0.05,
    *,
    what: str = "",
    ignore: tuple[type[BaseException], ...] = (Exception,),
) -> float:
    """`wait_until` for the event loop: sleeps with asyncio; `predicate` may be a coroutine function."""
    start = time.monotonic()
    deadline = start + timeout
    last: object = _NOT_CALLED
    while True:
        try:
            value = predicate()
            last = await value if inspect.isawaitable(value) else value
        except ignore as error:
            last = error
        else:
            if last:
                return time.monotonic() - start
        now = time.monotonic()
        if now >= deadline:
            raise WaitTimeout(_message(what, predicate, timeout, last))
        await asyncio.sleep(min(interval, deadline - now))


def check_for(check: Callable[[], object], seconds: float, interval: float = 0.5) -> int:
    """Call `check` (which asserts) every `interval` s for `seconds`: something that must stay
    true, such as "no node is declared dead under 10% loss". The number of checks made."""
    deadline = time.monotonic() + seconds
    checks = 0
    while True:
        check()
        checks += 1
        now = time.monotonic()
        if now >= deadline:
            return checks
        time.sleep(min(interval, deadline - now))
