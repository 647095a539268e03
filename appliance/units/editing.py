"""The unit-file and transient-unit routes as a subsystem of their own, until the units
subsystem takes them over: the lead folds `unit_file_handlers` onto its per-node router and
this builder goes away. Kept thin on purpose: it makes the adapters (the system bus, the
managed root's unit files) and puts the handlers on a per-node router, nothing more.
"""

from __future__ import annotations

from pathlib import Path

from appliance.api.pernode import node_router
from appliance.subsystem import Core, Subsystem
from appliance.units.bus import SystemBus
from appliance.units.edit_routes import unit_file_handlers
from appliance.units.transient import TransientRunner
from appliance.units.unitfiles import UnitFiles


def build(core: Core, *, bus: SystemBus, host_root: Path) -> Subsystem:
    """Unit-file editing and transient units for the machine behind `bus` and `host_root`."""
    handlers = unit_file_handlers(UnitFiles(host_root, bus), TransientRunner(bus))
    return Subsystem(
        name="unit-files",
        routes=[node_router("/api/v1/nodes", handlers, forwarder=core.forwarder, tags=["units"])],
        stop=bus.close,
    )
