"""`/api/v1/audit`: read the audit log with filters and pages, export it as CSV or JSON, and
check a node's chain against the heads its peers hold (`/verify`, from `/anchors` and `/chain`)."""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import Awaitable, Callable, Iterator
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from litestar import Request, Response, Router, get
from litestar.params import FromQuery, Parameter
from litestar.response import Stream

from appliance.api.openapi import media_types, problems
from appliance.api.problems import ApiError
from appliance.audit import crosscheck
from appliance.audit.anchoring import Anchorer
from appliance.audit.chain import AuditEntry
from appliance.audit.context import note
from appliance.audit.crosscheck import ChainCheck, ChainFacts, HeldAnchors
from appliance.audit.log import AuditLog, AuditQuery
from appliance.auth.permissions import Permission, requires

MAX_PAGE = 1000
FAN_OUT_SECONDS = 3.0
_FIELDS = list(AuditEntry.__struct_fields__)


class AuditPage(msgspec.Struct, frozen=True, kw_only=True):
    """One page of entries; pass `next_after` as `after` for the next page (null: no more).

    With `node=all` the entries of every member (up to `limit` each) are merged by time;
    `unreachable` names the members that did not answer, and there is no single cursor.
    """

    entries: list[AuditEntry]
    next_after: int | None
    unreachable: list[str] = []


# Fetch a member's JSON answer as a principal: (node, path, query params, principal) -> body.
Fetch = Callable[[str, str, dict[str, str], Any], Awaitable[Any]]


def _query(
    user: str | None, action: str | None, since: datetime | None, until: datetime | None, after: int
) -> AuditQuery:
    return AuditQuery(
        user=user,
        action=action,
        since=since.timestamp() if since else None,
        until=until.timestamp() if until else None,
        after_seq=after,
    )


def _csv_lines(entries: Iterator[AuditEntry]) -> Iterator[bytes]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(_FIELDS)
    for entry in entries:
        writer.writerow([getattr(entry, f) for f in _FIELDS])
        yield buffer.getvalue().encode()
        buffer.seek(0)
        buffer.truncate()
    yield buffer.getvalue().encode()


def _json_lines(entries: Iterator[AuditEntry]) -> Iterator[bytes]:
    yield b"["
    first = True
    for entry in entries:
        yield (b"" if first else b",\n") + msgspec.json.encode(entry)
        first = False
    yield b"]\n"


def audit_routes(
    log: AuditLog, *, local_node: str, members: Callable[[], list[str]], fetch: Fetch, anchorer: Anchorer
) -> Router:
    @get("/", opt=requires(Permission.AUDIT_READ), summary="Audit entries, oldest first, filtered and paged")
    async def list_entries(
        request: Request[Any, Any, Any],
        *,
        node: Annotated[str | None, Parameter(description="all: merge every member's log; a name: that node's")] = None,
        user: FromQuery[str | None] = None,
        action: Annotated[str | None, Parameter(description="exact, or a prefix ending in . or *")] = None,
        since: FromQuery[datetime | None] = None,
        until: FromQuery[datetime | None] = None,
        after: Annotated[int, Parameter(ge=0, description="return entries after this seq")] = 0,
        limit: Annotated[int, Parameter(ge=1, le=MAX_PAGE)] = 100,
    ) -> AuditPage:
        if node in (None, local_node):
            entries = log.query(_query(user, action, since, until, after), limit)
            return AuditPage(entries=entries, next_after=entries[-1].seq if len(entries) == limit else None)
        params = {k: v for k, v in request.query_params.items() if k != "node"}
        names = members() if node == "all" else [node]
        merged: list[AuditEntry] = log.query(_query(user, action, since, until, after), limit) if node == "all" else []
        unreachable: list[str] = []

        async def fetch_one(name: str) -> None:
            try:
                page = await asyncio.wait_for(fetch(name, "/api/v1/audit", params, request.user), FAN_OUT_SECONDS)
                merged.extend(msgspec.convert(page, AuditPage).entries)
            except Exception:
                unreachable.append(name)

        await asyncio.gather(*(fetch_one(n) for n in names if n != local_node))
        merged.sort(key=lambda e: (e.ts, e.node, e.seq))
        return AuditPage(entries=merged, next_after=None, unreachable=sorted(unreachable))

    @get(
        "/export",
        opt=requires(Permission.AUDIT_READ, action="audit.export") | media_types("text/csv"),
        summary="Every matching entry as CSV or JSON (a download)",
    )
    async def export(
        request: Request[Any, Any, Any],
        *,
        format: FromQuery[Literal["csv", "json"]] = "csv",
        user: FromQuery[str | None] = None,
        action: FromQuery[str | None] = None,
        since: FromQuery[datetime | None] = None,
        until: FromQuery[datetime | None] = None,
    ) -> Response[Any]:
        note(request, target="audit log", detail=f"format {format}")
        entries = log.export(_query(user, action, since, until, 0))
        lines = _csv_lines(entries) if format == "csv" else _json_lines(entries)
        media_type = "text/csv; charset=utf-8" if format == "csv" else "application/json"
        return Stream(
            lines,
            media_type=media_type,
            headers={"Content-Disposition": f'attachment; filename="debvisor-audit.{format}"'},
        )

    @get("/anchors", opt=requires(Permission.AUDIT_READ), summary="The signed chain heads of a node held here")
    async def anchors(node: Annotated[str, Parameter(min_length=1, max_length=253)]) -> HeldAnchors:
        return crosscheck.held_by(anchorer.book, local_node, node)

    @get(
        "/chain",
        opt=requires(Permission.AUDIT_READ) | problems(400),
        summary="This node's chain: local check and hashes at seqs",
    )
    async def chain(
        seqs: Annotated[str, Parameter(description="comma-separated sequence numbers", max_length=24 * 1024)] = "",
    ) -> ChainFacts:
        try:
            wanted = crosscheck.parse_seqs(seqs)
        except ValueError as exc:
            raise ApiError(400, f"seqs: {exc}") from exc
        return crosscheck.local_facts(log, anchorer.db, local_node, wanted)

    @get(
        "/verify",
        opt=requires(Permission.AUDIT_READ, action="audit.verify") | problems(404, 502, 503),
        summary="Check a node's chain against the signed heads its peers hold",
    )
    async def verify(
        request: Request[Any, Any, Any],
        *,
        node: Annotated[str | None, Parameter(description="the node whose chain to check (default: this one)")] = None,
    ) -> ChainCheck:
        name = node or local_node
        result = await _check(
            name,
            log=log,
            anchorer=anchorer,
            local_node=local_node,
            live=members(),
            fetch=lambda peer, path, params: fetch(peer, path, params, request.user),
        )
        note(request, target=f"audit chain of {name}", detail=result.reason or "intact")
        return result

    return Router("/api/v1/audit", route_handlers=[list_entries, export, anchors, chain, verify], tags=["audit"])


async def _check(
    name: str,
    *,
    log: AuditLog,
    anchorer: Anchorer,
    local_node: str,
    live: list[str],
    fetch: Callable[[str, str, dict[str, str]], Awaitable[Any]],
) -> ChainCheck:
    """Gather what every other live member holds about `name`, read `name`'s chain, compare."""
    if name != local_node and name not in live:
        raise ApiError(404, f"no live member {name!r}: its chain cannot be read")
    held = [crosscheck.held_by(anchorer.book, local_node, name)] if name != local_node else []
    unreachable: list[str] = []

    async def ask(peer: str) -> None:
        try:
            answer = await asyncio.wait_for(fetch(peer, "/api/v1/audit/anchors", {"node": name}), FAN_OUT_SECONDS)
            held.append(msgspec.convert(answer, HeldAnchors))
        except Exception:
            unreachable.append(peer)

    await asyncio.gather(*(ask(p) for p in live if p not in (name, local_node)))
    witnesses, evidence, rejected = crosscheck.checked(name, held, anchorer.trust)
    seqs = sorted({w.head.seq for w in witnesses})
    if name == local_node:
        facts = crosscheck.local_facts(log, anchorer.db, local_node, seqs)
    else:
        try:
            params = {"seqs": ",".join(map(str, seqs))}
            answer = await asyncio.wait_for(fetch(name, "/api/v1/audit/chain", params), FAN_OUT_SECONDS)
            facts = msgspec.convert(answer, ChainFacts, strict=False)  # JSON object keys: seqs as text
        except Exception as exc:
            raise ApiError(503, f"node {name!r} did not answer with its chain: {type(exc).__name__}") from exc
        if facts.node != name:
            raise ApiError(502, f"node {name!r} answered for {facts.node!r}")
    return crosscheck.judge(
        facts, witnesses, evidence, checked_by=local_node, unreachable=unreachable, rejected=rejected
    )
