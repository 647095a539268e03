"""The units API's wire types: what `/api/v1/nodes/{name}/units...` answers and accepts.

Shaped after systemd's own vocabulary (load/active/sub state, unit-file state, job results),
so an operator who knows `systemctl` reads them without a glossary. Times are Unix seconds
(None where systemd has none), sizes bytes, CPU time seconds; a counter systemd does not
track for a unit (memory without accounting, a target's main PID) is None, never a sentinel.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

import msgspec


class UnitAction(StrEnum):
    """What `POST .../units/{unit}/{action}` does (as `systemctl ACTION UNIT`)."""

    START = "start"
    STOP = "stop"
    RESTART = "restart"
    RELOAD = "reload"
    TRY_RESTART = "try-restart"
    RELOAD_OR_RESTART = "reload-or-restart"
    KILL = "kill"
    RESET_FAILED = "reset-failed"
    ENABLE = "enable"
    DISABLE = "disable"
    MASK = "mask"
    UNMASK = "unmask"
    PRESET = "preset"


JOB_ACTIONS = frozenset(
    {
        UnitAction.START,
        UnitAction.STOP,
        UnitAction.RESTART,
        UnitAction.RELOAD,
        UnitAction.TRY_RESTART,
        UnitAction.RELOAD_OR_RESTART,
    }
)
FILE_ACTIONS = frozenset({UnitAction.ENABLE, UnitAction.DISABLE, UnitAction.MASK, UnitAction.UNMASK, UnitAction.PRESET})

# systemd's job results (JobRemoved); "running" is ours: the wait ended before the job did.
JobResult = Literal["done", "failed", "timeout", "canceled", "dependency", "skipped", "running", ""]
JOB_RESULTS = ("done", "failed", "timeout", "canceled", "dependency", "skipped")
JobMode = Literal["replace", "fail", "ignore-dependencies", "ignore-requirements"]


class Unit(msgspec.Struct, frozen=True, kw_only=True):
    """One unit systemd has loaded, as `systemctl list-units` shows it."""

    name: str
    description: str
    load_state: str  # loaded, not-found, bad-setting, error, masked
    active_state: str  # active, reloading, inactive, failed, activating, deactivating
    sub_state: str  # the type's own: running, exited, dead, waiting, listening ...
    following: str = ""  # the unit this one follows (devices), else empty
    job: str = ""  # the type of the job queued for it (start, stop ...), else empty


class UnitFile(msgspec.Struct, frozen=True, kw_only=True):
    """One unit file and its enablement, as `systemctl list-unit-files` shows it."""

    name: str
    path: str
    state: str  # enabled, disabled, static, masked, indirect, generated, transient, alias ...


class Timer(msgspec.Struct, frozen=True, kw_only=True):
    """A timer unit, its unit to trigger and when it last and next elapses (`systemctl list-timers`)."""

    name: str
    unit: str
    active_state: str
    sub_state: str
    last: float | None  # when it last triggered, Unix seconds
    next: float | None  # when it elapses next, Unix seconds (monotonic timers converted)
    last_result: str = ""  # the timer's result (success, resources ...)


class UnitDetails(msgspec.Struct, frozen=True, kw_only=True):
    """One unit in detail, as `systemctl show` knows it; the counters are None where not tracked."""

    name: str
    description: str
    load_state: str
    active_state: str
    sub_state: str
    unit_file_state: str  # enabled, disabled, static, masked ... or empty without a unit file
    unit_file_preset: str
    since: float | None  # when the active state last changed, Unix seconds
    main_pid: int | None
    memory_bytes: int | None
    cpu_seconds: float | None
    tasks: int | None
    restarts: int | None  # NRestarts: automatic restarts since the unit was last started by hand
    result: str  # success, exit-code, signal, core-dump, timeout, watchdog ...; empty for types without one
    fragment_path: str
    drop_in_paths: list[str]
    job: str  # the type of the job queued for it, else empty
    protected: bool  # the node refuses to stop, kill, disable or mask it without force (admin)
    requires: list[str]
    wants: list[str]
    required_by: list[str]
    wanted_by: list[str]
    after: list[str]
    before: list[str]
    conflicts: list[str]
    part_of: list[str]
    triggers: list[str]
    triggered_by: list[str]


class UnitActionPost(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The optional body of `POST .../units/{unit}/{action}`."""

    mode: JobMode = "replace"  # how the job joins systemd's queue (systemctl --job-mode)
    signal: str | int | None = None  # kill only: SIGTERM (default), TERM, 15 ...
    who: Literal["all", "main", "control"] = "all"  # kill only: which processes
    force: bool = False  # act on a protected unit (admin only)


class UnitFileChange(msgspec.Struct, frozen=True):
    """One change enabling or masking made to the unit files (symlink, unlink)."""

    type: str
    file: str
    destination: str


class UnitActionResult(msgspec.Struct, frozen=True, kw_only=True):
    """What an action did: its job's result (jobs only), the files it changed, the state after."""

    unit: str
    action: str
    job_result: JobResult  # done ... skipped; "running" when the wait ended first; "" without a job
    job: str  # the job's object path, while running or just finished; "" without a job
    changes: list[UnitFileChange]
    load_state: str
    active_state: str
    sub_state: str
    unit_file_state: str
    result: str  # the unit's own result (exit-code, timeout ...) after the job
    seconds: float  # how long the action took here
