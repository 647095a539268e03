"""The node resource's logic: assemble `Node` from host facts and the node's stored settings.

Host facts that change slowly (memory, disk, addresses) are cached for a second, refreshed
by one request at a time: status is polled by dashboards and load balancers, and a netlink
dump per request would cost more than the rest of the request. Facts that never change
while running (CPU, kernel) are read once. Only the uptime is computed per request.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import msgspec

from appliance.node.host import HostProbe
from appliance.node.types import Node, NodePut
from appliance.store.database import Database

FACTS_TTL_SECONDS = 1.0


class NodeService:
    """Reads and updates this node's own resource."""

    def __init__(
        self,
        *,
        db: Database,
        host: HostProbe,
        name: str,
        node_id: str,
        cluster_id: str,
        version: str,
        data_dir: Path,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._db = db
        self._host = host
        self._name = name
        self._node_id = node_id
        self._cluster_id = cluster_id
        self._version = version
        self._data_dir = data_dir
        self._monotonic = monotonic
        self._started_mono = monotonic()
        self._started_at = clock()
        self._cpu = host.cpu()
        self._kernel = host.kernel()
        self._snapshot: Node | None = None  # the node minus uptime, rebuilt after FACTS_TTL_SECONDS
        self._snapshot_at = 0.0
        # One refresh at a time: without it, every request arriving while the netlink dump
        # ran started one of its own (about 50 dumps a second under load, each leaving ~1000
        # objects in reference cycles for the collector).
        self._refreshing = asyncio.Lock()
        self._settings = self._load_settings()

    async def get(self) -> Node:
        if self._stale():
            async with self._refreshing:
                if self._stale():  # the first caller of a burst refreshes; the others wait for it
                    await self._refresh()
        snapshot = self._snapshot
        assert snapshot is not None  # refreshed just above
        return msgspec.structs.replace(snapshot, uptime_seconds=round(self._monotonic() - self._started_mono, 3))

    def _stale(self) -> bool:
        return self._snapshot is None or self._monotonic() - self._snapshot_at >= FACTS_TTL_SECONDS

    async def _refresh(self) -> None:
        now = self._monotonic()
        self._snapshot = Node(
            name=self._name,
            node_id=self._node_id,
            cluster_id=self._cluster_id,
            version=self._version,
            uptime_seconds=0.0,
            started_at=self._started_at,
            kernel=self._kernel,
            cpu=self._cpu,
            memory=self._host.memory(),
            disk=self._host.disk(self._data_dir),
            addresses=await self._host.addresses(),
            description=self._settings.description,
            labels=self._settings.labels,
        )
        self._snapshot_at = now

    async def update(self, put: NodePut) -> Node:
        """Replace the operator-set fields and return the node as it now is."""
        self._db.set_meta("settings", msgspec.json.encode(put).decode())
        self._settings = put
        self._snapshot = None
        return await self.get()

    def _load_settings(self) -> NodePut:
        raw = self._db.get_meta("settings")
        return NodePut() if raw is None else msgspec.json.decode(raw, type=NodePut)
