"""`/api/v1/nodes/{name}/journal` (a page of entries) and `.../journal/follow` (a WebSocket).

Both are per-node routes (appliance/api/pernode.py): through any node, answered by the node
whose journal it is. Filters are query parameters, checked before journalctl runs
(appliance/journal/query.py): a bad one is 422 naming it (on the socket: close code 4422).

The page answers entries oldest first. Without a cursor it holds the newest `limit` entries
that match; `before=CURSOR` pages back (older), `after=CURSOR` pages forward (newer); `more`
says whether that direction has further entries.

The socket sends each entry as one text frame holding the same JSON object as a page's entry
(from `after`, else the last `limit` entries, then each new one as it is written), and
`{"type":"heartbeat","at":...}` after `HEARTBEAT_SECONDS` without an entry. Client messages
are ignored; closing the socket ends journalctl.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import msgspec
from litestar import Request, Router, WebSocket, get, websocket
from litestar.exceptions import WebSocketDisconnect
from litestar.params import Parameter

from appliance.api.forward import Forwarder
from appliance.api.openapi import problems
from appliance.api.pernode import node_router
from appliance.api.problems import ApiError, FieldError
from appliance.auth.permissions import Permission, requires
from appliance.auth.principal import Principal
from appliance.journal.entries import JournalEntry
from appliance.journal.query import JournalQuery, QueryError, parse
from appliance.journal.reader import Journal, JournalBusy, JournalFailed, JournalPage, JournalUnavailable

HEARTBEAT_SECONDS = 15.0
SEND_TIMEOUT_SECONDS = 30.0  # a client that takes no frame for this long is dropped
FOLLOW_LINES = 10  # entries a followed stream starts with when it names no cursor

_encoder = msgspec.json.Encoder()


def _refusal(exc: QueryError) -> ApiError:
    return ApiError(422, str(exc), errors=[FieldError(path=f"$.{exc.field}", message=exc.text)])


def _query(params: dict[str, str], *, follow: bool = False) -> JournalQuery:
    if follow and not params.get("limit") and not params.get("lines"):
        params = {**params, "limit": str(FOLLOW_LINES)}
    try:
        return parse(params)
    except QueryError as exc:
        raise _refusal(exc) from None


async def _entries_or_heartbeats(entries: AsyncIterator[JournalEntry], heartbeat: float) -> AsyncIterator[bytes]:
    """Each entry's JSON; a heartbeat whenever none came for `heartbeat` seconds."""
    pending: asyncio.Task[JournalEntry] | None = None
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(anext(entries))
            done, _ = await asyncio.wait({pending}, timeout=heartbeat)
            if not done:
                yield _encoder.encode({"type": "heartbeat", "at": round(time.time(), 3)})
                continue
            try:
                entry = pending.result()
            except StopAsyncIteration:
                return
            pending = None
            yield _encoder.encode(entry)
    finally:
        if pending is not None:
            pending.cancel()
            with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration, Exception):
                await pending


async def _stream(socket: WebSocket[Any, Any, Any], journal: Journal, query: JournalQuery, heartbeat: float) -> None:
    async def write() -> None:
        async with journal.follow(query) as entries:
            async for frame in _entries_or_heartbeats(entries, heartbeat):
                async with asyncio.timeout(SEND_TIMEOUT_SECONDS):
                    await socket.send_text(frame.decode())
        await socket.close(1011, "the journal stream ended")

    writer = asyncio.create_task(write(), name="journal-follow")
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
        if writer.done() and not writer.cancelled() and writer.exception() is not None:
            exc = writer.exception()
            code = 4503 if isinstance(exc, JournalBusy | JournalUnavailable) else 1011
            with contextlib.suppress(Exception):
                await socket.close(code, str(exc)[:120])
    except WebSocketDisconnect:
        pass
    finally:
        writer.cancel()
        with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect, TimeoutError, Exception):
            await writer


def journal_routes(journal: Journal, *, forwarder: Forwarder, heartbeat: float = HEARTBEAT_SECONDS) -> Router:
    """The journal routes of this node, forwarded for any other."""
    read = requires(Permission.JOURNAL_READ)

    @get(
        "/{name:str}/journal",
        opt=read | problems(503),
        summary="A node's journal entries: filters, cursor paging (newest first page, then before/after a cursor)",
    )
    async def get_journal(
        request: Request[Principal, Any, Any],
        *,
        unit: str | None = Parameter(default=None, description="a unit's name (its own and systemd's lines about it)"),
        identifier: str | None = Parameter(default=None, description="a syslog identifier (systemd-cat -t ...)"),
        since: str | None = Parameter(default=None, description="ISO 8601, epoch seconds, or -30m/-2h/-1d"),
        until: str | None = Parameter(default=None, description="as since"),
        priority: str | None = Parameter(default=None, description="0-7 or emerg..debug: this and more important"),
        boot: str | None = Parameter(default=None, description="0 (this boot), -1, ... or a boot id"),
        match: str | None = Parameter(default=None, description="text the message contains (any case)"),
        after: str | None = Parameter(default=None, description="a cursor: the entries after it"),
        before: str | None = Parameter(default=None, description="a cursor: the entries before it"),
        limit: str | None = Parameter(default=None, description="entries per page, 1-1000 (default 100)"),
    ) -> JournalPage:
        given = {
            "unit": unit, "identifier": identifier, "since": since, "until": until, "priority": priority,
            "boot": boot, "match": match, "after": after, "before": before, "limit": limit,
        }  # fmt: skip
        unknown = sorted(set(request.query_params) - set(given))
        if unknown:
            raise _refusal(QueryError(unknown[0], f"unknown filter; known: {', '.join(sorted(given))}"))
        query = _query({k: v for k, v in given.items() if v is not None})
        try:
            return await journal.page(query)
        except JournalUnavailable as exc:
            raise ApiError(503, str(exc)) from None
        except JournalFailed as exc:
            raise ApiError(422, f"journalctl refused the query: {exc}") from None

    @websocket("/{name:str}/journal/follow", opt=read)
    async def follow_journal(socket: WebSocket[Principal, Any, Any]) -> None:
        """New journal entries as they are written (the page's filters; `after` resumes)."""
        params = {k: str(v) for k, v in socket.query_params.items()}
        try:
            query = _query(params, follow=True)
        except ApiError as exc:
            await socket.accept()
            await socket.close(4422, exc.detail[:120])
            return
        await socket.accept()
        await _stream(socket, journal, query, heartbeat)

    return node_router("/api/v1/nodes", [get_journal, follow_journal], forwarder=forwarder, tags=["journal"])
