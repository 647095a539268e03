"""Unit changes from systemd's signals, coalesced into one event per unit and burst.

systemd tells subscribers about every step: a service start is a dozen `PropertiesChanged`
signals (the Unit and Service interfaces, activating, then active) plus `JobNew`/`JobRemoved`,
and a daemon reload touches every unit at once. Clients want to know which unit to refresh
and its state now, not each step, so changes are gathered for a short window (a few ms, far
below what a person notices) and each unit that changed in it becomes one `UnitChanged`
carrying its latest load/active/sub state and the result of a job that ended. A change that
leaves the unit where it was (a property other than its state, a unit loaded and unloaded
again within the window, as systemd does for units it garbage-collects) is not published.

Pure: the watcher (appliance/units/watch.py) feeds it decoded signals and drains it on a timer.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from appliance.events.types import UnitChanged

STATE_KEYS = {"LoadState": "load", "ActiveState": "active", "SubState": "sub"}


@dataclass
class _Pending:
    load: str | None = None
    active: str | None = None
    sub: str | None = None
    job_result: str = ""
    added: bool = False
    removed: bool = False


@dataclass(frozen=True)
class Known:
    load: str = ""
    active: str = ""
    sub: str = ""


@dataclass
class Coalescer:
    """Changes gathered since the last `drain`, against the last state published per unit."""

    known: dict[str, Known] = field(default_factory=dict)
    _pending: dict[str, _Pending] = field(default_factory=dict)

    def snapshot(self, rows: Iterable[tuple[str, str, str, str]]) -> None:
        """The state of every loaded unit (name, load, active, sub), e.g. from `ListUnits` at connect."""
        self.known = {name: Known(load, active, sub) for name, load, active, sub in rows}

    def __len__(self) -> int:
        return len(self._pending)

    def _entry(self, unit: str) -> _Pending:
        entry = self._pending.get(unit)
        if entry is None:
            entry = self._pending[unit] = _Pending()
        return entry

    def properties(self, unit: str, changed: Mapping[str, Any]) -> bool:
        """A `PropertiesChanged` of the unit's Unit interface; True when it touched its state."""
        values = {STATE_KEYS[k]: str(v) for k, v in changed.items() if k in STATE_KEYS}
        if not values:
            return False
        entry = self._entry(unit)
        for key, value in values.items():
            setattr(entry, key, value)
        return True

    def job_removed(self, unit: str, result: str) -> None:
        self._entry(unit).job_result = result

    def unit_new(self, unit: str) -> None:
        entry = self._entry(unit)
        entry.added, entry.removed = True, False

    def unit_removed(self, unit: str) -> None:
        self._entry(unit).removed = True

    def drain(self) -> list[UnitChanged]:
        """One event per unit whose state changed (or whose job ended) since the last drain."""
        events: list[UnitChanged] = []
        pending, self._pending = self._pending, {}
        for unit, entry in pending.items():
            before = self.known.get(unit)
            old = before or Known()
            now = Known(
                load=entry.load if entry.load is not None else old.load,
                active=entry.active if entry.active is not None else old.active,
                sub=entry.sub if entry.sub is not None else old.sub,
            )
            if entry.removed:
                self.known.pop(unit, None)
                if entry.added or before is None:
                    # loaded and dropped within the window (systemd's garbage collection)
                    if entry.job_result:
                        events.append(_event(unit, now, entry.job_result, unloaded=True))
                    continue
                events.append(_event(unit, now, entry.job_result, unloaded=True))
                continue
            self.known[unit] = now
            if now == before and not entry.job_result:
                continue
            if before is None and not entry.job_result and entry.added and now == Known():
                continue  # a unit loaded without a state yet: its PropertiesChanged will say
            events.append(_event(unit, now, entry.job_result, unloaded=False))
        return events


def _event(unit: str, state: Known, job_result: str, *, unloaded: bool) -> UnitChanged:
    return UnitChanged(
        unit=unit,
        load_state=state.load,
        active_state=state.active,
        sub_state=state.sub,
        job_result=job_result,
        unloaded=unloaded,
    )
