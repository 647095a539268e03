"""The events subsystem: the cluster-wide and per-node event WebSockets and the gatherer.

The bus itself (`EventBus`) is part of the `Core` that `create_app` builds, because every
subsystem publishes to it or subscribes to it in its own builder (`Subsystem.events` lists
the types a subsystem publishes). This builder adds what serves the bus: the routes, the
cluster feed that gathers the other members' streams for this node's clients, and the
configuration store's changes (the store is the core's, so its events are published here).

It is listed first in `create_app`: its start binds the bus to the loop and starts the
subscribers' handler tasks before any other subsystem publishes, and its stop (last) closes
the member links and then the bus.
"""

from __future__ import annotations

import asyncio

from appliance.api.upstream import split_addr
from appliance.api.wsclient import WsClient
from appliance.cluster.nodeauth import NodeVerifier, sign_headers
from appliance.cluster.service import ClusterService
from appliance.events import sources
from appliance.events.controller import HEARTBEAT_SECONDS, STREAM_PATH, events_routes
from appliance.events.gather import ClusterFeed
from appliance.events.types import ConfigChanged
from appliance.subsystem import Core, Subsystem

CONNECT_SECONDS = 5.0


def build(core: Core, *, cluster: ClusterService, heartbeat: float = HEARTBEAT_SECONDS) -> Subsystem:
    """The events routes and feed on `core.events`; `cluster` checks the members' certificates."""
    bus = core.events
    config = core.config
    config.on_change(sources.config_listener(bus, lambda kind, key: config.get(kind, key) is None))
    identity = core.identity

    def peers() -> dict[str, str]:
        found = {}
        for name in core.membership.live_names():
            member = core.membership.member_api(name)
            if name != core.name and member is not None and member[1]:
                found[name] = member[1]
        return found

    async def connect(name: str, api: str, since: int) -> WsClient:
        host, port = split_addr(api)
        headers = sign_headers(
            identity.node_cert, identity.node_key, method="GET", path=STREAM_PATH, body=b"", now=core.clock()
        )
        async with asyncio.timeout(CONNECT_SECONDS):
            return await WsClient.open(
                host,
                port,
                f"{STREAM_PATH}?since={since}",
                context=core.forwarder.context,
                headers=headers,
                peer_check=lambda der: core.forwarder.check_answering_node(der, name),
            )

    feed = ClusterFeed(bus, peers=peers, connect=connect)
    verifier = NodeVerifier(identity.ca_cert, cluster.cert_refusal, core.clock)

    async def start() -> None:
        bus.start()

    async def stop() -> None:
        await feed.close()
        await bus.stop()

    return Subsystem(
        name="events",
        routes=events_routes(bus=bus, feed=feed, forwarder=core.forwarder, verifier=verifier, heartbeat=heartbeat),
        start=start,
        stop=stop,
        events=[ConfigChanged],
    )
