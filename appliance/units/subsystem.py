"""The units subsystem: a node's systemd units over the system bus, their routes and events.

The bus connection is the node's `SystemBus` (appliance/units/bus.py), handed in by
`create_app`. The watcher's task keeps it connected and subscribed to systemd's signals,
publishes `unit` events, and sets the `units` readiness line; that line is not critical: a
node whose machine has no reachable system bus (a development machine, a container whose
PID 1 is not systemd) starts and serves everything else, its `/readyz` says why units are
unavailable, and the unit routes answer 503 with the same reason.
"""

from __future__ import annotations

from appliance.events.types import UnitChanged
from appliance.subsystem import Core, ReadinessCheck, Subsystem, Task
from appliance.units.bus import SystemBus
from appliance.units.controller import unit_routes
from appliance.units.jobs import JobTracker
from appliance.units.service import UnitService
from appliance.units.systemd import Systemd
from appliance.units.watch import UnitWatch

READINESS = "units"


def build(core: Core, *, bus: SystemBus) -> Subsystem:
    jobs = JobTracker()
    systemd = Systemd(bus, jobs)
    service = UnitService(systemd, clock=core.clock, monotonic=core.monotonic)

    def state(ready: bool, detail: str) -> None:
        core.readiness.set(READINESS, ready, detail)

    watch = UnitWatch(bus, jobs, core.events.publish, state=state, changed=systemd.changed)

    async def stop() -> None:
        watch.close()
        await bus.close()

    return Subsystem(
        name="units",
        routes=[unit_routes(service, forwarder=core.forwarder)],
        tasks=[Task("units-watch", watch.run)],
        stop=stop,
        readiness=[ReadinessCheck(READINESS, critical=False)],
        events=[UnitChanged],
    )
