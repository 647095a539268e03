"""Gossip transport: length-prefixed msgpack frames over TLS 1.3 with client certificates.

Every connection is mutually authenticated against the cluster CA; the peer's node name is
the common name of its certificate, and every frame's `sender` must equal it. A connection
carries frames both ways: a node sends to a peer over any connection it holds with that
peer, whichever side dialled it, and dials one, lazily, only when it holds none. An answer
therefore goes back on the connection its request came in on, and its TCP segment also
acknowledges the request's (one packet less per probe than a reply on a second connection).
When both sides dial at once, each ends up with two connections; both send on the one the
node with the lower name dialled, and the other stays open, idle, in case the first breaks.
Frames to a peer go through a small bounded queue drained by one writer task, so a slow peer
delays only itself and a write never takes longer than `write_deadline` (kept below the
probe timeout). A connection that breaks after it worked is reported (`on_lost`): the core
then suspects that peer at once, but only its suspicion timeout can declare it dead.

Sockets use TCP's thin-stream linear timeouts: gossip keeps only a frame or two in flight, so
a lost segment is recovered by a retransmission timeout, not by duplicate ACKs, and Linux
doubles that timeout after each loss (200, 400, 800 ms). Linear timeouts retry every ~200 ms,
which keeps a refutation from sitting behind a back-off longer than a suspicion lasts.
After each frame read, the socket's pending ACK is sent and the socket is put back in
delayed-ACK ("ping-pong") mode (TCP_QUICKACK 1, then 0): the next request that arrives is then
acknowledged by the answer itself, not by a bare ACK of its own. Linux otherwise leaves that
mode whenever a delayed ACK has to go out alone, as it does after every answer this node
receives, and acknowledges at once the first segment after an idle second.

Malformed, oversized or mis-attributed frames close that connection and are counted; a
revoked certificate is refused at the handshake, and open connections that use it are cut.
After the TLS handshake (which proves the peer holds a key certified by the cluster CA), the
optional `admit` check decides whether the cluster still stands behind that certificate (the
service asks the certificate registry); frames the peer sent meanwhile wait in the socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import struct
from asyncio import sslproto
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
from cryptography import x509

from appliance.api.upstream import split_addr
from appliance.cluster.messages import Frame, decode_frame
from appliance.identity import pki
from appliance.identity.registry import key_id

log = logging.getLogger(__name__)

_LENGTH = struct.Struct(">I")
QUEUE_LIMIT = 256
TCP_THIN_LINEAR_TIMEOUTS = 16  # linux/tcp.h; the socket module does not name it
TCP_QUICKACK = getattr(socket, "TCP_QUICKACK", 12)
# asyncio gives every TLS connection a 256 KiB read buffer (SSLProtocol.max_size), allocated and
# page-faulted in as the connection opens: ~0.6 ms of CPU per connection here, in the middle of a
# formation's handshake storm, and 16 MB of resident memory for a node holding two connections
# to each of 31 peers. TLS records are at most 16 KiB, so a larger buffer never fills in one go.
TLS_READ_BUFFER = 32 * 1024
# A dial sends a new SYN every CONNECT_STAGGER seconds while the earlier ones stay pending, up
# to CONNECT_SOCKETS of them; the first to connect wins and the dial timeout ends the rest
# (`_connect`). A LAN handshake takes well under a millisecond (the kernel answers a SYN
# however busy the process is) and the probe timeouts already assume round trips far below
# 0.05 s, so a SYN unanswered after 0.05 s was most likely lost; the attempt still waits, for a
# slow link. 20 x 0.05 s spans the 1 s dial timeout: a port that opens (a seed coming up, a
# firewall rule lifted) is reached within 0.05 s whenever in the dial it opens.
CONNECT_STAGGER = 0.05
CONNECT_SOCKETS = 20
# One address of a dialled host, as getaddrinfo gives it: family, type, protocol, sockaddr.
_Target = tuple[int, int, int, Any]


def _small_tls_read_buffers() -> None:
    """Cap asyncio's per-connection TLS read buffer at TLS_READ_BUFFER, for this whole process
    (its other asyncio TLS clients gain from it too; reads are only cut into smaller chunks)."""
    sslproto.SSLProtocol.max_size = min(sslproto.SSLProtocol.max_size, TLS_READ_BUFFER)


def _thin_stream(writer: asyncio.StreamWriter) -> None:
    """Ask for linear retransmission timeouts on this connection (see the module docstring)."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, TCP_THIN_LINEAR_TIMEOUTS, 1)


def _delay_next_ack(writer: asyncio.StreamWriter) -> None:
    """Send any pending ACK now and delay the next one until data goes out (module docstring)."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, TCP_QUICKACK, 1)
            sock.setsockopt(socket.IPPROTO_TCP, TCP_QUICKACK, 0)


@dataclass
class TransportStats:
    frames_in: int = 0
    frames_out: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    bad_frames: int = 0
    refused_handshakes: int = 0
    dial_failures: int = 0
    dropped_frames: int = 0
    connections_lost: int = 0
    connections_opened: int = 0  # TLS handshakes that ended in a connection, either direction


async def _connect(host: str, port: int) -> socket.socket:
    """A TCP connection to host:port: a new SYN every CONNECT_STAGGER seconds, overlapping, to
    each of the host's addresses in turn; the caller bounds the whole by its dial timeout.

    Linux resends an unanswered SYN only after its 1 s initial retransmission timeout. On a LAN
    a handshake that has not completed after 50 ms lost its SYN, and a fresh one gets through
    at once; the earlier attempts stay open in case the link is merely slow. An address that
    refuses (or fails otherwise) leaves the rotation; when none is left, its error is raised.
    """
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    targets: list[_Target] = [(family, kind, proto, address) for family, kind, proto, _, address in infos]
    attempts: dict[asyncio.Task[socket.socket], _Target] = {}
    started = 0
    error: BaseException | None = None
    try:
        while True:
            stagger: float | None = None
            if targets and started < CONNECT_SOCKETS:
                target = targets[started % len(targets)]
                attempts[asyncio.create_task(_connect_once(loop, target))] = target
                started, stagger = started + 1, CONNECT_STAGGER
            elif not attempts:
                break
            done, _ = await asyncio.wait(attempts, timeout=stagger, return_when=asyncio.FIRST_COMPLETED)
            connected = []
            for task in done:
                tried = attempts.pop(task)
                if (exc := task.exception()) is None:
                    connected.append(task.result())
                else:
                    error = exc
                    if tried in targets:
                        targets.remove(tried)
            if connected:
                for extra in connected[1:]:
                    extra.close()
                return connected[0]
        raise error if error is not None else TimeoutError(f"no TCP connection after {started} attempts")
    finally:
        for task in attempts:
            if not task.cancel() and not task.exception():
                task.result().close()  # connected between the last wait and our cancellation


async def _connect_once(loop: asyncio.AbstractEventLoop, target: _Target) -> socket.socket:
    family, kind, proto, address = target
    sock = socket.socket(family, kind, proto)
    try:
        sock.setblocking(False)
        await loop.sock_connect(sock, address)
    except BaseException:
        sock.close()
        raise
    return sock


def tls_contexts(ca: Path, cert: Path, key: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """Server and client contexts: TLS 1.3 only, both sides present and verify cluster certificates."""
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    for context in (server, client):
        context.minimum_version = ssl.TLSVersion.TLSv1_3
        context.load_verify_locations(cafile=str(ca))
        context.load_cert_chain(str(cert), str(key))
        context.verify_mode = ssl.CERT_REQUIRED
    client.check_hostname = False  # peers are named by certificate CN, checked after the handshake
    return server, client


@dataclass(frozen=True)
class PeerCert:
    name: str
    fingerprint: str
    key_id: str = ""  # SHA-256 of its public key (what a renewed certificate keeps)


def peer_cert(writer: asyncio.StreamWriter) -> PeerCert | None:
    ssl_object = writer.get_extra_info("ssl_object")
    der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    if not der:
        return None
    cert = x509.load_der_x509_certificate(der)
    try:
        return PeerCert(pki.node_name_of(cert), pki.fingerprint(cert), key_id(cert))
    except ValueError:
        return None


@dataclass(eq=False)
class _Conn:
    """One authenticated connection with a peer, read for frames whichever side dialled it."""

    peer: PeerCert
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    dialled: bool  # by this node
    closed: bool = False
    used: bool = False  # a frame went over it, either way


@dataclass(eq=False)
class _Outgoing:
    """Frames waiting for one peer (by name, or by address while its name is not known)."""

    addr: str
    expected_name: str | None
    queue: asyncio.Queue[bytes] = field(default_factory=lambda: asyncio.Queue(QUEUE_LIMIT))
    task: asyncio.Task[None] | None = None
    conn: _Conn | None = None


class GossipTransport:
    """Sends and receives gossip frames for one node."""

    def __init__(
        self,
        *,
        name: str,
        server_context: ssl.SSLContext,
        client_context: ssl.SSLContext,
        on_frame: Callable[[str, Frame], None],
        on_lost: Callable[[str], None],
        is_revoked: Callable[[str], bool],
        admit: Callable[[PeerCert], Awaitable[bool]] | None = None,
        max_frame: int = 1 << 20,
        write_deadline: float = 0.2,
        dial_timeout: float = 1.0,
    ) -> None:
        self.name = name
        self._server_context = server_context
        self._client_context = client_context
        self._on_frame = on_frame
        self._on_lost = on_lost
        self._is_revoked = is_revoked
        self._admit = admit  # accept this peer's certificate? asked after the handshake
        self.max_frame = max_frame
        self.write_deadline = write_deadline
        self.dial_timeout = dial_timeout
        self.stats = TransportStats()
        self._server: asyncio.Server | None = None
        self._outgoing: dict[str, _Outgoing] = {}  # by peer name, or by address for a join
        self._conns: dict[str, list[_Conn]] = {}  # open connections by peer name, both directions
        self._readers: set[asyncio.Task[None]] = set()
        self._closing = False
        _small_tls_read_buffers()

    async def start(self, host: str, port: int) -> None:
        self._server = await asyncio.start_server(
            self._serve_connection, host, port, ssl=self._server_context, ssl_handshake_timeout=self.dial_timeout
        )

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        """Close everything within about a second, whatever the peers do.

        Every task is cancelled rather than awaited to its end: a reader whose peer is itself
        shutting down can wait on a TLS close that never comes, and a stop that waits for it
        would keep the whole node from exiting.
        """
        self._closing = True
        if self._server is not None:
            self._server.close()
        for conns in list(self._conns.values()):
            for conn in list(conns):
                self._close(conn, lost=False)
        tasks = [o.task for o in self._outgoing.values() if o.task is not None] + list(self._readers)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=1.0)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)

    def send(self, name: str | None, addr: str, payload: bytes) -> None:
        """Queue a frame for a peer; never blocks. A full queue drops its oldest frame.

        With a name, the frame goes over any open connection with that peer, else over one
        dialled to `addr` (which may then be empty if a connection is expected to exist)."""
        if self._closing:
            return
        key = name or addr
        out = self._outgoing.get(key)
        if out is None:
            out = self._outgoing[key] = _Outgoing(addr, name)
        elif addr and out.addr != addr:
            out.addr = addr  # the peer restarted elsewhere: dial the new address from now on
            out.conn = None
        if out.queue.full():
            out.queue.get_nowait()
            self.stats.dropped_frames += 1
        out.queue.put_nowait(payload)
        if out.task is None or out.task.done():
            out.task = asyncio.create_task(self._write_loop(out), name=f"gossip-to-{key}")

    async def refused(self, addr: str) -> bool:
        """True if a TCP connection to `addr` is actively refused (host up, nothing listening)."""
        host, port = split_addr(addr)
        try:
            async with asyncio.timeout(self.dial_timeout):
                _, writer = await asyncio.open_connection(host, port)
        except ConnectionRefusedError:
            return True
        except (OSError, TimeoutError):
            return False
        writer.close()
        return False

    def connected(self, name: str) -> bool:
        """True if a frame for `name` can go out now, without dialling first."""
        return self._open_conn(name) is not None

    def cut(self, fingerprint: str) -> None:
        """Close every connection that uses the certificate with this fingerprint."""
        for conns in list(self._conns.values()):
            for conn in list(conns):
                if conn.peer.fingerprint == fingerprint:
                    self._close(conn, lost=False)

    # -- connections ------------------------------------------------------------------------

    def _open_conn(self, name: str) -> _Conn | None:
        """The connection to send to `name` on: the one the lower-named node dialled, if open."""
        conns = self._conns.get(name)
        if not conns:
            return None
        preferred = self.name < name  # True: this node's own dial is the shared one
        for conn in conns:
            if conn.dialled == preferred:
                return conn
        return conns[0]

    def _register(self, conn: _Conn) -> None:
        self.stats.connections_opened += 1
        _thin_stream(conn.writer)
        _delay_next_ack(conn.writer)
        self._conns.setdefault(conn.peer.name, []).append(conn)

    def _close(self, conn: _Conn, *, lost: bool, reason: str = "") -> None:
        """Forget and close a connection; if it broke (`lost`), report the peer once."""
        if conn.closed:
            return
        conn.closed = True
        conns = self._conns.get(conn.peer.name)
        if conns is not None and conn in conns:
            conns.remove(conn)
            if not conns:
                del self._conns[conn.peer.name]
        conn.writer.close()
        if lost and not self._closing:
            self.stats.connections_lost += 1
            direction = "out" if conn.dialled else "in"
            log.info("gossip connection lost", extra={"peer": conn.peer.name, "direction": direction, "reason": reason})
            self._on_lost(conn.peer.name)

    # -- outgoing ---------------------------------------------------------------------------

    async def _write_loop(self, out: _Outgoing) -> None:
        while True:
            payload = await out.queue.get()
            conn = out.conn if out.conn is not None and not out.conn.closed else None
            if out.expected_name is not None:
                conn = self._open_conn(out.expected_name) or conn
            if conn is None:
                earlier = out.queue.qsize()
                conn = await self._dial(out)
                if conn is None:
                    # Unreachable: drop this frame and those queued before the dial; the core's
                    # probes notice the silence. Frames queued during the dial (a join retry to a
                    # seed that just came up) get a dial of their own, not this one's failure.
                    for _ in range(min(earlier, out.queue.qsize())):
                        out.queue.get_nowait()
                    if out.queue.empty():
                        return
                    continue
            out.conn = conn
            try:
                conn.writer.write(_LENGTH.pack(len(payload)) + payload)
                async with asyncio.timeout(self.write_deadline):  # not wait_for: see service._run
                    await conn.writer.drain()
            except (OSError, TimeoutError, ConnectionError) as exc:
                self._close(conn, lost=True, reason=f"write failed: {type(exc).__name__} {exc}")
                continue
            conn.used = True
            self.stats.frames_out += 1
            self.stats.bytes_out += len(payload) + 4

    async def _dial(self, out: _Outgoing) -> _Conn | None:
        if not out.addr:
            return None
        host, port = split_addr(out.addr)
        try:
            async with asyncio.timeout(self.dial_timeout):
                sock = await _connect(host, port)
                reader, writer = await asyncio.open_connection(
                    sock=sock, ssl=self._client_context, server_hostname=host
                )
        except (OSError, TimeoutError, ssl.SSLError, ConnectionError) as exc:
            self.stats.dial_failures += 1
            log.info("gossip dial failed", extra={"addr": out.addr, "reason": f"{type(exc).__name__} {exc}"})
            return None
        peer = peer_cert(writer)
        if (
            peer is None
            or self._is_revoked(peer.fingerprint)
            or (out.expected_name is not None and peer.name != out.expected_name)
            or not await self._admitted(peer)
        ):
            self.stats.refused_handshakes += 1
            writer.close()
            return None
        conn = _Conn(peer, reader, writer, dialled=True)
        self._register(conn)
        task = asyncio.create_task(self._read_loop(conn), name=f"gossip-from-{peer.name}")
        self._readers.add(task)
        task.add_done_callback(self._readers.discard)
        return conn

    async def _admitted(self, peer: PeerCert) -> bool:
        return self._admit is None or await self._admit(peer)

    # -- incoming ---------------------------------------------------------------------------

    async def _serve_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = peer_cert(writer)
        if peer is None or self._is_revoked(peer.fingerprint) or self._closing or not await self._admitted(peer):
            self.stats.refused_handshakes += 1
            writer.close()
            return
        task = asyncio.current_task()
        if task is not None:
            self._readers.add(task)
        conn = _Conn(peer, reader, writer, dialled=False)
        self._register(conn)
        try:
            await self._read_loop(conn)
        finally:
            if task is not None:
                self._readers.discard(task)

    async def _read_loop(self, conn: _Conn) -> None:
        clean, reason = False, "cancelled"
        try:
            clean, reason = await self._read_frames(conn)
        finally:
            # A connection that ends before any frame used it says nothing about the peer:
            # most often its dial gave up during the handshake (a busy host), and the
            # peer reports that itself, as a failed dial.
            self._close(conn, lost=not clean and conn.used, reason=reason)

    async def _read_frames(self, conn: _Conn) -> tuple[bool, str]:
        """Read until the connection ends: (True if we refused a bad frame, why it ended)."""
        peer, reader = conn.peer, conn.reader
        while not conn.closed:
            try:
                header = await reader.readexactly(4)
                (length,) = _LENGTH.unpack(header)
                if length > self.max_frame or length == 0:
                    self.stats.bad_frames += 1
                    log.warning("oversized gossip frame", extra={"peer": peer.name, "bytes": length})
                    return True, "oversized frame"
                payload = await reader.readexactly(length)
            except (asyncio.IncompleteReadError, OSError, ConnectionError, ssl.SSLError) as exc:
                return False, f"{type(exc).__name__} {exc}"
            try:
                frame = decode_frame(payload)
            except (msgspec.DecodeError, msgspec.ValidationError):
                self.stats.bad_frames += 1
                log.warning("malformed gossip frame", extra={"peer": peer.name})
                return True, "malformed frame"
            if frame.sender != peer.name:
                self.stats.bad_frames += 1
                log.warning("gossip frame sender differs from certificate", extra={"peer": peer.name})
                return True, "sender differs from certificate"
            self.stats.frames_in += 1
            self.stats.bytes_in += length + 4
            conn.used = True
            self._on_frame(peer.name, frame)
            # Let the writer send an answer first (it then carries this frame's ACK), then
            # send a still pending ACK and re-arm delayed ACKs for the next request.
            await asyncio.sleep(0)
            if not conn.closed:
                _delay_next_ack(conn.writer)
        return True, "closed here"
