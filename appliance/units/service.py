"""What the units routes do: check the name and the protection rules, call systemd, wait for
the job, and say what happened in the API's types and statuses.

- A name systemd would refuse is 422 before anything reaches the bus (appliance/units/names.py).
- A unit systemd does not know is 404 (`NoSuchUnit`, a unit file that does not exist, a unit
  whose load state is not-found with no unit file).
- A protected unit (appliance/units/protect.py) refuses stop, kill, disable and mask with 409
  unless the caller passes `force`, which needs `units:force` (admins).
- Every action that queues a job waits for systemd's `JobRemoved` and answers its result
  (done, failed, timeout, canceled, dependency, skipped) with the unit's state after it; a job
  still running when the wait ends (`job_wait`, below the forwarder's deadline so a forwarded
  request gets this answer too) is answered 202 with `job_result: running`.
- Enable, disable, mask, unmask and preset reload the daemon after changing the files, as
  `systemctl` does.
- No bus: 503 saying why; systemd refusing what was asked (a masked unit, a reload the unit
  cannot do, no process to signal): 409 with systemd's own message.
"""

from __future__ import annotations

import contextlib
import signal as signals
import time
from collections.abc import Callable, Iterator
from typing import Any

from appliance.api.problems import ApiError
from appliance.units import protect
from appliance.units.bus import BusError, BusUnavailable
from appliance.units.listing import UnitFilter, details_from, timer_from, unit_files_from, units_from
from appliance.units.names import UnitNameError, check_unit_name
from appliance.units.systemd import Systemd
from appliance.units.types import (
    FILE_ACTIONS,
    JOB_ACTIONS,
    JobResult,
    Timer,
    Unit,
    UnitAction,
    UnitActionPost,
    UnitActionResult,
    UnitDetails,
    UnitFile,
    UnitFileChange,
)

JOB_WAIT_SECONDS = 3.5  # the forwarder gives a node 5 s to answer
NOT_FOUND_ERRORS = frozenset(
    {
        "org.freedesktop.systemd1.NoSuchUnit",
        "org.freedesktop.DBus.Error.FileNotFound",
        "org.freedesktop.systemd1.LoadFailed",
    }
)
INVALID_ERRORS = frozenset({"org.freedesktop.DBus.Error.InvalidArgs"})
DENIED_ERRORS = frozenset(
    {"org.freedesktop.DBus.Error.AccessDenied", "org.freedesktop.DBus.Error.InteractiveAuthorizationRequired"}
)
MAX_SIGNAL = 64


def parse_signal(value: str | int | None) -> int:
    """A signal by name (SIGTERM, TERM, sigterm) or number (15, "15"); SIGTERM when None.
    ValueError with a one-line reason otherwise."""
    if value is None:
        return int(signals.SIGTERM)
    if isinstance(value, int) or value.isdigit():
        number = int(value)
        if not 1 <= number <= MAX_SIGNAL:
            raise ValueError(f"signal: a number from 1 to {MAX_SIGNAL}, not {number}")
        return number
    name = value.strip().upper()
    name = name if name.startswith("SIG") else f"SIG{name}"
    try:
        return int(signals.Signals[name])
    except KeyError:
        raise ValueError(f"signal: {value!r} is not a signal name such as SIGTERM, HUP or KILL") from None


def unit_name(name: str, *, template: bool = False) -> str:
    """`name` if systemd would accept it, else 422 saying why."""
    try:
        return check_unit_name(name, template=template)
    except UnitNameError as exc:
        raise ApiError(422, str(exc)) from exc


@contextlib.contextmanager
def systemd_errors(name: str = "") -> Iterator[None]:
    """The bus's errors as the API's statuses (see the module docstring)."""
    try:
        yield
    except BusUnavailable as exc:
        raise ApiError(503, f"systemd cannot be reached on this node: {exc}") from exc
    except BusError as exc:
        text = exc.text or exc.name
        if exc.name in NOT_FOUND_ERRORS:
            raise ApiError(404, f"no unit {name} on this node ({text})" if name else text) from exc
        if exc.name in INVALID_ERRORS:
            raise ApiError(422, f"systemd refused the arguments: {text}") from exc
        if exc.name in DENIED_ERRORS:
            raise ApiError(503, f"systemd denied the node access: {text}") from exc
        raise ApiError(409, f"systemd refused: {text}") from exc


class UnitService:
    """The node's units through systemd (see the module docstring)."""

    def __init__(
        self,
        systemd: Systemd,
        *,
        job_wait: float = JOB_WAIT_SECONDS,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.systemd = systemd
        self.job_wait = job_wait
        self._clock = clock
        self._monotonic = monotonic

    async def units(self, keep: UnitFilter) -> list[Unit]:
        with systemd_errors():
            return units_from(await self.systemd.list_units(), keep)

    async def unit_files(self, keep: UnitFilter) -> list[UnitFile]:
        with systemd_errors():
            return unit_files_from(await self.systemd.list_unit_files(), keep)

    async def timers(self, keep: UnitFilter) -> list[Timer]:
        with systemd_errors():
            rows = [r for r in await self.systemd.list_units() if str(r[0]).endswith(".timer")]
            rows = [r for r in rows if keep.matches_name(str(r[0]))]
            props = await self.systemd.properties_of([str(r[6]) for r in rows])
        now, mono = self._clock(), time.monotonic_ns() // 1000
        timers = [timer_from(str(r[0]), p, now=now, monotonic_now_usec=mono) for r, p in zip(rows, props, strict=True)]
        return sorted(timers, key=lambda t: (t.next is None, t.next or 0.0, t.name))

    async def _networkd_active(self) -> bool:
        for row in await self.systemd.list_units():
            if row[0] == protect.NETWORKD:
                return str(row[3]) in ("active", "reloading", "activating")
        return False

    async def details(self, name: str) -> UnitDetails:
        unit_name(name, template=True)
        with systemd_errors(name):
            path = await self.systemd.unit_path(name)
            props = await self.systemd.properties(path)
            networkd = await self._networkd_active() if protect.needs_state(name) else False
        if props.get("LoadState") == "not-found" and not props.get("FragmentPath"):
            raise ApiError(404, f"no unit {name} on this node")
        return details_from(name, props, protected=protect.is_protected(name, networkd_active=networkd))

    async def act(self, name: str, action: UnitAction, body: UnitActionPost, *, may_force: bool) -> UnitActionResult:
        """Do `action` to `name` (see the module docstring); 200 or 202 and what happened."""
        unit_name(name, template=action in FILE_ACTIONS)
        if body.force and not may_force:
            raise ApiError(403, "force acts on protected units: it needs an admin (units:force)")
        kill_signal = 0
        if action is UnitAction.KILL:
            try:
                kill_signal = parse_signal(body.signal)
            except ValueError as exc:
                raise ApiError(422, str(exc)) from exc
        elif body.signal is not None:
            raise ApiError(422, "signal: only kill takes a signal")
        started = self._monotonic()
        with systemd_errors(name):
            if action in protect.REFUSED and not body.force:
                networkd = await self._networkd_active() if protect.needs_state(name) else False
                refused = protect.refusal(name, action, networkd_active=networkd)
                if refused is not None:
                    raise ApiError(409, refused)
            job, result, changes = "", "", []
            if action in JOB_ACTIONS:
                job = await self.systemd.queue_job(action, name, body.mode)
                left = max(0.1, self.job_wait - (self._monotonic() - started))
                finished = await self.systemd.jobs.wait(job, left)
                result = finished if finished is not None else "running"
            elif action is UnitAction.KILL:
                await self.systemd.kill(name, body.who, kill_signal)
            elif action is UnitAction.RESET_FAILED:
                await self.systemd.reset_failed(name)
            else:
                changes = await self.systemd.unit_files(action, name, force=body.force)
                await self.systemd.reload()
            props = await self._state_after(name)
        return UnitActionResult(
            unit=name,
            action=str(action),
            job_result=_job_result(result),
            job=job,
            changes=[UnitFileChange(*c) for c in changes],
            load_state=str(props.get("LoadState", "")),
            active_state=str(props.get("ActiveState", "")),
            sub_state=str(props.get("SubState", "")),
            unit_file_state=str(props.get("UnitFileState", "")),
            result=str(props.get("Result", "")),
            seconds=round(self._monotonic() - started, 4),
        )

    async def _state_after(self, name: str) -> dict[str, Any]:
        """The unit's properties after an action; empty where systemd has no unit object for
        the name (a template, enabled or masked as a whole): the action itself was done."""
        try:
            return await self.systemd.properties(await self.systemd.unit_path(name))
        except BusError:
            return {}


def _job_result(value: str) -> JobResult:
    known: dict[str, JobResult] = {
        "done": "done",
        "failed": "failed",
        "timeout": "timeout",
        "canceled": "canceled",
        "dependency": "dependency",
        "skipped": "skipped",
        "running": "running",
        "": "",
    }
    return known.get(value, "failed")
