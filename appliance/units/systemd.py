"""The adapter to systemd's manager on the system bus: the calls the units service makes.

Thin on purpose: each method is one or two D-Bus calls of `org.freedesktop.systemd1.Manager`
(or a unit object's properties) with a deadline, returning what systemd answered as plain
values; appliance/units/listing.py turns those into API types and appliance/units/service.py
decides what may be called. Errors are the bus's: `BusUnavailable` (no bus, no answer in time)
and `BusError` (systemd's error reply, by name).

Deliberately left out: transient units and writing unit files (their own modules), and
anything PolicyKit would ask about (the node calls as root).
"""

from __future__ import annotations

import asyncio
from typing import Any

from appliance.units.bus import MANAGER, PROPERTIES, SYSTEMD_PATH, BusError, SystemBus
from appliance.units.jobs import JobTracker
from appliance.units.types import FILE_ACTIONS, UnitAction

CALL_SECONDS = 4.0  # below the forwarder's deadline, so a forwarded request gets our answer, not a 504
NO_SUCH_UNIT = "org.freedesktop.systemd1.NoSuchUnit"

# The manager's method for each job action (all take the unit's name and a job mode).
JOB_METHODS = {
    UnitAction.START: "StartUnit",
    UnitAction.STOP: "StopUnit",
    UnitAction.RESTART: "RestartUnit",
    UnitAction.RELOAD: "ReloadUnit",
    UnitAction.TRY_RESTART: "TryRestartUnit",
    UnitAction.RELOAD_OR_RESTART: "ReloadOrRestartUnit",
}


class Systemd:
    """systemd's manager, reached through the node's `SystemBus`; `jobs` learns of ended jobs
    from the watcher (appliance/units/watch.py), which subscribes before any call is made."""

    def __init__(self, bus: SystemBus, jobs: JobTracker, *, deadline: float = CALL_SECONDS) -> None:
        self.bus = bus
        self.jobs = jobs
        self.deadline = deadline
        # The loaded units as ListUnits last answered, while no signal has said anything changed
        # since: the watcher calls `changed` on every signal of systemd's and on reconnecting.
        self._units: list[list[Any]] | None = None
        self._generation = 0

    def changed(self) -> None:
        """Something in systemd changed (a signal): the next unit list asks systemd again."""
        self._generation += 1
        self._units = None

    async def _manager(self, member: str, signature: str = "", body: list[Any] | None = None) -> list[Any]:
        return await self.bus.call(
            path=SYSTEMD_PATH,
            interface=MANAGER,
            member=member,
            signature=signature,
            body=body or [],
            deadline=self.deadline,
        )

    async def list_units(self) -> list[list[Any]]:
        """Every loaded unit: (name, description, load, active, sub, following, path, job id, job type, job path).

        Answered from the last list while systemd has signalled no change since (and the
        connection that would have carried the signal is still open): a unit list is what the
        UI and scripts poll, and the answer only changes when a signal says so."""
        if self._units is not None and self.bus.connected:
            return self._units
        generation = self._generation
        (rows,) = await self._manager("ListUnits")
        listed = list(rows)
        if generation == self._generation and self.bus.connected:
            self._units = listed  # no signal arrived while it was asked: it is current
        return listed

    async def list_unit_files(self) -> list[list[Any]]:
        """Every unit file: (path, state)."""
        (rows,) = await self._manager("ListUnitFiles")
        return list(rows)

    async def unit_path(self, name: str) -> str:
        """The object path of unit `name`, loading it when it is not (its LoadState says whether it exists)."""
        try:
            (path,) = await self._manager("GetUnit", "s", [name])
        except BusError as exc:
            if exc.name != NO_SUCH_UNIT:
                raise
            (path,) = await self._manager("LoadUnit", "s", [name])
        return str(path)

    async def properties(self, path: str, interface: str = "") -> dict[str, Any]:
        """The properties of a unit object: of `interface`, or of all its interfaces ("")."""
        (props,) = await self.bus.call(
            path=path, interface=PROPERTIES, member="GetAll", signature="s", body=[interface], deadline=self.deadline
        )
        return {name: variant.value for name, variant in props.items()}

    async def properties_of(self, paths: list[str], interface: str = "") -> list[dict[str, Any]]:
        """`properties` of many objects at once (one round trip's latency, not N)."""
        return list(await asyncio.gather(*(self.properties(p, interface) for p in paths)))

    async def queue_job(self, action: UnitAction, name: str, mode: str) -> str:
        """Queue the job of `action` for `name`; the job's object path."""
        (job,) = await self._manager(JOB_METHODS[action], "ss", [name, mode])
        return str(job)

    async def kill(self, name: str, who: str, signal: int) -> None:
        await self._manager("KillUnit", "ssi", [name, who, signal])

    async def reset_failed(self, name: str) -> None:
        await self._manager("ResetFailedUnit", "s", [name])

    async def unit_files(self, action: UnitAction, name: str, *, force: bool = False) -> list[tuple[str, str, str]]:
        """Enable, disable, mask, unmask or preset `name`'s unit file; the changes made (type, file,
        destination). The daemon is not reloaded here: `reload` after."""
        assert action in FILE_ACTIONS
        files = [[name], False]  # not --runtime: the change survives a reboot
        if action is UnitAction.ENABLE:
            _carries, changes = await self._manager("EnableUnitFiles", "asbb", [*files, force])
        elif action is UnitAction.PRESET:
            _carries, changes = await self._manager("PresetUnitFiles", "asbb", [*files, force])
        elif action is UnitAction.MASK:
            (changes,) = await self._manager("MaskUnitFiles", "asbb", [*files, force])
        elif action is UnitAction.UNMASK:
            (changes,) = await self._manager("UnmaskUnitFiles", "asb", files)
        else:
            (changes,) = await self._manager("DisableUnitFiles", "asb", files)
        return [(str(t), str(f), str(d)) for t, f, d in changes]

    async def reload(self) -> None:
        """`systemctl daemon-reload`: systemd answers once it has reloaded."""
        await self._manager("Reload")

    async def version(self) -> str:
        (value,) = await self.bus.call(
            path=SYSTEMD_PATH, interface=PROPERTIES, member="Get", signature="ss", body=[MANAGER, "Version"]
        )
        return str(value.value)
