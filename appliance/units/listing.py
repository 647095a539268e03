"""Pure conversions from what systemd's D-Bus API answers to the units API's types, and the
filters of the list routes.

No D-Bus here: the adapter (appliance/units/systemd.py) hands in plain tuples and property
dicts, so the filtering, the sentinel handling (systemd says "not tracked" with the largest
unsigned value, "never" with 0) and the object-path escaping are tested without a bus.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

from appliance.units.names import UNIT_TYPES
from appliance.units.types import Timer, Unit, UnitDetails, UnitFile

U64_MAX = (1 << 64) - 1
UNIT_PATH_PREFIX = "/org/freedesktop/systemd1/unit/"
_ESCAPED = re.compile(r"_([0-9a-fA-F]{2})")


class FilterError(ValueError):
    """A filter value the list routes do not accept; the message says which and why."""


@dataclass(frozen=True)
class UnitFilter:
    """Which units a list shows: every given criterion must hold (values within one are alternatives)."""

    types: frozenset[str] = frozenset()
    load: frozenset[str] = frozenset()
    active: frozenset[str] = frozenset()
    sub: frozenset[str] = frozenset()
    states: frozenset[str] = frozenset()  # unit-file states (list of unit files)
    pattern: str = ""  # a shell glob on the name, as `systemctl list-units 'ssh*'`

    @classmethod
    def parse(
        cls,
        *,
        types: str | None = None,
        load: str | None = None,
        active: str | None = None,
        sub: str | None = None,
        states: str | None = None,
        pattern: str | None = None,
    ) -> UnitFilter:
        """From the query parameters (comma-separated alternatives); FilterError on a bad one."""
        kinds = _split(types)
        unknown = sorted(kinds - set(UNIT_TYPES))
        if unknown:
            raise FilterError(f"type: unknown unit type {', '.join(unknown)} (one of {', '.join(UNIT_TYPES)})")
        for name, value in (("load", load), ("active", active), ("sub", sub), ("state", states)):
            if any(not re.fullmatch(r"[a-z-]+", v) for v in _split(value)):
                raise FilterError(f"{name}: states are lowercase words like active or not-found")
        if pattern is not None and (not pattern or len(pattern) > 256 or not pattern.isprintable()):
            raise FilterError("pattern: a shell glob of at most 256 printable characters")
        return cls(
            types=frozenset(kinds),
            load=frozenset(_split(load)),
            active=frozenset(_split(active)),
            sub=frozenset(_split(sub)),
            states=frozenset(_split(states)),
            pattern=pattern or "",
        )

    def matches_name(self, name: str) -> bool:
        if self.types and name.rsplit(".", 1)[-1] not in self.types:
            return False
        return not self.pattern or fnmatchcase(name, self.pattern)

    def matches(self, unit: Unit) -> bool:
        return (
            self.matches_name(unit.name)
            and (not self.load or unit.load_state in self.load)
            and (not self.active or unit.active_state in self.active)
            and (not self.sub or unit.sub_state in self.sub)
        )

    def matches_file(self, unit_file: UnitFile) -> bool:
        return self.matches_name(unit_file.name) and (not self.states or unit_file.state in self.states)


def _split(value: str | None) -> set[str]:
    return {v.strip() for v in (value or "").split(",") if v.strip()}


def units_from(rows: Iterable[Sequence[Any]], keep: UnitFilter) -> list[Unit]:
    """`ListUnits` rows (name, description, load, active, sub, following, path, job id, job type,
    job path) as Units that pass `keep`, sorted by name."""
    units = [
        Unit(
            name=row[0],
            description=row[1],
            load_state=row[2],
            active_state=row[3],
            sub_state=row[4],
            following=row[5],
            job=row[8] if row[7] else "",
        )
        for row in rows
    ]
    return sorted((u for u in units if keep.matches(u)), key=lambda u: u.name)


def unit_files_from(rows: Iterable[Sequence[Any]], keep: UnitFilter) -> list[UnitFile]:
    """`ListUnitFiles` rows (path, state) as UnitFiles that pass `keep`, sorted by name."""
    files = [UnitFile(name=str(path).rsplit("/", 1)[-1], path=str(path), state=str(state)) for path, state in rows]
    return sorted((f for f in files if keep.matches_file(f)), key=lambda f: (f.name, f.path))


def unit_name_of_path(path: str) -> str | None:
    """The unit name of a systemd unit object path (`.../unit/ssh_2eservice` -> ssh.service)."""
    if not path.startswith(UNIT_PATH_PREFIX):
        return None
    escaped = path[len(UNIT_PATH_PREFIX) :]
    return _ESCAPED.sub(lambda m: chr(int(m.group(1), 16)), escaped) if escaped else None


def counter(value: Any) -> int | None:
    """A systemd counter: None where it says "not tracked" (the largest u64) or gives nothing."""
    if not isinstance(value, int) or isinstance(value, bool) or value == U64_MAX or value < 0:
        return None
    return value


def timestamp(usec: Any) -> float | None:
    """A systemd realtime timestamp (µs) as Unix seconds; None for "never" (0 or u64 max)."""
    found = counter(usec)
    return None if not found else found / 1_000_000


def _strings(props: Mapping[str, Any], key: str) -> list[str]:
    value = props.get(key)
    return sorted(str(v) for v in value) if isinstance(value, list) else []


def details_from(name: str, props: Mapping[str, Any], *, protected: bool) -> UnitDetails:
    """`GetAll` of every interface of a unit object as UnitDetails."""
    cpu = counter(props.get("CPUUsageNSec"))
    main_pid = counter(props.get("MainPID"))
    job = props.get("Job")
    return UnitDetails(
        name=str(props.get("Id") or name),
        description=str(props.get("Description", "")),
        load_state=str(props.get("LoadState", "")),
        active_state=str(props.get("ActiveState", "")),
        sub_state=str(props.get("SubState", "")),
        unit_file_state=str(props.get("UnitFileState", "")),
        unit_file_preset=str(props.get("UnitFilePreset", "")),
        since=timestamp(props.get("StateChangeTimestamp")),
        main_pid=main_pid or None,
        memory_bytes=counter(props.get("MemoryCurrent")),
        cpu_seconds=None if cpu is None else cpu / 1e9,
        tasks=counter(props.get("TasksCurrent")),
        restarts=counter(props.get("NRestarts")),
        result=str(props.get("Result", "")),
        fragment_path=str(props.get("FragmentPath", "")),
        drop_in_paths=_strings(props, "DropInPaths"),
        job=_job_type(job),
        protected=protected,
        requires=_strings(props, "Requires"),
        wants=_strings(props, "Wants"),
        required_by=_strings(props, "RequiredBy"),
        wanted_by=_strings(props, "WantedBy"),
        after=_strings(props, "After"),
        before=_strings(props, "Before"),
        conflicts=_strings(props, "Conflicts"),
        part_of=_strings(props, "PartOf"),
        triggers=_strings(props, "Triggers"),
        triggered_by=_strings(props, "TriggeredBy"),
    )


def _job_type(job: Any) -> str:
    """The `Job` property is (id, path), id 0 when there is none; its type needs another call,
    so the details say "queued" (the unit list names the type)."""
    if isinstance(job, list | tuple) and len(job) == 2 and isinstance(job[0], int) and job[0]:
        return "queued"
    return ""


def timer_from(name: str, props: Mapping[str, Any], *, now: float, monotonic_now_usec: int) -> Timer:
    """A timer's properties (Unit and Timer interfaces) as a Timer. `next` is the earlier of the
    realtime and the monotonic elapse; a monotonic one is converted with the clocks' offset at
    `now` (Unix seconds) and `monotonic_now_usec` (CLOCK_MONOTONIC, µs), as list-timers does."""
    realtime = timestamp(props.get("NextElapseUSecRealtime"))
    mono = counter(props.get("NextElapseUSecMonotonic"))
    from_mono = now + (mono - monotonic_now_usec) / 1_000_000 if mono else None
    candidates = [t for t in (realtime, from_mono) if t is not None]
    return Timer(
        name=name,
        unit=str(props.get("Unit", "")),
        active_state=str(props.get("ActiveState", "")),
        sub_state=str(props.get("SubState", "")),
        last=timestamp(props.get("LastTriggerUSec")),
        next=min(candidates) if candidates else None,
        last_result=str(props.get("Result", "")),
    )
