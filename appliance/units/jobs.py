"""Waiting for systemd jobs: each action that queues a job answers with the job's result.

systemd answers `StartUnit` & co. with the job's object path at once and reports the end
later as a `JobRemoved(id, path, unit, result)` signal. The signal can arrive before the
method's reply is read (a job that finishes at once), so the tracker keeps the results of
recently finished jobs nobody waits for yet, and a waiter first looks there. Signals must be
subscribed before the call (the watcher does that on connecting), or a fast job's end is
missed. Bounded: only the last `keep` unclaimed results are kept.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict

KEEP = 1024


class JobTracker:
    """Results of finished jobs, handed to whoever waits for them (see the module docstring)."""

    def __init__(self, keep: int = KEEP) -> None:
        self._keep = keep
        self._waiting: dict[str, asyncio.Future[str]] = {}
        self._finished: OrderedDict[str, str] = OrderedDict()

    def finished(self, path: str, result: str) -> None:
        """A `JobRemoved` signal: wake the waiter, or keep the result for one still to come."""
        waiter = self._waiting.pop(path, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(result)
            return
        self._finished[path] = result
        self._finished.move_to_end(path)
        while len(self._finished) > self._keep:
            self._finished.popitem(last=False)

    def forget_all(self) -> None:
        """The connection broke: results of the old one will not come; waiters time out."""
        self._finished.clear()

    async def wait(self, path: str, seconds: float) -> str | None:
        """The job's result, or None when it did not finish within `seconds`."""
        if path in self._finished:
            return self._finished.pop(path)
        waiter = self._waiting.get(path)
        if waiter is None:
            waiter = asyncio.get_running_loop().create_future()
            self._waiting[path] = waiter
        try:
            return await asyncio.wait_for(asyncio.shield(waiter), seconds)
        except TimeoutError:
            return None
        finally:
            if self._waiting.get(path) is waiter:
                del self._waiting[path]
            if not waiter.done():
                waiter.cancel()

    @property
    def pending(self) -> int:
        return len(self._waiting)
