"""The event WebSockets: the whole cluster's events, one node's events, and the internal stream.

- `GET /api/v1/events` (WebSocket): every live member's events through this node, each
  client seeing only the types its role may read (`EVENT_PERMISSIONS`). Query parameters:
  `type` and `node` (comma-separated, or repeated) narrow it; `since=n0:123,n2:456` resumes
  after those ids where they are still held (a `gap` message names each node whose events
  after the given id are no longer held).
- `GET /api/v1/nodes/{name}/events` (WebSocket): only that node's events; in a per-node
  router (appliance/api/pernode.py), so when `name` is another node the router relays the
  socket to it over mTLS (appliance/api/forward_ws.py) and the handler runs only there.
- `GET /api/v1/cluster/internal/events` (WebSocket, members only): this node's own events,
  all types, for the gathering node (appliance/events/gather.py) to filter per client.

Messages are text frames holding one or more JSON objects separated by newlines (a burst
goes out in one frame): events, `{"type":"heartbeat","at":...}` after `HEARTBEAT_SECONDS`
without an event, `{"type":"gap",...}`, and a final `{"type":"lagged"}` before this node
closes (code 1013) a client whose queue overflowed because it did not read fast enough.
The client reconnects with `since` to resume. Client messages are ignored.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any

import msgspec
from litestar import Router, WebSocket, websocket
from litestar.exceptions import WebSocketDisconnect
from litestar.params import FromPath

from appliance.api.forward import Forwarder
from appliance.api.pernode import node_router
from appliance.auth.permissions import EVENT_PERMISSIONS, PUBLIC, Permission, requires
from appliance.auth.principal import Principal
from appliance.cluster.nodeauth import NodeVerifier
from appliance.events.bus import EventBus, Subscription
from appliance.events.gather import ClusterFeed
from appliance.events.types import EVENT_TYPES, TYPE_NAMES, Event, encoder, tag_of

HEARTBEAT_SECONDS = 15.0
SEND_TIMEOUT_SECONDS = 30.0  # a client that takes no bytes for this long is dropped
CLIENT_QUEUE = 1024
BATCH = 256
COALESCE_SECONDS = 0.003  # for clients; a member's stream to another node sends at once
LAGGED_CODE = 1013  # "try again later": resume with `since`
STREAM_PATH = "/api/v1/cluster/internal/events"
_TAGS: dict[type[Event], str] = {kind: tag_of(kind) for kind in EVENT_TYPES}

log = logging.getLogger(__name__)


class BadQuery(ValueError):
    """A query parameter the events socket does not understand."""


def _values(socket: WebSocket[Any, Any, Any], name: str) -> list[str]:
    return [v for raw in socket.query_params.getall(name, []) for v in str(raw).split(",") if v]


def parse_since(values: Iterable[str]) -> dict[str, int]:
    """`n0:123` items -> {"n0": 123}."""
    since: dict[str, int] = {}
    for item in values:
        node, sep, number = item.rpartition(":")
        if not sep or not node or not number.isdigit():
            raise BadQuery(f"since takes node:id items, not {item!r}")
        since[node] = int(number)
    return since


def client_filter(principal: Principal, types: set[str] | None, nodes: set[str] | None) -> Callable[[Event], bool]:
    """Which events a client receives: its role may read the type, and its filters name it."""
    readable = {t for t in TYPE_NAMES if principal.can(EVENT_PERMISSIONS.get(t, Permission.USERS_MANAGE))}
    allowed = readable if types is None else readable & types

    def accept(event: Event) -> bool:
        return _TAGS.get(type(event)) in allowed and (nodes is None or event.node in nodes)

    return accept


class EncodedCache:
    """Each event's JSON, encoded once for all the clients it goes to (the last `size` events)."""

    def __init__(self, size: int = 8192) -> None:
        self._size = size
        self._items: OrderedDict[tuple[str, int], bytes] = OrderedDict()

    def get(self, event: Event) -> bytes:
        key = (event.node, event.id)
        found = self._items.get(key)
        if found is None:
            found = self._items[key] = encoder.encode(event)
            if len(self._items) > self._size:
                self._items.popitem(last=False)
        return found


async def _next(subscription: Subscription, heartbeat: float, coalesce: float) -> list[Event]:
    """The next events to send; after the first of a burst, wait `coalesce` seconds for the
    rest, so that it goes out in one frame (one send, one TLS record)."""
    batch = await subscription.next_batch(BATCH, heartbeat)
    if coalesce > 0 and batch and len(batch) < BATCH and not subscription.lagged:
        await asyncio.sleep(coalesce)
        batch += await subscription.next_batch(BATCH - len(batch), 0)
    return batch


async def serve_events(
    socket: WebSocket[Any, Any, Any],
    subscription: Subscription,
    replay: list[Event],
    gaps: list[dict[str, Any]],
    *,
    heartbeat: float = HEARTBEAT_SECONDS,
    encoded: EncodedCache | None = None,
    coalesce: float = COALESCE_SECONDS,
) -> None:
    """Send `replay`, then what `subscription` receives, until either side ends it."""
    last: dict[str, int] = {}
    encode = encoded.get if encoded is not None else encoder.encode

    def fresh(events: Iterable[Event]) -> list[bytes]:
        lines = []
        for event in events:
            if event.id > last.get(event.node, 0) and (subscription.accept is None or subscription.accept(event)):
                last[event.node] = event.id
                lines.append(encode(event))
        return lines

    async def send(lines: list[bytes]) -> None:
        async with asyncio.timeout(SEND_TIMEOUT_SECONDS):
            await socket.send_text(b"\n".join(lines).decode())

    async def write() -> None:
        if gaps:
            await send([msgspec.json.encode(gap) for gap in gaps])
        for start in range(0, len(replay), BATCH):
            lines = fresh(replay[start : start + BATCH])
            if lines:
                await send(lines)
        while not subscription.closed:
            batch = await _next(subscription, heartbeat, coalesce)
            if subscription.lagged:
                await send([b'{"type":"lagged"}'])
                await socket.close(LAGGED_CODE, "lagged: reconnect with since to resume")
                return
            if batch:
                lines = fresh(batch)
                if lines:
                    await send(lines)
            elif not subscription.closed:
                await send([msgspec.json.encode({"type": "heartbeat", "at": round(time.time(), 3)})])

    writer = asyncio.create_task(write(), name="events-client")
    try:
        while not writer.done():
            reading = asyncio.ensure_future(socket.receive())
            done, _ = await asyncio.wait({reading, writer}, return_when=asyncio.FIRST_COMPLETED)
            if reading not in done:
                reading.cancel()
                with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect):
                    await reading
                break
            if reading.result()["type"] == "websocket.disconnect":
                break
    except WebSocketDisconnect:
        pass
    finally:
        subscription.close()
        writer.cancel()
        with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect, TimeoutError, Exception):
            await writer


Query = tuple[set[str] | None, set[str] | None, dict[str, int]]  # types, nodes, since (None: all)


def events_routes(  # noqa: PLR0915 - the three sockets share their helpers
    *,
    bus: EventBus,
    feed: ClusterFeed,
    forwarder: Forwarder,
    verifier: NodeVerifier,
    heartbeat: float = HEARTBEAT_SECONDS,
) -> list[Router]:
    """The three event sockets (see the module docstring)."""
    here = bus.node
    encoded = EncodedCache()

    def filters(socket: WebSocket[Any, Any, Any]) -> Query:
        types = set(_values(socket, "type")) or None
        if types is not None and not types <= TYPE_NAMES:
            raise BadQuery(f"unknown event types {sorted(types - TYPE_NAMES)}; known: {sorted(TYPE_NAMES)}")
        nodes = set(_values(socket, "node")) or None
        return types, nodes, parse_since(_values(socket, "since"))

    async def asked(socket: WebSocket[Principal, Any, Any]) -> Query | None:
        """The socket's filters, or None once it is closed: 4400 for a bad query, 4403 for
        event types the caller's role may not read."""
        try:
            query = filters(socket)
        except BadQuery as exc:
            await socket.accept()
            await socket.close(4400, str(exc)[:120])
            return None
        unreadable = sorted(t for t in query[0] or () if not socket.user.can(EVENT_PERMISSIONS[t]))
        if unreadable:
            await socket.accept()
            await socket.close(4403, f"role {socket.user.role} may not read {', '.join(unreadable)} events")
            return None
        return query

    def local_replay(since: dict[str, int]) -> tuple[list[Event], list[dict[str, Any]]]:
        if here not in since:
            return [], []
        held, complete = bus.since(since[here])
        return held, [] if complete else [{"type": "gap", "node": here, "since": since[here]}]

    @websocket("/events", opt=requires(Permission.NODE_READ))
    async def cluster_events(socket: WebSocket[Principal, Any, Any]) -> None:
        """The whole cluster's events that the caller's role may read."""
        query = await asked(socket)
        if query is None:
            return
        types, nodes, since = query
        subscription = bus.stream(CLIENT_QUEUE, client_filter(socket.user, types, nodes))
        feed.add(subscription, since)
        replay, gaps = local_replay(since)
        for node, last in since.items():
            if node != here:
                held, complete = feed.since(node, last)
                replay += held
                if not complete:
                    gaps.append({"type": "gap", "node": node, "since": last})
        await socket.accept()
        try:
            await serve_events(socket, subscription, replay, gaps, heartbeat=heartbeat, encoded=encoded)
        finally:
            bus.unsubscribe(subscription)
            feed.remove(subscription)

    @websocket("/nodes/{name:str}/events", opt=requires(Permission.NODE_READ))
    async def node_events(socket: WebSocket[Principal, Any, Any], name: FromPath[str]) -> None:
        """One node's events that the caller's role may read (only ever run on that node)."""
        del name  # the router forwarded the socket unless it names this node
        query = await asked(socket)
        if query is None:
            return
        types, _, since = query
        subscription = bus.stream(CLIENT_QUEUE, client_filter(socket.user, types, {here}))
        replay, gaps = local_replay(since)
        await socket.accept()
        try:
            await serve_events(socket, subscription, replay, gaps, heartbeat=heartbeat, encoded=encoded)
        finally:
            bus.unsubscribe(subscription)

    @websocket("/cluster/internal/events", opt=PUBLIC, include_in_schema=False)
    async def member_stream(socket: WebSocket[Any, Any, Any]) -> None:
        """This node's events, all of them, for a member that signed the upgrade."""
        headers = {k.lower(): v for k, v in socket.headers.items()}
        try:
            verifier.verify(headers, "GET", socket.scope["path"], b"")
            since = int(socket.query_params.get("since", "0") or 0)
        except Exception as exc:
            log.warning("refused an events stream: %s", exc)
            await socket.receive()  # the connect message; closing now refuses the upgrade
            await socket.close(4401, "members only")
            return
        subscription = bus.stream(CLIENT_QUEUE)
        replay, gaps = local_replay({here: since}) if since else ([], [])
        await socket.accept()
        try:
            await serve_events(socket, subscription, replay, gaps, heartbeat=heartbeat, encoded=encoded, coalesce=0)
        finally:
            bus.unsubscribe(subscription)

    return [
        Router("/api/v1", route_handlers=[cluster_events, member_stream], tags=["events"]),
        node_router("/api/v1", [node_events], forwarder=forwarder, tags=["events"]),
    ]
