"""WebSockets through any node: carry a client's upgrade to the member it is about.

The HTTP forwarder (appliance/api/forward.py) replays one request; a WebSocket is a
conversation, so this relays it. The access gate has already admitted the caller on this
node (permission, Origin, credentials). Before accepting the client, this node opens a
WebSocket to the target over TLS verified against the cluster CA, checks that the
certificate that answered is the target's (nothing is written otherwise), and sends the same
signed forwarding assertion as for HTTP: who the caller is, the target, the path, a time and
a nonce, with the method left empty (an upgrade is not an HTTP method call, so an assertion
for one can never pass for the other). The target verifies it and derives the caller's role
from its own records, exactly as for a forwarded request, and never forwards it again.

Then messages flow both ways until either side closes; the close code travels along. What
the client sees when the target cannot be reached: the socket is accepted and closed at once
with 4000 + the HTTP status a forwarded request would get (4404 not a member, 4502 another
node answered, 4503 dead or unreachable, 4504 no answer in time), or, when the target
refused the upgrade itself (its gate said 401/403), the upgrade is refused here too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from typing import Any

from litestar import WebSocket
from litestar.exceptions import WebSocketDisconnect

from appliance.api.forward import DEADLINE_SECONDS, Forwarder
from appliance.api.upstream import PeerRefused, split_addr
from appliance.api.wsclient import HandshakeRefused, WsClient
from appliance.auth.principal import Principal

FORWARDED_STATE = "debvisor_forwarded"
_PASSED_ON = ("origin", "user-agent")

log = logging.getLogger(__name__)


async def forward_websocket(  # noqa: PLR0911 - one refusal per way forwarding fails
    forwarder: Forwarder, socket: WebSocket[Principal, Any, Any], target: str
) -> None:
    """Relay `socket` (not yet accepted) to the same path on member `target`."""
    if socket.scope.get("state", {}).get(FORWARDED_STATE):
        await _refuse(socket, 4421, f"already forwarded once; node {target!r} is not this node")
        return
    found = forwarder.member_api(target)
    if found is None:
        await _refuse(socket, 4404, f"no node {target!r} in this cluster")
        return
    state, api = found
    if state in ("dead", "left") or not api:
        await _refuse(socket, 4503, f"node {target!r} is {state or 'unknown'}")
        return
    path = socket.scope["path"]
    query = socket.scope.get("query_string", b"").decode("latin-1")
    headers = forwarder.assertion_headers(socket.user, target, "", path)
    headers |= {k: v for k, v in socket.headers.items() if k.lower() in _PASSED_ON}
    host, port = split_addr(api)
    try:
        async with asyncio.timeout(DEADLINE_SECONDS):
            upstream = await WsClient.open(
                host,
                port,
                path + (f"?{query}" if query else ""),
                context=forwarder.context,
                headers=headers,
                peer_check=lambda der: forwarder.check_answering_node(der, target),
            )
    except HandshakeRefused as exc:
        if exc.status in (401, 403):
            await socket.close(4000 + exc.status, f"node {target!r} refused: HTTP {exc.status}")  # before accept
        else:
            await _refuse(socket, 4502, f"node {target!r} answered the upgrade with HTTP {exc.status}")
        return
    except PeerRefused as exc:
        await _refuse(socket, 4502, f"the node answering at {api} is not {target!r}: {exc}")
        return
    except TimeoutError:
        await _refuse(socket, 4504, f"node {target!r} did not answer within {DEADLINE_SECONDS:g} s")
        return
    except (OSError, ssl.SSLError, Exception) as exc:
        await _refuse(socket, 4503, f"node {target!r} cannot be reached: {type(exc).__name__}")
        return
    await socket.accept()
    await _relay(socket, upstream)


async def _relay(socket: WebSocket[Principal, Any, Any], upstream: WsClient) -> None:
    async def down() -> None:
        with contextlib.suppress(OSError):  # a broken connection ends the relay like a close
            while (message := await upstream.recv()) is not None:
                if isinstance(message, str):
                    await socket.send_text(message)
                else:
                    await socket.send_bytes(message)
        code = upstream.close_code if upstream.close_code not in (None, 1005, 1006) else 1000
        with contextlib.suppress(Exception):
            await socket.close(code or 1000, upstream.close_reason)

    async def up() -> None:
        while True:
            message = await socket.receive()
            if message["type"] != "websocket.receive":
                return
            text = message.get("text")
            data = message.get("bytes")
            await upstream.send(text if text is not None else data or b"")

    tasks = [asyncio.create_task(down(), name="ws-forward-down"), asyncio.create_task(up(), name="ws-forward-up")]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect, OSError, Exception):
                await task
        await upstream.close()


async def _refuse(socket: WebSocket[Principal, Any, Any], code: int, reason: str) -> None:
    """Accept and close at once with `code`, so the client can read why."""
    log.info("websocket not forwarded: %s", reason)
    await socket.accept()
    await socket.close(code, reason[:120])
