"""The node subsystem: this machine's status (`/api/v1/node`, and `/api/v1/nodes/{name}`'s
answer through the cluster routes), its facts published to the cluster every `PUBLISH_SECONDS`, and the one
report of its inventory to the PXE boot server it booted from.

The report is a subsystem of its own (`Node.enlist`), listed last: it goes out once the rest
of the node has started, never before.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from appliance import __version__
from appliance.node.controller import node_routes
from appliance.node.enlist import Enlister, EnlistTarget
from appliance.node.facts import publish_facts
from appliance.node.host import HostProbe
from appliance.node.inventory import collect
from appliance.node.service import NodeService
from appliance.subsystem import Core, Subsystem, Task

PUBLISH_SECONDS = 30.0  # how often this node's facts are checked for changes

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Node:
    """The node subsystem, its inventory report, and the service the cluster routes answer with."""

    subsystem: Subsystem
    enlist: Subsystem
    service: NodeService


def build(core: Core, *, host: HostProbe, enlist: EnlistTarget | None) -> Node:
    service = NodeService(
        db=core.db,
        host=host,
        name=core.name,
        node_id=core.node.node_id,
        cluster_id=core.node.cluster_id,
        version=__version__,
        data_dir=core.data_dir,
    )

    async def publish() -> None:
        while True:
            try:
                await publish_facts(core.membership, core.name, service.get, core.clock)
            except Exception:
                log.exception("publishing this node's facts failed")
            await asyncio.sleep(PUBLISH_SECONDS)

    tasks = []
    if enlist is not None:
        enlister = Enlister(enlist, lambda: collect(name=core.name, version=__version__))
        tasks.append(Task("enlist", enlister.run))
    return Node(
        subsystem=Subsystem(name="node", routes=[node_routes(service)], tasks=[Task("publish-facts", publish)]),
        enlist=Subsystem(name="enlist", tasks=tasks),
        service=service,
    )
