"""The cluster's events on one node: this node's bus plus every live peer's event stream.

While at least one client is connected to `GET /api/v1/events`, this node keeps one link per
live member: a WebSocket to the member's internal per-node stream
(`/api/v1/cluster/internal/events`), authenticated by this node's signature
(appliance/cluster/nodeauth.py) over TLS checked against the cluster CA and the member's
certificate. A link carries all of that member's events; each client's subscription filters
them by its role and filters. One link per member serves any number of clients, so a
thousand idle clients cost this node a thousand queues, not four thousand connections.

Links resume after a break from the last id they saw (the member replays what its ring
still holds) and are dropped a little while after the last client left. Remote events are
kept in a bounded ring per member here too, so a client reconnecting to this node can resume.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable

import msgspec

from appliance.api.wsclient import WsClient
from appliance.events.bus import RING_SIZE, EventBus, Subscription
from appliance.events.types import Event, decoder

LINGER_SECONDS = 30.0  # links stay this long after the last client left
CHECK_SECONDS = 1.0  # how often the set of live members is compared with the links
RETRY_SECONDS = (0.2, 0.5, 1.0, 2.0, 5.0)

log = logging.getLogger(__name__)

Connect = Callable[[str, str, int], Awaitable[WsClient]]  # (member, api address, since id) -> stream


class ClusterFeed:
    """Gathers the live members' events for this node's clients (see the module docstring)."""

    def __init__(
        self,
        bus: EventBus,
        *,
        peers: Callable[[], dict[str, str]],
        connect: Connect,
        ring_size: int = RING_SIZE,
        linger: float = LINGER_SECONDS,
    ) -> None:
        self.bus = bus
        self._peers = peers  # live members other than this node: name -> API address
        self._connect = connect
        self._ring_size = ring_size
        self._linger = linger
        self.rings: dict[str, deque[Event]] = {}
        self.last: dict[str, int] = {}  # the last id seen from each member
        self.wanted: dict[str, int] = {}  # where a resuming client wants a new link to start
        self.clients: list[Subscription] = []
        self._links: dict[str, asyncio.Task[None]] = {}
        self._supervisor: asyncio.Task[None] | None = None
        self.connected: set[str] = set()

    # -- clients ----------------------------------------------------------------------------

    def add(self, subscription: Subscription, since: dict[str, int]) -> None:
        """Deliver the members' events to `subscription` too (it already has this node's)."""
        self.clients.append(subscription)
        for node, last in since.items():
            if node != self.bus.node and node not in self._links:
                self.wanted[node] = min(last, self.wanted.get(node, last))
        if self._supervisor is None or self._supervisor.done():
            self._supervisor = asyncio.create_task(self._supervise(), name="events-links")

    def remove(self, subscription: Subscription) -> None:
        subscription.close()
        with contextlib.suppress(ValueError):
            self.clients.remove(subscription)

    def since(self, node: str, last: int) -> tuple[list[Event], bool]:
        """Held events of member `node` after `last`, and whether none after it are missing."""
        ring = self.rings.get(node)
        if not ring:
            return [], node not in self.last or last >= self.last[node]
        return [e for e in ring if e.id > last], last + 1 >= ring[0].id

    # -- links ------------------------------------------------------------------------------

    async def _supervise(self) -> None:
        idle_since: float | None = None
        loop = asyncio.get_running_loop()
        while True:
            if self.clients:
                idle_since = None
                wanted = self._peers()
                for name, api in wanted.items():
                    link = self._links.get(name)
                    if link is None or link.done():
                        self._links[name] = asyncio.create_task(self._link(name, api), name=f"events-link:{name}")
                for name in [n for n in self._links if n not in wanted]:
                    self._links.pop(name).cancel()
            else:
                idle_since = idle_since if idle_since is not None else loop.time()
                if loop.time() - idle_since >= self._linger:
                    await self._drop_links()
                    return
            await asyncio.sleep(CHECK_SECONDS)

    async def _link(self, name: str, api: str) -> None:
        attempt = 0
        while True:
            since = self.last.get(name, self.wanted.pop(name, 0))
            try:
                stream = await self._connect(name, api, since)
            except Exception as exc:
                log.debug("events link to %s failed: %s", name, exc)
                await asyncio.sleep(RETRY_SECONDS[min(attempt, len(RETRY_SECONDS) - 1)])
                attempt += 1
                continue
            attempt = 0
            self.connected.add(name)
            try:
                while (message := await stream.recv()) is not None:
                    self._receive(name, message)
            except (OSError, asyncio.IncompleteReadError) as exc:
                log.debug("events link to %s broke: %s", name, exc)
            finally:
                self.connected.discard(name)
                await stream.close()
            await asyncio.sleep(RETRY_SECONDS[0])

    def _receive(self, name: str, message: str | bytes) -> None:
        for line in (message.encode() if isinstance(message, str) else message).splitlines():
            try:
                event = decoder.decode(line)
            except msgspec.DecodeError:
                continue  # heartbeats, lagged, gaps, and kinds a newer member knows
            if event.node != name or event.id <= self.last.get(name, 0):
                continue
            self.last[name] = event.id
            ring = self.rings.get(name)
            if ring is None:
                ring = self.rings[name] = deque(maxlen=self._ring_size)
            ring.append(event)
            for client in self.clients:
                client.offer(event)

    async def _drop_links(self) -> None:
        links = list(self._links.values())
        self._links.clear()
        for link in links:
            link.cancel()
        for link in links:
            with contextlib.suppress(asyncio.CancelledError):
                await link

    async def close(self) -> None:
        for client in list(self.clients):
            self.remove(client)
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
        await self._drop_links()
