"""The fake clock: a callable that returns the time the test set, for code that takes `clock=`.

The same object serves as wall time and as monotonic time, and as the `sleep` of code that
sleeps through an injected function (sleeping moves the clock, nothing waits).
"""

from __future__ import annotations


class FakeClock:
    """Time that only moves when the test moves it."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move the clock forward by `seconds`."""
        self.now += seconds

    def sleep(self, seconds: float) -> None:
        """What injected `sleep=` calls do: the time passes at once."""
        self.now += seconds
