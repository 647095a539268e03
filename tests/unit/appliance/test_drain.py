"""`DrainBody` reads what an early answer left of a request body, and nothing it should not."""

from __future__ import annotations

import asyncio
from typing import Any

from appliance.api.drain import DrainBody


async def _refuse(scope: Any, receive: Any, send: Any) -> None:
    """An app that answers 404 without reading the body (as the per-node router does)."""
    await send({"type": "http.response.start", "status": 404, "headers": []})
    await send({"type": "http.response.body", "body": b"no such node"})


async def _read_one(scope: Any, receive: Any, send: Any) -> None:
    """An app that reads one chunk, then answers."""
    await receive()
    await _refuse(scope, receive, send)


def _serve(app: Any, headers: list[tuple[bytes, bytes]], chunks: list[bytes]) -> tuple[int, list[dict[str, Any]]]:
    """Run `app` through DrainBody on a request with `chunks` as its body; (chunks read, answer)."""
    queue = [
        {"type": "http.request", "body": chunk, "more_body": i < len(chunks) - 1} for i, chunk in enumerate(chunks)
    ]
    read = 0
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal read
        if read < len(queue):
            read += 1
            return queue[read - 1]
        raise AssertionError("read past the end of the body (a request without one would wait forever)")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "PUT", "path": "/", "headers": headers}
    asyncio.run(DrainBody(app, limit=1000)(scope, receive, send))  # type: ignore[arg-type]  # plain dicts as messages
    return read, sent


def test_an_unread_body_is_drained_after_the_answer() -> None:
    read, sent = _serve(_refuse, [(b"content-length", b"30")], [b"a" * 10, b"b" * 10, b"c" * 10])
    assert read == 3
    assert sent[0]["status"] == 404
    read, _ = _serve(_read_one, [(b"content-length", b"30")], [b"a" * 10, b"b" * 10, b"c" * 10])
    assert read == 3


def test_a_chunked_body_is_drained_too() -> None:
    read, _ = _serve(_refuse, [(b"transfer-encoding", b"chunked")], [b"a", b"b"])
    assert read == 2


def test_no_body_no_read_and_a_body_over_the_limit_is_left() -> None:
    assert _serve(_refuse, [], [b""])[0] == 0
    assert _serve(_refuse, [(b"content-length", b"0")], [b""])[0] == 0
    assert _serve(_refuse, [(b"content-length", b"5000")], [b"a" * 1000] * 5)[0] == 0  # 413 territory: closed
    read_body = _serve(_read_one, [(b"content-length", b"3")], [b"abc"])
    assert read_body[0] == 1  # the app read it all: nothing more is asked for
