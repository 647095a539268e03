"""The ceiling for this stack: a bare ASGI callable that returns fixed bytes, served by granian.

`bench/api.py` serves it beside the appliance so the two are measured in one run on one
machine; the body is the appliance's own response, read from BENCH_BODY_FILE.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

_BODY = Path(os.environ.get("BENCH_BODY_FILE", "/dev/null")).read_bytes()
_START = {
    "type": "http.response.start",
    "status": 200,
    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(_BODY)).encode())],
}
_BODY_MSG = {"type": "http.response.body", "body": _BODY}


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    await send(_START)
    await send(_BODY_MSG)
