"""Gossip transport: length-prefixed msgpack frames over TLS 1.3 with client certificates.

Every connection is mutually authenticated against the cluster CA; the peer's node name is
the common name of its certificate, and every frame's `sender` must equal it. Each node
dials one outgoing connection per peer, lazily, and keeps it; frames to a peer go through a
small bounded queue drained by one writer task, so a slow peer delays only itself and a write
never takes longer than `write_deadline` (kept below the probe timeout). Incoming connections
are only read. A connection that breaks after it worked is reported (`on_lost`): the core
then suspects that peer at once, but only its suspicion timeout can declare it dead.

Sockets use TCP's thin-stream linear timeouts: gossip keeps only a frame or two in flight, so
a lost segment is recovered by a retransmission timeout, not by duplicate ACKs, and Linux
doubles that timeout after each loss (200, 400, 800 ms). Linear timeouts retry every ~200 ms,
which keeps a refutation from sitting behind a back-off longer than a suspicion lasts.

Malformed, oversized or mis-attributed frames close that connection and are counted; a
revoked certificate is refused at the handshake, and open connections that use it are cut.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
from cryptography import x509

from appliance.cluster.messages import Frame, decode_frame
from appliance.identity import pki

log = logging.getLogger(__name__)

_LENGTH = struct.Struct(">I")
QUEUE_LIMIT = 256
TCP_THIN_LINEAR_TIMEOUTS = 16  # linux/tcp.h; the socket module does not name it


def _thin_stream(writer: asyncio.StreamWriter) -> None:
    """Ask for linear retransmission timeouts on this connection (see the module docstring)."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, TCP_THIN_LINEAR_TIMEOUTS, 1)


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


def peer_cert(writer: asyncio.StreamWriter) -> PeerCert | None:
    ssl_object = writer.get_extra_info("ssl_object")
    der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    if not der:
        return None
    cert = x509.load_der_x509_certificate(der)
    try:
        return PeerCert(pki.node_name_of(cert), pki.fingerprint(cert))
    except ValueError:
        return None


@dataclass
class _Outgoing:
    addr: str
    expected_name: str | None
    queue: asyncio.Queue[bytes] = field(default_factory=lambda: asyncio.Queue(QUEUE_LIMIT))
    task: asyncio.Task[None] | None = None
    writer: asyncio.StreamWriter | None = None
    peer: PeerCert | None = None


def split_addr(addr: str) -> tuple[str, int]:
    host, _, port = addr.rpartition(":")
    return host.strip("[]"), int(port)


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
        self.max_frame = max_frame
        self.write_deadline = write_deadline
        self.dial_timeout = dial_timeout
        self.stats = TransportStats()
        self._server: asyncio.Server | None = None
        self._outgoing: dict[str, _Outgoing] = {}
        self._incoming: set[asyncio.StreamWriter] = set()
        self._readers: set[asyncio.Task[None]] = set()
        self._closing = False

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
        for writer in list(self._incoming):
            writer.close()
        tasks = [o.task for o in self._outgoing.values() if o.task is not None] + list(self._readers)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=1.0)
        for out in self._outgoing.values():
            if out.writer is not None:
                out.writer.close()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)

    def send(self, name: str | None, addr: str, payload: bytes) -> None:
        """Queue a frame for a peer; never blocks. A full queue drops its oldest frame."""
        if self._closing:
            return
        out = self._outgoing.get(addr)
        if out is None or (name is not None and out.expected_name not in (None, name)):
            if out is not None and out.task is not None:
                out.task.cancel()
            out = self._outgoing[addr] = _Outgoing(addr, name)
        if out.queue.full():
            out.queue.get_nowait()
            self.stats.dropped_frames += 1
        out.queue.put_nowait(payload)
        if out.task is None or out.task.done():
            out.task = asyncio.create_task(self._write_loop(out), name=f"gossip-to-{addr}")

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

    def cut(self, fingerprint: str) -> None:
        """Close every connection that uses the certificate with this fingerprint."""
        for out in list(self._outgoing.values()):
            if out.peer is not None and out.peer.fingerprint == fingerprint and out.writer is not None:
                out.writer.close()
        for writer in list(self._incoming):
            peer = peer_cert(writer)
            if peer is not None and peer.fingerprint == fingerprint:
                writer.close()

    # -- outgoing ---------------------------------------------------------------------------

    async def _write_loop(self, out: _Outgoing) -> None:
        try:
            while True:
                payload = await out.queue.get()
                if out.writer is None and not await self._dial(out):
                    # Unreachable: drop what is queued; the core's probes notice the silence.
                    while not out.queue.empty():
                        out.queue.get_nowait()
                    return
                writer = out.writer
                assert writer is not None
                try:
                    writer.write(_LENGTH.pack(len(payload)) + payload)
                    async with asyncio.timeout(self.write_deadline):  # not wait_for: see service._run
                        await writer.drain()
                except (OSError, TimeoutError, ConnectionError) as exc:
                    self._drop(out, lost=True, reason=f"write failed: {type(exc).__name__} {exc}")
                    continue
                self.stats.frames_out += 1
                self.stats.bytes_out += len(payload) + 4
        except asyncio.CancelledError:
            if out.writer is not None:
                out.writer.close()
            raise

    async def _dial(self, out: _Outgoing) -> bool:
        host, port = split_addr(out.addr)
        try:
            async with asyncio.timeout(self.dial_timeout):
                reader, writer = await asyncio.open_connection(host, port, ssl=self._client_context)
        except (OSError, TimeoutError, ssl.SSLError, ConnectionError) as exc:
            self.stats.dial_failures += 1
            log.info("gossip dial failed", extra={"addr": out.addr, "reason": f"{type(exc).__name__} {exc}"})
            return False
        peer = peer_cert(writer)
        if (
            peer is None
            or self._is_revoked(peer.fingerprint)
            or (out.expected_name is not None and peer.name != out.expected_name)
        ):
            self.stats.refused_handshakes += 1
            writer.close()
            return False
        _thin_stream(writer)
        out.writer, out.peer = writer, peer
        watcher = asyncio.create_task(self._watch_outgoing(out, reader, writer), name=f"gossip-watch-{out.addr}")
        self._readers.add(watcher)
        watcher.add_done_callback(self._readers.discard)
        return True

    async def _watch_outgoing(self, out: _Outgoing, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """The peer never writes on our connection: any read result means it went away."""
        reason = "the peer closed it"
        try:
            await reader.read(1)
        except (OSError, ConnectionError, ssl.SSLError) as exc:
            reason = f"{type(exc).__name__} {exc}"
        if out.writer is writer:
            self._drop(out, lost=True, reason=reason)

    def _drop(self, out: _Outgoing, *, lost: bool, reason: str = "") -> None:
        writer, peer = out.writer, out.peer
        out.writer, out.peer = None, None
        if writer is not None:
            writer.close()
        if lost and peer is not None and not self._closing:
            self.stats.connections_lost += 1
            log.info("gossip connection lost", extra={"peer": peer.name, "direction": "out", "reason": reason})
            self._on_lost(peer.name)

    # -- incoming ---------------------------------------------------------------------------

    async def _serve_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = peer_cert(writer)
        if peer is None or self._is_revoked(peer.fingerprint):
            self.stats.refused_handshakes += 1
            writer.close()
            return
        task = asyncio.current_task()
        if task is not None:
            self._readers.add(task)
        self._incoming.add(writer)
        clean = False
        try:
            clean = await self._read_frames(peer, reader)
        finally:
            self._incoming.discard(writer)
            if task is not None:
                self._readers.discard(task)
            writer.close()
            if not clean and not self._closing:
                self.stats.connections_lost += 1
                self._on_lost(peer.name)

    async def _read_frames(self, peer: PeerCert, reader: asyncio.StreamReader) -> bool:
        """Read until the connection ends; True if it ended because we refused a bad frame."""
        while True:
            try:
                header = await reader.readexactly(4)
                (length,) = _LENGTH.unpack(header)
                if length > self.max_frame or length == 0:
                    self.stats.bad_frames += 1
                    log.warning("oversized gossip frame", extra={"peer": peer.name, "bytes": length})
                    return True
                payload = await reader.readexactly(length)
            except (asyncio.IncompleteReadError, OSError, ConnectionError, ssl.SSLError) as exc:
                log.info(
                    "gossip connection lost",
                    extra={"peer": peer.name, "direction": "in", "reason": f"{type(exc).__name__} {exc}"},
                )
                return False
            try:
                frame = decode_frame(payload)
            except (msgspec.DecodeError, msgspec.ValidationError):
                self.stats.bad_frames += 1
                log.warning("malformed gossip frame", extra={"peer": peer.name})
                return True
            if frame.sender != peer.name:
                self.stats.bad_frames += 1
                log.warning("gossip frame sender differs from certificate", extra={"peer": peer.name})
                return True
            self.stats.frames_in += 1
            self.stats.bytes_in += length + 4
            self._on_frame(peer.name, frame)
