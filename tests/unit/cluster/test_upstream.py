"""The node-to-node HTTP/1.1 client against a scripted TLS server on loopback.

The server answers each request with the next canned reply from a list, so body framing
(Content-Length, chunked, until close), connection reuse, a server that closes idle
connections, and malformed answers are all exercised on real sockets.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography import x509

from appliance.api.upstream import PeerRefused, UpstreamError, UpstreamPool
from appliance.identity import pki

NOW = dt.datetime.now(dt.UTC)


class ScriptedServer:
    def __init__(self, replies: list[bytes], *, close_after_each: bool = False) -> None:
        self.replies = replies
        self.close_after_each = close_after_each
        self.requests: list[bytes] = []
        self.connections = 0
        self.server: asyncio.Server | None = None

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while self.replies:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    (
                        int(line.split(b":")[1])
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length")
                    ),
                    0,
                )
                self.requests.append(head + (await reader.readexactly(length) if length else b""))
                writer.write(self.replies.pop(0))
                await writer.drain()
                if self.close_after_each:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])


@pytest.fixture
def contexts(tmp_path: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    ca_key, ca_cert = pki.new_ca("test", NOW)
    key = pki.new_key()
    cert = pki.issue_node_cert(
        ca_key, ca_cert, key.public_key(), name="n1", addresses=[ipaddress.ip_address("127.0.0.1")], now=NOW
    )
    (tmp_path / "ca.crt").write_bytes(pki.cert_to_pem(ca_cert))
    (tmp_path / "n1.crt").write_bytes(pki.cert_to_pem(cert))
    (tmp_path / "n1.key").write_bytes(pki.key_to_pem(key))
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(tmp_path / "n1.crt", tmp_path / "n1.key")
    client = ssl.create_default_context(cafile=str(tmp_path / "ca.crt"))
    client.check_hostname = False
    return server, client


async def serve(script: ScriptedServer, context: ssl.SSLContext) -> AsyncIterator[ScriptedServer]:
    script.server = await asyncio.start_server(script.handle, "127.0.0.1", 0, ssl=context)
    try:
        yield script
    finally:
        script.server.close()
        await script.server.wait_closed()


def reply(body: bytes, extra: str = "") -> bytes:
    return (
        f"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n{extra}\r\n".encode()
        + body
    )


async def test_bodies_of_every_framing_and_one_connection_reused(
    contexts: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    chunked = b"HTTP/1.1 201 Created\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n6;x=1\r\n world\r\n0\r\n\r\n"
    script = ScriptedServer([reply(b'{"a":1}'), chunked, reply(b"", "x-empty: 1\r\n")])
    async for server in serve(script, contexts[0]):
        pool = UpstreamPool(contexts[1])
        first = await pool.request("127.0.0.1", server.port, "GET", "/x?y=1", headers={"x-test": "1"})
        assert (first.status, first.headers["content-type"], await first.read()) == (
            200,
            "application/json",
            b'{"a":1}',
        )
        second = await pool.request("127.0.0.1", server.port, "POST", "/p", headers={}, body=b'{"z":2}')
        assert second.status == 201
        assert second.content_length is None
        assert [c async for c in second.chunks()] == [b"hello", b" world"]
        third = await pool.request("127.0.0.1", server.port, "DELETE", "/d", headers={})
        assert (third.status, await third.read(), third.headers["x-empty"]) == (200, b"", "1")
        await pool.aclose()
        assert server.connections == 1
        assert server.requests[0].startswith(b"GET /x?y=1 HTTP/1.1\r\nHost: 127.0.0.1:")
        assert b"x-test: 1\r\n" in server.requests[0]
        assert server.requests[1].endswith(b'Content-Length: 7\r\n\r\n{"z":2}')
        assert b"Content-Length" not in server.requests[2]


async def test_a_connection_the_server_closed_while_idle_is_replaced_once(
    contexts: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    script = ScriptedServer([reply(b"1"), reply(b"2")], close_after_each=True)
    async for server in serve(script, contexts[0]):
        pool = UpstreamPool(contexts[1])
        assert await (await pool.request("127.0.0.1", server.port, "GET", "/", headers={})).read() == b"1"
        await asyncio.sleep(0.05)  # the server has closed the kept connection by now
        assert await (await pool.request("127.0.0.1", server.port, "GET", "/", headers={})).read() == b"2"
        await pool.aclose()
        assert server.connections == 2


async def test_a_body_until_close_and_a_malformed_answer(contexts: tuple[ssl.SSLContext, ssl.SSLContext]) -> None:
    script = ScriptedServer([b"HTTP/1.1 200 OK\r\n\r\nuntil the end"], close_after_each=True)
    async for server in serve(script, contexts[0]):
        pool = UpstreamPool(contexts[1])
        response = await pool.request("127.0.0.1", server.port, "GET", "/", headers={})
        assert await response.read() == b"until the end"
        await pool.aclose()
    script = ScriptedServer([b"SSH-2.0-OpenSSH\r\n\r\n"])
    async for server in serve(script, contexts[0]):
        pool = UpstreamPool(contexts[1])
        with pytest.raises(UpstreamError, match="not HTTP"):
            await pool.request("127.0.0.1", server.port, "GET", "/", headers={})
        await pool.aclose()
    script = ScriptedServer([b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort"], close_after_each=True)
    async for server in serve(script, contexts[0]):
        pool = UpstreamPool(contexts[1])
        response = await pool.request("127.0.0.1", server.port, "GET", "/", headers={})
        with pytest.raises(UpstreamError, match="middle of the body"):
            await response.read()
        await pool.aclose()


async def test_peer_check_sees_the_certificate_before_anything_is_sent(
    contexts: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    script = ScriptedServer([reply(b"1"), reply(b"2")])
    seen: list[str] = []
    refuse = False

    def check(der: bytes) -> None:
        seen.append(pki.node_name_of(x509.load_der_x509_certificate(der)))
        if refuse:
            raise PeerRefused("not the node asked for")

    async for server in serve(script, contexts[0]):
        pool = UpstreamPool(contexts[1])
        first = await pool.request("127.0.0.1", server.port, "GET", "/", headers={}, peer_check=check)
        assert await first.read() == b"1"
        refuse = True  # e.g. revoked while the connection was idle: the reused one is checked too
        with pytest.raises(PeerRefused):
            await pool.request(
                "127.0.0.1", server.port, "GET", "/secret", headers={"x-assertion": "1"}, peer_check=check
            )
        await pool.aclose()
        assert seen == ["n1", "n1"]
        assert len(server.requests) == 1  # the refused request never left
        with pytest.raises(PeerRefused):  # and a fresh connection (none is idle now)
            await pool.request("127.0.0.1", server.port, "GET", "/secret", headers={}, peer_check=check)
        assert seen == ["n1", "n1", "n1"]
        assert len(server.requests) == 1
