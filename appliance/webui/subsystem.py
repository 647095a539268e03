"""The web UI subsystem: the built single-page app served at `/` by every node.

Public routes (the page and its scripts hold no data; everything it shows comes from the
authenticated API): `GET /` and `GET /{path}` answer a file of the build (appliance/webui/
assets.py), and any other path that names no file with `index.html`, so that a client-side
route such as `/nodes/n2` survives a reload. `/api/...`, `/healthz`, `/readyz` and `/metrics`
are matched by their own routes first (Litestar's router never falls back from a static
segment to this catch-all), so an unknown API path still gets the API's problem+json 404;
`/api/...` and `/pxe/...` are refused here too, whatever the router does.

Every answer carries a strict Content-Security-Policy: scripts, styles, fonts and images
only from this origin, no inline script, WebSocket connections only back to this host (the
events stream), and the page may not be framed (`frame-ancestors 'none'` and
`X-Frame-Options: DENY`). When the UI was not built into the package the node still runs,
and `/` answers 503 with a page that says how to build it.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

from litestar import MediaType, Request, Response, get
from litestar.params import FromPath

from appliance.api.problems import ApiError
from appliance.auth.permissions import PUBLIC
from appliance.subsystem import Core, Subsystem
from appliance.webui.assets import DIST, IMMUTABLE, Asset, Dist, names_a_file

_HOST = re.compile(r"^[A-Za-z0-9.\-]+(:[0-9]{1,5})?$|^\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?$")

# Paths the page never answers: the API's, and the boot files (served only by the PXE
# listener, never on the API's port: a 404 here, docs/pxe.md).
RESERVED = frozenset({"api", "pxe"})

NOT_BUILT = (
    "<!doctype html><html lang=en><head><meta charset=utf-8><title>DebVisor: web UI not built</title></head>"
    "<body><h1>The web UI is not built on this node</h1>"
    "<p>This installation has no built web UI (appliance/webui/dist). The API works as usual under "
    "<code>/api/v1</code>. From a source checkout, <code>.ci/setup</code> builds it (it needs Node.js and npm); "
    "see docs/webui.md.</p></body></html>"
)


def content_security_policy(host: str) -> str:
    """The page's CSP; `host` (the Host header, when well-formed) names the one WebSocket
    origin besides 'self' (older browsers do not count wss: of the same host as 'self')."""
    connect = "'self'" + (f" wss://{host}" if _HOST.match(host) else "")
    return (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; "
        f"connect-src {connect}; object-src 'none'; base-uri 'none'; form-action 'self'; "
        "frame-ancestors 'none'"
    )


def security_headers(request: Request[Any, Any, Any]) -> dict[str, str]:
    """Headers every UI answer carries."""
    return {
        "Content-Security-Policy": content_security_policy(request.headers.get("host", "")),
        "X-Frame-Options": "DENY",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cross-Origin-Opener-Policy": "same-origin",
    }


class WebUi:
    """Answers UI requests from a built dist; re-checks for a build while it has none."""

    def __init__(self, root: Path = DIST) -> None:
        self.root = root
        self.dist = Dist.scan(root)
        # The hashed files' bytes, kept once read: their content never changes under their name,
        # the build is a few MB at most, and a cold page load then costs no file read (nor a
        # thread hop) per script, stylesheet and font. index.html is read each time (a new build
        # replaces it in place).
        self._immutable: dict[Path, bytes] = {}

    def current(self) -> Dist | None:
        if self.dist is None:  # built after the node started (a checkout's `.ci/setup`)
            self.dist = Dist.scan(self.root)
        return self.dist

    async def answer(self, request: Request[Any, Any, Any], path: str) -> Response[bytes]:
        headers = security_headers(request)
        dist = self.current()
        if dist is None and names_a_file(path):
            raise ApiError(404, f"no such file: /{path.strip('/')} (the web UI is not built)", headers=headers)
        if dist is None:
            headers["Cache-Control"] = "no-store"
            return Response(NOT_BUILT.encode(), status_code=503, media_type=MediaType.HTML, headers=headers)
        asset = dist.lookup(path)
        if asset is None:
            raise ApiError(404, f"no such file in the web UI: /{path.strip('/')}", headers=headers)
        return await self._file(request, asset, headers)

    async def _file(self, request: Request[Any, Any, Any], asset: Asset, headers: dict[str, str]) -> Response[bytes]:
        headers["Cache-Control"] = asset.cache_control
        if asset.encodings:
            headers["Vary"] = "Accept-Encoding"
        if asset.etag:
            headers["ETag"] = asset.etag
            if asset.etag in request.headers.get("if-none-match", ""):
                return Response(b"", status_code=304, headers=headers)
        path, encoding = asset.variant(request.headers.get("accept-encoding", ""))
        if encoding is not None:
            headers["Content-Encoding"] = encoding
        body = self._immutable.get(path)
        if body is None:
            try:
                body = await asyncio.to_thread(path.read_bytes)
            except OSError as exc:  # the build was replaced under us: index it again next time
                self.dist = None
                self._immutable.clear()
                raise ApiError(404, "the web UI changed on disk; reload the page") from exc
            if asset.cache_control == IMMUTABLE:
                self._immutable[path] = body
        return Response(body, status_code=200, media_type=asset.content_type, headers=headers)


def build(core: Core, *, root: Path = DIST) -> Subsystem:
    """The subsystem serving the UI built in `root` (default: the package's dist). It needs
    nothing of the core: the page is public and talks to the API like any client."""
    del core
    ui = WebUi(root)

    @get("/", opt=PUBLIC, include_in_schema=False, name="webui-root")
    async def page(request: Request[Any, Any, Any]) -> Response[bytes]:
        return await ui.answer(request, "")

    @get("/{path:path}", opt=PUBLIC, include_in_schema=False, name="webui-file")
    async def file(request: Request[Any, Any, Any], path: FromPath[str]) -> Response[bytes]:
        if path.strip("/").split("/", 1)[0] in RESERVED:  # never the app there
            raise ApiError(404, "no such route")
        return await ui.answer(request, path)

    return Subsystem(name="webui", routes=[page, file])
