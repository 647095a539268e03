"""The units subsystem: a node's systemd units over the system bus, their routes and events.

The bus connection is the node's `SystemBus` (appliance/units/bus.py), handed in by
`create_app`. The watcher's task keeps it connected and subscribed to systemd's signals,
publishes `unit` events, and sets the `units` readiness line; that line is not critical: a
node whose machine has no reachable system bus (a development machine, a container whose
PID 1 is not systemd) starts and serves everything else, its `/readyz` says why units are
unavailable, and the unit routes answer 503 with the same reason. Unit files and transient
runs (appliance/units/unitfiles.py, transient.py, edit_routes.py) share the bus; their files
are those under `host_root` (`/` but for a node managing a container from outside).
"""

from __future__ import annotations

from pathlib import Path

from appliance.api.pernode import node_router
from appliance.events.types import UnitChanged
from appliance.subsystem import Core, ReadinessCheck, Subsystem, Task
from appliance.units.bus import SystemBus
from appliance.units.controller import unit_routes
from appliance.units.edit_routes import unit_file_handlers
from appliance.units.jobs import JobTracker
from appliance.units.service import UnitService
from appliance.units.systemd import Systemd
from appliance.units.transient import TransientRunner
from appliance.units.unitfiles import UnitFiles
from appliance.units.watch import UnitWatch

READINESS = "units"
UNIT_FILES_TAG = "unit files"  # apart from "units": the API fuzz runs leave root-running content alone


def build(core: Core, *, bus: SystemBus, host_root: Path = Path("/")) -> Subsystem:
    """Units, unit files and transient runs of the machine behind `bus`, its files under `host_root`."""
    jobs = JobTracker()
    systemd = Systemd(bus, jobs)
    service = UnitService(systemd, clock=core.clock, monotonic=core.monotonic)

    def state(ready: bool, detail: str) -> None:
        core.readiness.set(READINESS, ready, detail)

    files = unit_file_handlers(UnitFiles(host_root, bus), TransientRunner(bus, jobs))
    watch = UnitWatch(bus, jobs, core.events.publish, state=state, changed=systemd.changed)

    async def stop() -> None:
        watch.close()
        await bus.close()

    return Subsystem(
        name="units",
        routes=[
            unit_routes(service, forwarder=core.forwarder),
            node_router("/api/v1/nodes", files, forwarder=core.forwarder, tags=[UNIT_FILES_TAG]),
        ],
        tasks=[Task("units-watch", watch.run)],
        stop=stop,
        readiness=[ReadinessCheck(READINESS, critical=False)],
        events=[UnitChanged],
    )
