"""Hybrid logical clocks: timestamps that order changes across nodes without synchronised clocks.

An HLC timestamp is (wall milliseconds, logical counter, node id). It never runs backwards on
a node, stays close to wall time, and moves past any timestamp the node has seen from a
peer, so "last writer wins" on these timestamps respects causality. The node id breaks ties.
Timestamps encode to fixed-width strings that sort in the same order as the timestamps.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

_COUNTER_LIMIT = 0xFFFF


@dataclass(frozen=True, order=True)
class Timestamp:
    wall_ms: int
    counter: int
    node: str

    def encode(self) -> str:
        return f"{self.wall_ms:013x}.{self.counter:04x}.{self.node}"

    @classmethod
    def decode(cls, text: str) -> Timestamp:
        wall, counter, node = text.split(".", 2)
        return cls(int(wall, 16), int(counter, 16), node)


class HybridClock:
    """The clock of one node; not thread-safe (use from the event loop)."""

    def __init__(self, node: str, wall: Callable[[], float] = time.time) -> None:
        self._node = node
        self._wall = wall
        self._last = Timestamp(0, 0, node)

    def now(self) -> Timestamp:
        """A timestamp later than every one this clock has issued or observed."""
        wall_ms = int(self._wall() * 1000)
        if wall_ms > self._last.wall_ms:
            self._last = Timestamp(wall_ms, 0, self._node)
        else:
            self._last = self._bump(self._last.wall_ms, self._last.counter + 1)
        return self._last

    def observe(self, remote: Timestamp) -> None:
        """Move past a timestamp received from a peer."""
        wall_ms = int(self._wall() * 1000)
        top = max(wall_ms, self._last.wall_ms, remote.wall_ms)
        if top == self._last.wall_ms == remote.wall_ms:
            counter = max(self._last.counter, remote.counter) + 1
        elif top == self._last.wall_ms:
            counter = self._last.counter + 1
        elif top == remote.wall_ms:
            counter = remote.counter + 1
        else:
            counter = 0
        self._last = self._bump(top, counter)

    def _bump(self, wall_ms: int, counter: int) -> Timestamp:
        # A counter overflow (65536 events in one millisecond) borrows the next millisecond.
        if counter > _COUNTER_LIMIT:
            return Timestamp(wall_ms + 1, 0, self._node)
        return Timestamp(wall_ms, counter, self._node)
