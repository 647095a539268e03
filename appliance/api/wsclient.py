"""A WebSocket client for node-to-node streams, on the `websockets` library's sans-I/O protocol.

Two things open WebSockets to other members: the forwarder, carrying a client's upgrade to
the node it is about, and the event gatherer, reading each peer's event stream. Both must
check, as the HTTP forwarder does (appliance/cluster/upstream.py), that the certificate that
answered is the intended node's *before* the handshake request (which carries a signed
assertion) is written. A ready-made client sends its request as soon as TLS is up, so this
one owns the connection: TLS (verified against the cluster CA), the peer check, then the
handshake and frames through `websockets.client.ClientProtocol`, which also answers pings.

Left out: compression (the extension is not offered), redirects, proxies.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Callable

from websockets.client import ClientProtocol
from websockets.exceptions import InvalidHandshake
from websockets.frames import Close, CloseCode, Frame, Opcode
from websockets.http11 import Response
from websockets.uri import parse_uri

READ_CHUNK = 64 * 1024
MAX_MESSAGE = 4 * 1024 * 1024


class HandshakeRefused(Exception):
    """The other side answered the upgrade with an HTTP status instead of switching protocols."""

    def __init__(self, status: int, body: bytes) -> None:
        super().__init__(f"upgrade refused with HTTP {status}")
        self.status = status
        self.body = body


class WsClient:
    """One open client WebSocket: `recv` messages, `send` them, `close` it."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, protocol: ClientProtocol) -> None:
        self._reader = reader
        self._writer = writer
        self._protocol = protocol
        self._pending: list[str | bytes | None] = []
        self._fragments: list[bytes] = []
        self._fragment_text = False
        self.close_code: int | None = None
        self.close_reason = ""

    @classmethod
    async def open(
        cls,
        host: str,
        port: int,
        path: str,
        *,
        context: ssl.SSLContext,
        headers: dict[str, str],
        peer_check: Callable[[bytes], None] | None = None,
    ) -> WsClient:
        """Connect, check the peer, shake hands; HandshakeRefused, OSError or the peer check's error."""
        reader, writer = await asyncio.open_connection(host, port, ssl=context, server_hostname=host)
        try:
            if peer_check is not None:
                tls = writer.get_extra_info("ssl_object")
                peer_check(tls.getpeercert(binary_form=True) or b"" if tls is not None else b"")
            protocol = ClientProtocol(parse_uri(f"wss://{host}:{port}{path}"), max_size=MAX_MESSAGE)
            request = protocol.connect()
            for name, value in headers.items():
                request.headers[name] = value
            protocol.send_request(request)
            client = cls(reader, writer, protocol)
            await client._flush()
            await client._handshake()
        except BaseException:
            writer.close()
            raise
        return client

    async def _handshake(self) -> None:
        while True:
            data = await self._reader.read(READ_CHUNK)
            if not data:
                self._protocol.receive_eof()
            else:
                self._protocol.receive_data(data)
            events = self._protocol.events_received()
            response = next((e for e in events if isinstance(e, Response)), None)
            for event in events:
                self._take(event)  # frames that came with the answer (a close, at once)
            if response is not None:
                if response.status_code != 101 or self._protocol.handshake_exc is not None:
                    raise HandshakeRefused(response.status_code, bytes(response.body or b""))
                return
            if not data:
                raise InvalidHandshake("connection closed during the handshake")

    async def recv(self) -> str | bytes | None:
        """The next message; None once the connection closed (see `close_code`)."""
        while not self._pending:
            data = await self._reader.read(READ_CHUNK)
            if data:
                self._protocol.receive_data(data)
            else:
                self._protocol.receive_eof()
            for event in self._protocol.events_received():
                self._take(event)
            try:
                await self._flush()  # pongs and the close answer
            except OSError:
                self._pending.append(None)  # the other side is gone (it may close right after its close frame)
            if not data and not self._pending:
                self._pending.append(None)
        message = self._pending.pop(0)
        if message is None:
            self._pending.append(None)  # stays closed
        return message

    def _take(self, event: object) -> None:
        if not isinstance(event, Frame):
            return
        if event.opcode is Opcode.CLOSE:
            close = Close.parse(event.data) if event.data else Close(CloseCode.NO_STATUS_RCVD, "")
            self.close_code, self.close_reason = close.code, close.reason
            self._pending.append(None)
            return
        if event.opcode in (Opcode.TEXT, Opcode.BINARY):
            self._fragments = [bytes(event.data)]
            self._fragment_text = event.opcode is Opcode.TEXT
        elif event.opcode is Opcode.CONT:
            self._fragments.append(bytes(event.data))
        else:
            return  # ping/pong: the protocol answers pings itself
        if event.fin:
            data = b"".join(self._fragments)
            self._fragments = []
            self._pending.append(data.decode() if self._fragment_text else data)

    async def send(self, message: str | bytes) -> None:
        if isinstance(message, str):
            self._protocol.send_text(message.encode())
        else:
            self._protocol.send_binary(message)
        await self._flush()

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Send a close frame (if still open) and drop the connection."""
        with contextlib.suppress(Exception):
            self._protocol.send_close(code, reason)
            await self._flush()
        self._writer.close()
        with contextlib.suppress(Exception):
            await self._writer.wait_closed()

    def abort(self) -> None:
        self._writer.close()

    async def _flush(self) -> None:
        for chunk in self._protocol.data_to_send():
            if chunk:
                self._writer.write(chunk)
        await self._writer.drain()
