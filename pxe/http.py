"""`/pxe/...`: the files a PXE-booting machine fetches over plain HTTP, without credentials.

A booting machine has no account and iPXE and live-boot speak plain HTTP, so these routes are
public, and serve only the boot script and three named files (never a path from the request).
They answer 404 unless PXE is enabled on this node. The one write, `POST /pxe/enlist`, is how a
booted machine reports its hardware: a typed body of at most 64 KiB with bounded fields
(`pxe.inventory`), a rate limit per source address, and only for a MAC that fetched a script
here (404 otherwise), so a stranger on the boot network can neither fill the table nor name
anything; what it reports is stored for display only. A script never holds a join token: a
node puts a fresh single-use enrolment credential for the MAC in it (`pxe.enrol_service`),
minted only for fetches it records (the same per-address limit), others are told to retry. The script's URLs are built
from the Host the machine used, so they reach this node the same way. Single byte ranges are
honoured (a resumed or partial fetch of the 200 MB squashfs); multiple ranges get the whole file.

The same router is mounted on a node's plain-HTTP listener (`pxe.listener`, open while PXE is
enabled) and served alone by `python -m pxe serve` (tests, a boot server without a node).
Deliberately left out: storing the settings (`pxe.service`).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator
from dataclasses import replace
from http import HTTPStatus
from pathlib import Path
from typing import Any, Protocol

import msgspec
from litestar import Request, Response, Router, get, post
from litestar.datastructures import State
from litestar.exceptions import HTTPException
from litestar.params import FromPath, FromQuery
from litestar.response import Stream

from pxe.dnsmasq import DnsmasqError, normalize_mac
from pxe.inventory import MAX_BODY_BYTES, EnlistPost, Inventory, inventory_of
from pxe.ratelimit import RateLimiter, retry_after_header
from pxe.script import MachineParams, ScriptError, boot_script, chain_script, retry_script

BOOT_FILES = ("vmlinuz", "initrd.img", "filesystem.squashfs")
# Reports per source address: a burst for a few retries, then one a minute (a machine reports once per boot).
ENLIST_RATE = 1 / 60
ENLIST_BURST = 5.0
# Scripts served per source address (beyond that: "retry in 30 s"): a real machine fetches one
# per boot; a host making up MACs can neither push the rack's machines out of the table nor
# mint enrolment credentials at will.
RECORD_RATE = 1 / 60
RECORD_BURST = 10.0
CHUNK = 1024 * 1024
log = logging.getLogger(__name__)
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


class BootSource(Protocol):
    """What the routes need from whoever holds the PXE settings."""

    def enabled(self) -> bool: ...

    def files_dir(self) -> Path: ...

    def params(self, mac: str) -> MachineParams:
        """The machine's settings (defaults for an unlisted one)."""
        ...

    def fetched(self, mac: str, ip: str) -> None:
        """Note that a machine fetched its script."""
        ...

    def credential(self, mac: str) -> str | None:
        """A fresh single-use enrolment credential for the machine's script (None: no enrolment here)."""
        ...

    def enlist(self, mac: str, ip: str, inventory: Inventory) -> bool:
        """Store what a machine reported; False if that MAC never fetched a script."""
        ...


def _text(body: str, status: int = 200) -> Response[Any]:
    return Response(body, status_code=status, media_type="text/plain; charset=utf-8")


def _byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(start, end inclusive) of a single satisfiable range, None for the whole file."""
    match = _RANGE.match(header or "")
    if match is None:
        return None
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:  # the last N bytes
        start, end = max(size - int(last), 0), size - 1
    else:
        start, end = int(first), min(int(last), size - 1) if last else size - 1
    if start > end or start >= size:
        raise _Unsatisfiable
    return start, end


class FieldProblem(msgspec.Struct, frozen=True):
    """One invalid field of a report: its JSON path and what is wrong."""

    path: str
    message: str


class BootError(HTTPException):
    """A refusal of a boot route. The app's exception handlers render it as problem+json,
    listing `errors`: a node's (appliance/api/problems.py), or `standalone_problem` below."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        headers: dict[str, str] | None = None,
        errors: list[FieldProblem] | None = None,
    ) -> None:
        super().__init__(detail=detail, status_code=status, headers=headers)
        self.errors = errors


STANDALONE_PROBLEM_JSON = "application/problem+json"


def standalone_problem(request: Request[Any, Any, State], exc: HTTPException) -> Response[dict[str, Any]]:
    """An RFC 9457 problem document for a refusal when the boot routes run without a node
    (`python -m pxe serve`): the same shape a node answers with its own handlers."""
    status = exc.status_code
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error",
        "status": status,
        "detail": exc.detail,
        "instance": request.url.path,
    }
    errors = getattr(exc, "errors", None)
    if errors:
        body["errors"] = [{"path": e.path, "message": e.message} for e in errors]
    return Response(body, status_code=status, media_type=STANDALONE_PROBLEM_JSON, headers=exc.headers)


class _Unsatisfiable(Exception):
    pass


async def _chunks(path: Path, start: int, length: int) -> AsyncIterator[bytes]:
    with path.open("rb") as f:
        f.seek(start)
        while length > 0:
            data = await asyncio.to_thread(f.read, min(CHUNK, length))
            if not data:
                return
            length -= len(data)
            yield data


def pxe_routes(
    source: BootSource, *, limiter: RateLimiter | None = None, recorder: RateLimiter | None = None
) -> Router:
    """The public boot routes under /pxe; `limiter` bounds enlistment reports per source address,
    `recorder` how many script fetches per source address are recorded."""
    limiter = limiter or RateLimiter(ENLIST_RATE, ENLIST_BURST)
    recorder = recorder or RateLimiter(RECORD_RATE, RECORD_BURST)

    @get("/boot.ipxe", summary="iPXE script for a booting machine", include_in_schema=False)
    async def script(request: Request[object, object, State], mac: FromQuery[str | None] = None) -> Response[Any]:
        if not source.enabled():
            return _text("PXE is not enabled on this node\n", 404)
        base = f"http://{request.headers.get('host', '')}/pxe"
        client = request.client.host if request.client else ""
        try:
            if mac is None:
                return _text(chain_script(base))
            normalized = normalize_mac(mac)
            params = source.params(normalized)
            if recorder.take(client) != 0:
                # Each recorded fetch mints a credential: a host making up MACs gets no more of them.
                log.warning("PXE: not serving %s: too many scripts fetched from %s", normalized, client)
                return _text(retry_script(base, normalized))
            source.fetched(normalized, client)
            params = replace(params, enrol=source.credential(normalized))
            body = boot_script(base, params)
        except (ScriptError, DnsmasqError) as exc:
            return _text(f"#!ipxe\necho DebVisor cannot boot this machine: {_safe(str(exc))}\nshell\n", 400)
        log.info("PXE: boot.ipxe for %s to %s", normalized, client)
        return _text(body)

    @get("/{file:str}", summary="A boot file", include_in_schema=False)
    async def boot_file(request: Request[object, object, State], file: FromPath[str]) -> Response[Any]:
        if not source.enabled() or file not in BOOT_FILES:
            return _text("not found\n", 404)
        path = source.files_dir() / file
        try:
            size = path.stat().st_size
        except OSError:
            return _text(f"{file} is not available on this node\n", 404)
        headers = {"accept-ranges": "bytes"}
        try:
            wanted = _byte_range(request.headers.get("range"), size)
        except _Unsatisfiable:
            return Response(b"", status_code=416, headers={**headers, "content-range": f"bytes */{size}"})
        start, end, status = 0, size - 1, 200
        if wanted is not None:
            (start, end), status = wanted, 206
            headers["content-range"] = f"bytes {start}-{end}/{size}"
        headers["content-length"] = str(end - start + 1)
        client = request.client.host if request.client else ""
        log.info("PXE: %s bytes %d-%d to %s", file, start, end, client)
        return Stream(
            _chunks(path, start, end - start + 1),
            status_code=status,
            headers=headers,
            media_type="application/octet-stream",
        )

    @post(
        "/enlist",
        summary="A booted machine reports its hardware",
        include_in_schema=False,
        status_code=204,
        request_max_body_size=MAX_BODY_BYTES,
    )
    async def enlist(request: Request[object, object, State]) -> None:
        # The limit comes before the body is read, so malformed floods are limited too.
        client = request.client.host if request.client else ""
        wait = limiter.take(client)
        if wait > 0:
            raise BootError(429, "too many reports from this address", headers=retry_after_header(wait))
        if not source.enabled():
            raise BootError(404, "PXE is not enabled on this node")
        data = decode_report(await request.body())
        mac = normalize_mac(data.mac)
        if not source.enlist(mac, client, inventory_of(data)):
            log.warning("PXE: refused a report for %s from %s: it never fetched a boot script here", mac, client)
            raise BootError(404, f"machine {mac} has not fetched a boot script from this node; boot it from here first")
        log.info("PXE: %s (%s) reported its inventory", mac, client)

    return Router("/pxe", route_handlers=[script, boot_file, enlist], tags=["pxe"])


_REPORT = msgspec.json.Decoder(EnlistPost)
_AT_PATH = re.compile(r"^(.*) - at `(\$[^`]*)`$")
_UNKNOWN = re.compile(r"^Object contains unknown field `([^`]*)`$")


def decode_report(body: bytes) -> EnlistPost:
    """The report in `body`; a 400 (not JSON) or 422 (naming the field) problem otherwise."""
    try:
        return _REPORT.decode(body)
    except msgspec.ValidationError as exc:
        message, path = str(exc)[:300], "$"
        located = _AT_PATH.match(message)
        if located is not None:
            message, path = located.groups()
        unknown = _UNKNOWN.match(message)
        if unknown is not None:
            path = f"{path}.{unknown.group(1)}"
        raise BootError(422, f"invalid report: {path}: {message}", errors=[FieldProblem(path, message)]) from exc
    except msgspec.DecodeError as exc:
        raise BootError(400, f"the body is not valid JSON: {exc}") from exc


def _safe(text: str) -> str:
    """A message iPXE's `echo` prints as is (no expansions, one line)."""
    return re.sub(r"[^A-Za-z0-9 .,:/=_-]", "?", text)[:200]
