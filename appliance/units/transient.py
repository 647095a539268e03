"""One-off maintenance commands as transient units (`StartTransientUnit`), run now or by a timer.

`debvisor unit run NAME -- COMMAND...` is `systemd-run --unit=debvisor-run-NAME` through the
API of any node: systemd runs the command as `debvisor-run-NAME.service` (Type=oneshot, so the
start job ends when the command does), its output goes to the journal under that unit, and
the answer is systemd's job result (done, failed, timeout, canceled, dependency, skipped)
with the unit's result and exit status; a command still running at the caller's deadline is
reported as `running` and left to finish. With `on_active_sec` or `on_calendar`, a transient
`debvisor-run-NAME.timer` starts the service later instead (RemainAfterElapse=no: it goes
away once it has fired). A failed run stays visible as a failed unit until the next run of
the same name resets it. The name is narrow (lower-case letters, digits, `-` and `_`), the
command an absolute path and its arguments, passed to systemd as a list (no shell).

Left out: properties beyond the description and the command (users, sandboxing,
resource limits): a maintenance task that needs them is a unit file (appliance/units/unitfiles.py).
"""

from __future__ import annotations

import contextlib
import logging
import re
from typing import Any

import msgspec
from dbus_fast import Variant

from appliance.units.bus import MANAGER, SYSTEMD_PATH, BusError, SystemBus
from appliance.units.jobs import JobTracker

log = logging.getLogger(__name__)

PREFIX = "debvisor-run-"
MAX_WAIT_SECONDS = 600.0
MAX_ARGUMENTS = 256
MAX_COMMAND_BYTES = 16 * 1024
_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")


class TransientRun(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A one-off command to run as `debvisor-run-NAME.service`, now or by a timer."""

    name: str  # lower-case letters, digits, - and _ (at most 64): the unit is debvisor-run-NAME.service
    command: list[str]  # an absolute path and its arguments (no shell)
    description: str | None = None
    on_active_sec: float | None = None  # run this many seconds from now (a transient timer)
    on_calendar: str | None = None  # run at this calendar time (systemd.time(7); a transient timer)
    wait_seconds: float = 60.0  # how long to wait for a command run now (0: do not wait)


class TransientResult(msgspec.Struct, frozen=True, kw_only=True):
    """How the run went: the units, systemd's job result (or `running` when the command had
    not finished by the deadline), the service's result and exit status when it ended."""

    unit: str
    timer: str | None = None
    job: str  # done, failed, timeout, canceled, dependency, skipped; running; scheduled (a timer)
    result: str | None = None  # the service's Result: success, exit-code, signal, timeout ...
    exit_status: int | None = None
    active_state: str | None = None


class TransientError(Exception):
    """A refused run; `status` is the API answer (422 invalid, 409 already running)."""

    def __init__(self, status: int, message: str, path: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.path = path


def unit_names(name: str) -> tuple[str, str]:
    """The service and timer names for a run called `name`; raises TransientError (422)."""
    if not _NAME.fullmatch(name):
        raise TransientError(422, f"run name {name!r}: lower-case letters, digits, - and _ (at most 64)", "$.name")
    return f"{PREFIX}{name}.service", f"{PREFIX}{name}.timer"


def check_run(run: TransientRun) -> None:
    """Refuse what systemd should never see: a relative or empty command, NULs, huge input."""
    unit_names(run.name)
    if not run.command or not run.command[0].startswith("/"):
        raise TransientError(422, "command: an absolute path first, then its arguments", "$.command")
    if len(run.command) > MAX_ARGUMENTS or sum(len(a.encode()) for a in run.command) > MAX_COMMAND_BYTES:
        raise TransientError(422, f"command: at most {MAX_ARGUMENTS} arguments, {MAX_COMMAND_BYTES} bytes", "$.command")
    if any("\x00" in a for a in run.command) or "\x00" in (run.description or ""):
        raise TransientError(422, "command and description cannot hold NUL characters", "$.command")
    if run.on_active_sec is not None and run.on_calendar is not None:
        raise TransientError(422, "give on_active_sec or on_calendar, not both", "$.on_calendar")
    if run.on_active_sec is not None and not 0 < run.on_active_sec <= 366 * 86400:
        raise TransientError(422, "on_active_sec: more than 0, at most a year", "$.on_active_sec")
    if run.on_calendar is not None and (not run.on_calendar.strip() or len(run.on_calendar) > 256):
        raise TransientError(422, "on_calendar: a calendar expression (systemd.time(7))", "$.on_calendar")
    if not 0 <= run.wait_seconds <= MAX_WAIT_SECONDS:
        raise TransientError(422, f"wait_seconds: 0 to {MAX_WAIT_SECONDS:g}", "$.wait_seconds")


def service_properties(run: TransientRun) -> list[tuple[str, Variant]]:
    description = run.description or f"debvisor run {run.name}: {' '.join(run.command)}"[:200]
    return [
        ("Description", Variant("s", description)),
        ("Type", Variant("s", "oneshot")),
        ("ExecStart", Variant("a(sasb)", [[run.command[0], run.command, False]])),
    ]


def timer_properties(run: TransientRun) -> list[tuple[str, Variant]]:
    props = [
        ("Description", Variant("s", f"debvisor run {run.name} (timer)")),
        ("RemainAfterElapse", Variant("b", False)),
        # systemd's default accuracy is a minute (it coalesces wake-ups): "in 5 s" would mean
        # up to a minute later. One second is what an operator expects of a one-off.
        ("AccuracySec", Variant("t", 1_000_000)),
    ]
    if run.on_active_sec is not None:
        props.append(("OnActiveSec", Variant("t", int(run.on_active_sec * 1_000_000))))
    if run.on_calendar is not None:
        props.append(("OnCalendar", Variant("s", run.on_calendar)))
    return props


class TransientRunner:
    """Starts transient units on the machine behind `bus` and waits for their jobs."""

    def __init__(self, bus: SystemBus, jobs: JobTracker) -> None:
        self.bus = bus
        self.jobs = jobs

    async def run(self, run: TransientRun) -> TransientResult:
        check_run(run)
        service, timer = unit_names(run.name)
        scheduled = run.on_active_sec is not None or run.on_calendar is not None
        for unit in (service, timer):
            await self._reset_failed(unit)
        if scheduled:
            name, props, aux = timer, timer_properties(run), [[service, service_properties(run)]]
        else:
            name, props, aux = service, service_properties(run), []
        try:
            (job,) = await self.bus.call(
                path=SYSTEMD_PATH,
                interface=MANAGER,
                member="StartTransientUnit",
                signature="ssa(sv)a(sa(sv))",
                body=[name, "fail", props, aux],
            )
        except BusError as exc:
            raise _refusal(name, exc) from exc
        log.info("transient unit started", extra={"unit": name})
        wait = 10.0 if scheduled else run.wait_seconds  # a timer's start job ends at once
        # The units watcher subscribed to JobRemoved on connecting and hands results to `jobs`.
        result = await self.jobs.wait(str(job), wait) or "running"
        if scheduled:
            state = await self._properties(timer, "org.freedesktop.systemd1.Unit")
            job_state = "scheduled" if result == "done" else result
            return TransientResult(
                unit=service, timer=timer, job=job_state, active_state=_str(state.get("ActiveState"))
            )
        return await self._outcome(service, result)

    async def _outcome(self, service: str, job: str) -> TransientResult:
        unit = await self._properties(service, "org.freedesktop.systemd1.Unit")
        details = await self._properties(service, "org.freedesktop.systemd1.Service")
        status = details.get("ExecMainStatus")
        if job == "done" and not details:  # finished and already unloaded (success is collected)
            return TransientResult(unit=service, job=job, result="success", exit_status=0, active_state="inactive")
        return TransientResult(
            unit=service,
            job=job,
            result=_str(details.get("Result")),
            exit_status=int(status) if isinstance(status, int) and job not in ("running",) else None,
            active_state=_str(unit.get("ActiveState")),
        )

    async def _properties(self, unit: str, interface: str) -> dict[str, Any]:
        try:
            (path,) = await self.bus.call(
                path=SYSTEMD_PATH, interface=MANAGER, member="GetUnit", signature="s", body=[unit]
            )
            return await self.bus.get_all(str(path), interface)
        except BusError:
            return {}  # not loaded (any more)

    async def _reset_failed(self, unit: str) -> None:
        with contextlib.suppress(BusError):  # not loaded: nothing to reset
            await self.bus.call(
                path=SYSTEMD_PATH, interface=MANAGER, member="ResetFailedUnit", signature="s", body=[unit]
            )


def _refusal(unit: str, exc: BusError) -> Exception:
    if exc.name in ("org.freedesktop.systemd1.UnitExists", "org.freedesktop.DBus.Error.FileExists"):
        return TransientError(409, f"{unit} is still running (or is a unit file): wait for it, or stop it")
    if exc.name == "org.freedesktop.DBus.Error.InvalidArgs":
        return TransientError(422, f"systemd refused {unit}: {exc}")
    return exc


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None
