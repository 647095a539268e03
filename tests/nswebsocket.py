"""WebSocket clients for tests and benchmarks, opened from inside a test network namespace.

The connection is made on a thread that entered the namespace (tests/nsclient.py says why);
once open, its socket lives in that namespace and any thread may read it. Messages are the
events socket's: newline-separated JSON objects per frame.
"""

from __future__ import annotations

import json
import socket
import ssl
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FuturesTimeout
from pathlib import Path
from typing import Any

from websockets.sync.client import ClientConnection, connect

from tests.nsclient import enter_netns

DIAL_SECONDS = 30.0  # TCP, TLS and the upgrade: open_timeout (10 s) plus room for a loaded machine


def open_websocket(
    netns: str,
    url: str,
    ca: Path,
    *,
    token: str | None = None,
    headers: dict[str, str] | None = None,
    rcvbuf: int | None = None,
) -> ClientConnection:
    """Connect to `url` (wss://...) from inside `netns`; websockets' InvalidStatus if refused.

    `rcvbuf` shrinks the socket's receive buffer (a client that stops reading then holds
    back the server quickly)."""
    context = ssl.create_default_context(cafile=str(ca))
    context.check_hostname = False
    extra = dict(headers or {})
    if token:
        extra["Authorization"] = f"Bearer {token}"
    host, port = url.split("://", 1)[1].split("/", 1)[0].rsplit(":", 1)

    def dial() -> ClientConnection:
        sock = socket.socket()
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.settimeout(10)
        sock.connect((host, int(port)))
        sock.settimeout(None)
        return connect(
            url,
            sock=sock,
            ssl=context,
            server_hostname=host,
            additional_headers=extra,
            open_timeout=10,
            proxy=None,
            compression=None,
            max_queue=None if rcvbuf is None else 1,
            ping_interval=None,
            legacy=True,
        )

    # websockets gives up on a handshake after open_timeout, but then joins its reader thread,
    # which waits for the server to close the socket: bound the whole dial, so a server that
    # never answers an upgrade fails the test in seconds instead of hanging it.
    pool = ThreadPoolExecutor(max_workers=1, initializer=enter_netns, initargs=(netns,))
    try:
        return pool.submit(dial).result(timeout=DIAL_SECONDS)
    except FuturesTimeout:
        raise TimeoutError(f"{url}: no answer to the WebSocket upgrade within {DIAL_SECONDS:g} s") from None
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def receive(ws: ClientConnection, timeout: float) -> list[dict[str, Any]]:
    """The messages of the next frame (TimeoutError if none comes in time)."""
    frame = ws.recv(timeout=timeout)
    text = frame if isinstance(frame, str) else frame.decode()
    return [json.loads(line) for line in text.splitlines() if line]
