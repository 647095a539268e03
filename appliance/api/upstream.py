"""A small HTTP/1.1 client for node-to-node API calls: kept-alive TLS connections, streamed bodies.

Forwarding a request to another node is on the hot path of "REST through any node", and a
general-purpose client costs more than the request itself: profiling the forwarder with
httpx showed over half of the forwarding node's time in httpx and httpcore (per-request
connection-liveness polls, anyio stream layers, header models). The other side is always a
DebVisor node behind granian, so this client speaks only what that needs: HTTP/1.1 over TLS
verified against the cluster CA, one request at a time per connection, idle connections
kept per target for reuse, bodies framed by Content-Length, chunked encoding, or the end of
the connection.

The caller may pass `peer_check`, which sees the certificate the other side presented (DER)
before any request is written on a connection, new or reused, and refuses it by raising
`PeerRefused`: the TLS handshake proves only that the certificate is from the cluster CA,
not that it belongs to the node the request is meant for.

A request on a reused connection that fails before any byte of the answer arrived (the
server closed the idle connection meanwhile) is retried once on a fresh connection. Callers
bound the time with `asyncio.timeout`; a response whose body is not read to the end closes
its connection instead of returning it.

Left out: HTTP/2, proxies, redirects, cookies, compression, `Expect: 100-continue`.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

MAX_HEAD_BYTES = 64 * 1024
READ_CHUNK = 64 * 1024
_NO_BODY_STATUSES = {204, 304}


class UpstreamError(Exception):
    """The other node's answer could not be read (connection closed, malformed HTTP)."""


class PeerRefused(UpstreamError):
    """The certificate that answered is not the one the caller expected; nothing was sent."""


@dataclass
class _Connection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    peer: bytes = b""  # the certificate the other side presented, DER

    @classmethod
    def of(cls, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> _Connection:
        tls = writer.get_extra_info("ssl_object")
        peer = tls.getpeercert(binary_form=True) if tls is not None else None
        return cls(reader, writer, peer or b"")

    def close(self) -> None:
        self.writer.close()

    def usable(self) -> bool:
        return not self.writer.is_closing() and not self.reader.at_eof()


@dataclass
class UpstreamResponse:
    """A response whose head was read; the body is read with `read()` or `chunks()`."""

    status: int
    headers: dict[str, str]  # lower-cased names; a repeated header keeps its last value
    _conn: _Connection
    _pool: UpstreamPool
    _key: tuple[str, int]
    _length: int | None  # None: chunked or until the end of the connection
    _chunked: bool
    _done: bool = field(default=False)

    @property
    def content_length(self) -> int | None:
        return self._length

    async def read(self) -> bytes:
        return b"".join([chunk async for chunk in self.chunks()])

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body, piece by piece; the connection goes back to the pool once it is all read."""
        reader = self._conn.reader
        try:
            if self._chunked:
                while True:
                    size_line = await reader.readuntil(b"\r\n")
                    size = int(size_line.split(b";", 1)[0].strip(), 16)
                    if size == 0:
                        while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers
                            pass
                        break
                    yield await reader.readexactly(size)
                    await reader.readexactly(2)
            elif self._length is not None:
                left = self._length
                while left > 0:
                    chunk = await reader.read(min(left, READ_CHUNK))
                    if not chunk:
                        raise UpstreamError("the connection closed in the middle of the body")
                    left -= len(chunk)
                    yield chunk
            else:
                while chunk := await reader.read(READ_CHUNK):
                    yield chunk
                self._conn.close()
                self._done = True
                return
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
            self.close()
            raise UpstreamError(f"malformed body: {exc}") from exc
        except BaseException:
            self.close()
            raise
        self._done = True
        self._pool.release(self._key, self._conn, reusable=self.headers.get("connection", "").lower() != "close")

    def close(self) -> None:
        """Give up on the rest of the body: the connection cannot be reused."""
        if not self._done:
            self._done = True
            self._conn.close()


class UpstreamPool:
    """Kept-alive HTTPS connections to other nodes' APIs, a few idle ones per target."""

    def __init__(self, context: ssl.SSLContext, *, max_idle_per_target: int = 32) -> None:
        self._context = context
        self._max_idle = max_idle_per_target
        self._idle: dict[tuple[str, int], list[_Connection]] = {}

    async def request(
        self,
        host: str,
        port: int,
        method: str,
        target: str,
        *,
        headers: dict[str, str],
        body: bytes = b"",
        peer_check: Callable[[bytes], None] | None = None,
    ) -> UpstreamResponse:
        key = (host, port)
        lines = [f"{method} {target} HTTP/1.1", f"Host: {_host_header(host, port)}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        if body or method not in ("GET", "HEAD", "DELETE", "OPTIONS"):
            lines.append(f"Content-Length: {len(body)}")
        raw = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
        conn = self._take_idle(key)
        if conn is not None:
            _check_peer(conn, peer_check)
            try:
                return await self._exchange(key, conn, method, raw)
            except _Stale:
                pass  # closed by the server while idle: one fresh attempt
        reader, writer = await asyncio.open_connection(host, port, ssl=self._context, limit=MAX_HEAD_BYTES)
        conn = _Connection.of(reader, writer)
        _check_peer(conn, peer_check)
        try:
            return await self._exchange(key, conn, method, raw)
        except _Stale as exc:
            raise UpstreamError("the connection closed before an answer") from exc

    def release(self, key: tuple[str, int], conn: _Connection, *, reusable: bool) -> None:
        idle = self._idle.setdefault(key, [])
        if reusable and conn.usable() and len(idle) < self._max_idle:
            idle.append(conn)
        else:
            conn.close()

    async def aclose(self) -> None:
        for idle in self._idle.values():
            for conn in idle:
                conn.close()
        self._idle.clear()

    def _take_idle(self, key: tuple[str, int]) -> _Connection | None:
        idle = self._idle.get(key, [])
        while idle:
            conn = idle.pop()
            if conn.usable():
                return conn
            conn.close()
        return None

    async def _exchange(self, key: tuple[str, int], conn: _Connection, method: str, raw: bytes) -> UpstreamResponse:
        try:
            conn.writer.write(raw)
            await conn.writer.drain()
            head = await conn.reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            conn.close()
            if isinstance(exc, asyncio.IncompleteReadError) and exc.partial:
                raise UpstreamError("the answer's head was cut off") from exc
            raise _Stale from exc
        except asyncio.LimitOverrunError as exc:
            conn.close()
            raise UpstreamError("the answer's head is too large") from exc
        except BaseException:
            conn.close()
            raise
        status, headers = _parse_head(head, conn)
        chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        length: int | None
        if method == "HEAD" or status in _NO_BODY_STATUSES or 100 <= status < 200:
            length = 0
        elif chunked:
            length = None
        elif "content-length" in headers:
            try:
                length = int(headers["content-length"])
            except ValueError as exc:
                conn.close()
                raise UpstreamError("the answer's Content-Length is not a number") from exc
        else:
            length = None
        return UpstreamResponse(status, headers, conn, self, key, length, chunked)


def _check_peer(conn: _Connection, peer_check: Callable[[bytes], None] | None) -> None:
    """Run the caller's check of the other side's certificate; a refused connection is closed."""
    if peer_check is None:
        return
    try:
        peer_check(conn.peer)
    except BaseException:
        conn.close()
        raise


class _Stale(Exception):
    """A connection failed before any byte of the answer: safe to try once more."""


def _parse_head(head: bytes, conn: _Connection) -> tuple[int, dict[str, str]]:
    try:
        lines = head.decode("latin-1").split("\r\n")
        version, status_text = lines[0].split(" ", 2)[:2]
        if not version.startswith("HTTP/1."):
            raise ValueError(version)
        status = int(status_text)
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
    except ValueError as exc:
        conn.close()
        raise UpstreamError("the answer is not HTTP/1.1") from exc
    return status, headers


def _host_header(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def split_addr(addr: str) -> tuple[str, int]:
    """`HOST:PORT` or `[V6]:PORT` as (host, port)."""
    host, _, port = addr.rpartition(":")
    return host.strip("[]"), int(port)
