"""Request rate limits and login back-off, as plain logic on an injected clock.

`RateLimiter` is a token bucket per user: `rate` requests per second on average, bursts up
to `burst`. `LoginThrottle` counts consecutive failed logins per key (a user name, a source
address); after `free_failures` of them each further attempt must wait a delay that doubles
per failure up to `max_delay`. A success clears the user's count. Both keep a bounded
number of keys, dropping the oldest, so a flood of new names cannot exhaust memory.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable

MAX_KEYS = 10_000


class RateLimiter:
    """Token buckets keyed by principal."""

    def __init__(self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, key: str) -> float:
        """Spend one token for `key`: 0.0 if allowed, else the seconds until one is available."""
        if self.rate <= 0:
            return 0.0
        now = self._clock()
        tokens, stamp = self._buckets.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - stamp) * self.rate)
        if tokens >= 1.0:
            self._remember(key, (tokens - 1.0, now))
            return 0.0
        self._remember(key, (tokens, now))
        return (1.0 - tokens) / self.rate

    def _remember(self, key: str, value: tuple[float, float]) -> None:
        self._buckets[key] = value
        self._buckets.move_to_end(key)
        if len(self._buckets) > MAX_KEYS:
            self._buckets.popitem(last=False)


class LoginThrottle:
    """Growing back-off after repeated failed logins, per user name and per source address."""

    def __init__(
        self,
        *,
        free_failures: int = 5,
        base_delay: float = 1.0,
        max_delay: float = 900.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.free_failures = free_failures
        self.base_delay = base_delay
        self.max_delay = max_delay
        self._clock = clock
        self._state: OrderedDict[str, tuple[int, float]] = OrderedDict()  # key -> (failures, blocked until)

    def retry_after(self, keys: list[str]) -> float:
        """Seconds until any of `keys` may try again (0.0 if all may now)."""
        now = self._clock()
        return max((self._state.get(k, (0, 0.0))[1] - now for k in keys), default=0.0) if keys else 0.0

    def failed(self, keys: list[str]) -> float:
        """Record a failed attempt for each key; return the longest delay now imposed."""
        now = self._clock()
        longest = 0.0
        for key in keys:
            failures = self._state.get(key, (0, 0.0))[0] + 1
            delay = 0.0
            if failures >= self.free_failures:
                delay = min(self.max_delay, self.base_delay * 2 ** (failures - self.free_failures))
            self._state[key] = (failures, now + delay)
            self._state.move_to_end(key)
            longest = max(longest, delay)
        while len(self._state) > MAX_KEYS:
            self._state.popitem(last=False)
        return longest

    def succeeded(self, key: str) -> None:
        self._state.pop(key, None)

    def failures(self, key: str) -> int:
        return self._state.get(key, (0, 0.0))[0]


def retry_after_header(seconds: float) -> dict[str, str]:
    """`Retry-After` in whole seconds, at least 1."""
    return {"Retry-After": str(max(1, math.ceil(seconds)))}
