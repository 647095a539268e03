"""The events subsystem: the bus, its sources, the cluster feed and the sockets, built in one call.

`build_events` connects the existing hooks (configuration and node-state stores, membership,
audit log) to a new bus and returns what the app needs: the bus for other subsystems to
subscribe to, the routes, and a lifespan that starts the bus's handler tasks first and stops
the feed and the bus last.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from cryptography import x509
from litestar import Litestar, Router

from appliance.audit.anchor import ANCHOR_KEY
from appliance.audit.log import AuditLog
from appliance.cluster.forward import Forwarder
from appliance.cluster.nodeauth import NodeVerifier, sign_headers
from appliance.cluster.service import ClusterService
from appliance.cluster.transport import split_addr
from appliance.events import sources
from appliance.events.bus import EventBus
from appliance.events.controller import HEARTBEAT_SECONDS, STREAM_PATH, events_routes
from appliance.events.gather import ClusterFeed
from appliance.events.types import ConfigChanged, Event, FactsChanged, MembershipChanged
from appliance.events.wsclient import WsClient
from appliance.identity.store import NodeIdentity
from appliance.store.config import ConfigStore

CONNECT_SECONDS = 5.0


@dataclass
class Events:
    """The built subsystem."""

    bus: EventBus
    feed: ClusterFeed
    routes: Router

    @asynccontextmanager
    async def lifespan(self, _: Litestar) -> AsyncIterator[None]:
        self.bus.start()
        try:
            yield
        finally:
            await self.feed.close()
            await self.bus.stop()


def build_events(
    *,
    identity: NodeIdentity,
    config: ConfigStore,
    cluster: ClusterService,
    audit: AuditLog,
    forwarder: Forwarder,
    clock: Callable[[], float] = time.time,
    node_cert: Callable[[], x509.Certificate] | None = None,
    heartbeat: float = HEARTBEAT_SECONDS,
) -> Events:
    """Make the bus, hook the sources to it, and the sockets that serve it."""
    bus = EventBus(identity.name, clock=clock)
    config.on_change(sources.config_listener(bus, lambda kind, key: config.get(kind, key) is None))
    cluster.node_state.on_change(sources.node_state_listener(bus))
    cluster.on_event(sources.membership_listener(bus))
    audit.on_append(sources.audit_listener(bus))
    current_cert = node_cert or (lambda: identity.node_cert)

    def peers() -> dict[str, str]:
        found = {}
        for name in cluster.live_names():
            member = cluster.member_api(name)
            if name != identity.name and member is not None and member[1]:
                found[name] = member[1]
        return found

    async def connect(name: str, api: str, since: int) -> WsClient:
        host, port = split_addr(api)
        headers = sign_headers(current_cert(), identity.node_key, method="GET", path=STREAM_PATH, body=b"", now=clock())
        async with asyncio.timeout(CONNECT_SECONDS):
            return await WsClient.open(
                host,
                port,
                f"{STREAM_PATH}?since={since}",
                context=forwarder.context,
                headers=headers,
                peer_check=lambda der: forwarder.check_answering_node(der, name),
            )

    feed = ClusterFeed(bus, peers=peers, connect=connect)
    verifier = NodeVerifier(identity.ca_cert, cluster.cert_refusal, clock)
    routes = events_routes(bus=bus, feed=feed, forwarder=forwarder, verifier=verifier, heartbeat=heartbeat)
    return Events(bus, feed, routes)


# -- reactions: how other subsystems subscribe (wired in appliance/app.py) --------------------


def anchor_heads(
    offer: Callable[[str, bytes], object], me: str, published: Callable[[], dict[str, dict[str, bytes]]]
) -> Callable[[Event], None]:
    """Offer each audit-chain head another member published to the anchor book."""

    def handle(event: Event) -> None:
        if isinstance(event, FactsChanged) and event.owner != me and ANCHOR_KEY in event.keys:
            value = published().get(event.owner, {}).get(ANCHOR_KEY)
            if value is not None:
                offer(event.owner, value)

    return handle


def on_revoked(forget: Callable[[str], object]) -> Callable[[Event], None]:
    """Call `forget(member)` when a member's certificate is revoked (removed from the cluster)."""

    def handle(event: Event) -> None:
        if isinstance(event, MembershipChanged) and event.state == "revoked":
            forget(event.member)

    return handle


def on_membership(kick: Callable[[], object]) -> Callable[[Event], None]:
    """Call `kick()` after each membership change."""

    def handle(event: Event) -> None:
        if isinstance(event, MembershipChanged):
            kick()

    return handle


def on_config_kind(kind: str, kick: Callable[[], object]) -> Callable[[Event], None]:
    """Call `kick()` after each change to configuration entries of `kind`."""

    def handle(event: Event) -> None:
        if isinstance(event, ConfigChanged) and event.kind == kind:
            kick()

    return handle
