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


class _Poll:
    """The bookkeeping both waits share: the deadline, the last answer, the failure message."""

    def __init__(self, predicate: Callable[..., object], timeout: float, interval: float, what: str) -> None:
        self.predicate = predicate
        self.timeout = timeout
        self.interval = interval
        self.what = what
        self.start = time.monotonic()
        self.last: object = _NOT_CALLED

    def held(self, answer: object) -> float | None:
        """Record the predicate's answer (or the exception it raised); the seconds waited if it held."""
        self.last = answer
        if answer and not isinstance(answer, BaseException):
            return time.monotonic() - self.start
        return None

    def pause(self) -> float:
        """Seconds to sleep before the next try; `WaitTimeout` once the deadline has passed."""
        left = self.start + self.timeout - time.monotonic()
        if left <= 0:
            raise WaitTimeout(self.message())
        return min(self.interval, left)

    def message(self) -> str:
        text = f"timed out after {self.timeout:g} s waiting for {self.what or describe(self.predicate)}"
        if isinstance(self.last, BaseException):
            return f"{text}; last error: {type(self.last).__name__}: {self.last}"
        if self.last is not _NOT_CALLED:
            return f"{text}; last value: {self.last!r:.300}"
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
    poll = _Poll(predicate, timeout, interval, what)
    while True:
        try:
            answer = predicate()
        except ignore as error:
            answer = error
        took = poll.held(answer)
        if took is not None:
            return took
        time.sleep(poll.pause())


async def wait_until_async(
    predicate: Callable[[], object | Awaitable[object]],
    timeout: float,  # noqa: ASYNC109 - the deadline of the whole wait, as in wait_until
    interval: float = 0.05,
    *,
    what: str = "",
    ignore: tuple[type[BaseException], ...] = (Exception,),
) -> float:
    """`wait_until` for the event loop: sleeps with asyncio; `predicate` may be a coroutine function."""
    poll = _Poll(predicate, timeout, interval, what)
    while True:
        try:
            value = predicate()
            answer = await value if inspect.isawaitable(value) else value
        except ignore as error:
            answer = error
        took = poll.held(answer)
        if took is not None:
            return took
        await asyncio.sleep(poll.pause())


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
