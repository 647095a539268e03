"""Commit-confirmed changes: apply, and return to the snapshot unless confirmed in time.

The flow (as in JunOS `commit confirmed`, or `netplan try`):
1. Observe the managed links (the new configuration's, and the last applied one's) and keep
   that as the snapshot. Write `pending.json` (new config, snapshot, deadline) *before*
   touching the kernel, so a crash or restart at any later point still rolls back.
2. Plan and apply. If an action fails, roll back at once.
3. If a reachability check address was given, it must answer (ping) now, or roll back at once.
4. Until the deadline, `confirm()` makes the change permanent (`applied.json`), `rollback()`
   undoes it; at the deadline it is undone automatically. Rolling back is
   `plan(snapshot, observed_now)` + apply, from whatever state the change left.

Two drivers share the synchronous core `NetConfig`:
- `ConfirmManager` (asyncio) for the appliance service: an asyncio task sleeps until the
  deadline; `start()` at service start-up resumes a window found on disk (or rolls back at
  once if it has passed), so restarting the service never strands a change.
- The CLI (`cli.py`) stays in the foreground printing a countdown and polls the state
  directory: `debvisor net confirm` from another shell ends the window (it is just
  `NetConfig.confirm()` on the same directory). The CLI forks nothing, so if it is killed
  the change stays pending until the service (or the next `debvisor net` command, which
  checks deadlines first) rolls it back.

Netlink calls block; the asyncio driver runs them all in one dedicated worker thread (pyroute2's
synchronous socket has its own event loop and must not be used from the service's loop), one at
a time (the state directory's lock serialises even separate processes). The wall clock (injectable)
dates deadlines because they must survive restarts. Left out: confirming a change from
another node, and nested windows (a second change while one is pending is refused).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import secrets
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import msgspec

from netconfig.actions import Action
from netconfig.adapter import Adapter
from netconfig.apply import ApplyError, apply
from netconfig.model import NetworkConfig
from netconfig.observe import observe_managed
from netconfig.plan import plan
from netconfig.state import Outcome, Pending, StateDir
from netconfig.validate import ConfigError, check_address

DEFAULT_CONFIRM_WITHIN = 120.0
_T = TypeVar("_T")

Clock = Callable[[], float]  # wall-clock seconds (time.time)
Check = Callable[[str], bool]  # does this address answer?


class ConfirmError(RuntimeError):
    """A commit-confirmed operation cannot be done (nothing pending, already pending)."""


class RolledBack(RuntimeError):
    """A change was undone at once (apply failure or failed reachability check)."""


class Status(msgspec.Struct, frozen=True, kw_only=True):
    """What the API's status endpoint returns."""

    applied: NetworkConfig | None  # last confirmed configuration
    pending: NetworkConfig | None  # configuration in its confirm window
    deadline: float | None  # wall-clock seconds
    remaining: float | None  # seconds left in the window
    last_outcome: Outcome | None


class PingCheck:
    """Reachability check: `ping` the address (inside `netns` if given), a few tries, bounded time."""

    def __init__(self, *, netns: str | None = None, attempts: int = 3, timeout: float = 1.0) -> None:
        self.netns = netns
        self.attempts = attempts
        self.timeout = timeout

    def __call__(self, address: str) -> bool:
        # An IP literal only, and after "--": the address can never be read as an option.
        try:
            address = check_address(address)
        except ConfigError:
            return False  # `begin` refuses it first; anything else calling this gets "no answer"
        argv = ["ping", "-n", "-q", "-c", "1", "-W", str(max(1, round(self.timeout))), "--", address]
        if self.netns is not None:
            argv = ["ip", "netns", "exec", self.netns, *argv]
        for _ in range(self.attempts):
            try:
                result = subprocess.run(argv, capture_output=True, timeout=self.timeout + 5, check=False)  # noqa: S603
            except (OSError, subprocess.SubprocessError):
                return False
            if result.returncode == 0:
                return True
        return False


class NetConfig:
    """Host networking through one adapter and one state directory (synchronous, thread-safe per process)."""

    def __init__(
        self, adapter: Adapter, state: StateDir, *, clock: Clock = time.time, check: Check | None = None
    ) -> None:
        self.adapter = adapter
        self.state = state
        self.clock = clock
        self.check = check if check is not None else PingCheck()

    # -- reading ------------------------------------------------------------------------------

    def desired(self) -> NetworkConfig | None:
        """The configuration in force: the pending one during a window, else the last applied."""
        pending = self.state.pending()
        return pending.desired if pending is not None else self.state.applied()

    def observed(self) -> NetworkConfig:
        """The managed links as the kernel has them now."""
        pending = self.state.pending()
        if pending is None:
            return observe_managed(self.adapter, self.state.applied())
        return observe_managed(self.adapter, pending.desired, pending.snapshot)

    def plan(self, desired: NetworkConfig) -> list[Action]:
        """What applying `desired` would do now (touches nothing)."""
        return plan(desired, observe_managed(self.adapter, desired, self.state.applied()))

    def status(self) -> Status:
        """Applied and pending configuration, and the deadline."""
        pending = self.state.pending()
        return Status(
            applied=self.state.applied(),
            pending=pending.desired if pending else None,
            deadline=pending.deadline if pending else None,
            remaining=max(0.0, pending.deadline - self.clock()) if pending else None,
            last_outcome=self.state.outcome(),
        )

    # -- changing -----------------------------------------------------------------------------

    def apply_now(self, desired: NetworkConfig) -> list[Action]:
        """Apply without a confirm window (service start-up, scripts) and record it as applied."""
        with self.state.locked():
            if self.state.pending() is not None:
                raise ConfirmError("a change is waiting for confirmation; confirm or roll it back first")
            previous = self.state.applied()
            actions = plan(desired, observe_managed(self.adapter, desired, previous))
            apply(actions, self.adapter)
            self.state.write_applied(desired)
            return actions

    def begin(
        self, desired: NetworkConfig, confirm_within: float = DEFAULT_CONFIRM_WITHIN, check: str | None = None
    ) -> tuple[Pending, list[Action]]:
        """Snapshot, apply `desired`, check; the pending change and the actions applied.

        Raises `ConfigError` (before touching anything) if `check` is not an IP address, and
        `RolledBack` (after undoing everything) if an action fails or `check` does not answer.
        """
        if confirm_within <= 0:
            raise ConfirmError("the confirm window must be longer than 0 seconds")
        check = check_address(check) if check is not None else None
        with self.state.locked():
            if self.state.pending() is not None:
                raise ConfirmError("a change is already waiting for confirmation")
            previous = self.state.applied()
            snapshot = observe_managed(self.adapter, desired, previous)
            actions = plan(desired, snapshot)
            now = self.clock()
            pending = Pending(
                id=secrets.token_hex(8),
                desired=desired,
                snapshot=snapshot,
                previous=previous,
                started=now,
                deadline=now + confirm_within,
                check=check,
            )
            self.state.write_pending(pending)  # before any change: a crash from here on still rolls back
            try:
                apply(actions, self.adapter)
            except ApplyError as exc:
                self._rollback(pending, f"applying failed: {exc}")
                raise RolledBack(f"{exc}; rolled back") from exc
            if check is not None and not self.check(check):
                self._rollback(pending, f"{check} did not answer after the change")
                raise RolledBack(f"{check} did not answer after the change; rolled back")
            return pending, actions

    def confirm(self) -> Outcome:
        """Make the pending change permanent."""
        with self.state.locked():
            pending = self.state.pending()
            if pending is None:
                raise ConfirmError("no change is waiting for confirmation")
            self.state.write_applied(pending.desired)
            outcome = Outcome(id=pending.id, result="confirmed")
            self.state.finish_pending(outcome)
            return outcome

    def rollback(self, reason: str = "rolled back on request") -> list[Action]:
        """Undo the pending change now; the actions that did it."""
        with self.state.locked():
            pending = self.state.pending()
            if pending is None:
                raise ConfirmError("no change is waiting for confirmation")
            return self._rollback(pending, reason)

    def expire(self, pending_id: str | None = None) -> bool:
        """Roll back the pending change if its deadline has passed (and it is `pending_id`, if given)."""
        with self.state.locked():
            pending = self.state.pending()
            if pending is None or (pending_id is not None and pending.id != pending_id):
                return False
            if self.clock() < pending.deadline:
                return False
            self._rollback(pending, "not confirmed in time")
            return True

    def _rollback(self, pending: Pending, reason: str) -> list[Action]:
        observed = observe_managed(self.adapter, pending.snapshot, pending.desired)
        actions = plan(pending.snapshot, observed)
        try:
            apply(actions, self.adapter)
        finally:
            # Recorded even if undoing failed half-way: retrying would meet the same failure,
            # and the outcome says what happened.
            self.state.finish_pending(Outcome(id=pending.id, result="rolled-back", reason=reason))
        return actions


class ConfirmManager:
    """The asyncio driver of `NetConfig` for the service: a timer task per pending change."""

    def __init__(self, core: NetConfig) -> None:
        self.core = core
        self._timer: asyncio.Task[None] | None = None
        self._armed: str | None = None  # id of the pending change the timer is for
        self._lock = asyncio.Lock()
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="netconfig")

    async def _call(self, function: Callable[..., _T], *args: Any) -> _T:
        return await asyncio.get_running_loop().run_in_executor(self._worker, functools.partial(function, *args))

    async def start(self) -> None:
        """Resume a window left by a previous run, or roll it back now if its deadline passed."""
        pending = await self._call(self.core.state.pending)
        if pending is not None:
            if self.core.clock() >= pending.deadline:
                await self._call(self.core.expire, pending.id)
            else:
                self._arm(pending)

    async def adopt(self) -> bool:
        """Take over the timer of a change another process (`debvisor net apply`) left pending.

        The CLI rolls back its own change at the deadline while it runs; if it was killed, this
        (called periodically by the service) makes sure the rollback still happens on time.
        True when a timer was armed or an overdue change rolled back.
        """
        async with self._lock:
            pending = await self._call(self.core.state.pending)
            if pending is None or (self._timer is not None and self._armed == pending.id):
                return False
            await self._disarm()
            if self.core.clock() >= pending.deadline:
                return await self._call(self.core.expire, pending.id)
            self._arm(pending)
            return True

    async def apply(
        self, desired: NetworkConfig, confirm_within: float = DEFAULT_CONFIRM_WITHIN, check: str | None = None
    ) -> tuple[Pending, list[Action]]:
        """`NetConfig.begin`, then roll back automatically at the deadline."""
        async with self._lock:
            pending, actions = await self._call(self.core.begin, desired, confirm_within, check)
            self._arm(pending)
            return pending, actions

    async def apply_now(self, desired: NetworkConfig) -> list[Action]:
        """`NetConfig.apply_now` (no window): service start-up."""
        async with self._lock:
            return await self._call(self.core.apply_now, desired)

    async def confirm(self) -> Outcome:
        """Make the pending change permanent and stop its timer."""
        async with self._lock:
            outcome = await self._call(self.core.confirm)
            await self._disarm()
            return outcome

    async def rollback(self) -> list[Action]:
        """Undo the pending change now."""
        async with self._lock:
            actions = await self._call(self.core.rollback)
            await self._disarm()
            return actions

    async def status(self) -> Status:
        """`NetConfig.status`."""
        return await self._call(self.core.status)

    async def plan(self, desired: NetworkConfig) -> list[Action]:
        """`NetConfig.plan` (a dry run)."""
        return await self._call(self.core.plan, desired)

    async def run(self, function: Callable[..., _T], *args: Any) -> _T:
        """Run `function(*args)` in the netlink thread (other reads through the same adapter)."""
        return await self._call(function, *args)

    async def close(self) -> None:
        """Stop the timer, close the adapter (in the thread that used it) and stop that thread.

        A pending change stays on disk for the next `start`.
        """
        await self._disarm()
        await self._call(self.core.adapter.close)
        self._worker.shutdown(wait=True)

    def _arm(self, pending: Pending) -> None:
        self._timer = asyncio.create_task(self._expire_at(pending), name=f"netconfig-rollback-{pending.id}")
        self._armed = pending.id

    async def _disarm(self) -> None:
        timer, self._timer = self._timer, None
        self._armed = None
        if timer is not None and timer is not asyncio.current_task():
            timer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await timer

    async def _expire_at(self, pending: Pending) -> None:
        while True:
            remaining = pending.deadline - self.core.clock()
            if remaining <= 0:
                break
            await asyncio.sleep(min(remaining, 1.0))  # re-read the clock: it may jump
        async with self._lock:
            await self._call(self.core.expire, pending.id)
            if self._timer is asyncio.current_task():
                self._timer = None
                self._armed = None
