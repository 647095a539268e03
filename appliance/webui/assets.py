"""The built web UI on disk, and what each of its files is answered with.

The UI is built once (`npm run build` in webui/, run by `.ci/setup`) into `dist/` beside this
module, and ships inside the Python package: a node never runs Node.js. The build leaves
hashed files under `assets/` (their name changes when their content does, so a browser may keep
them for a year), `index.html` (the app's one page, revalidated on every load so that a new
build is picked up at once) and, beside each compressible file, its `.gz` and `.br` made at
build time: a node never compresses on the fly, it picks the smallest variant the browser
accepts.

`Dist.scan` indexes the folder once; a request is answered only with a file of that index,
so no part of a URL ever reaches the file system. Deliberately left out: compressing at
request time, range requests (no file here is large enough to resume).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

DIST = Path(__file__).resolve().parent / "dist"
INDEX = "index.html"
IMMUTABLE_PREFIX = "assets/"  # Vite puts only content-hashed names there
IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"

_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".map": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".ico": "image/x-icon",
    ".woff2": "font/woff2",
    ".woff": "font/woff",
    ".txt": "text/plain; charset=utf-8",
}
# Encodings the build writes beside a file, best first: (Accept-Encoding token, suffix).
ENCODINGS = (("br", ".br"), ("gzip", ".gz"))


@dataclass(frozen=True)
class Asset:
    """One servable file: where it is, how it is typed and cached, its compressed variants."""

    path: Path
    content_type: str
    cache_control: str
    etag: str
    encodings: tuple[str, ...]  # Accept-Encoding tokens with a variant on disk, best first

    def variant(self, accept_encoding: str) -> tuple[Path, str | None]:
        """The file to send for this Accept-Encoding header, and its Content-Encoding."""
        accepted = accepted_encodings(accept_encoding)
        for token, suffix in ENCODINGS:
            if token in self.encodings and token in accepted:
                return self.path.with_name(self.path.name + suffix), token
        return self.path, None


def accepted_encodings(header: str) -> set[str]:
    """The codings an Accept-Encoding header accepts (a `q=0` refuses one)."""
    accepted: set[str] = set()
    for part in header.lower().split(","):
        token, _, params = part.strip().partition(";")
        q = params.strip()
        if q.startswith("q="):
            try:
                if float(q[2:]) <= 0:
                    continue
            except ValueError:
                continue
        if token.strip():
            accepted.add(token.strip())
    return accepted


def _content_type(name: str) -> str:
    return _TYPES.get(Path(name).suffix.lower(), "application/octet-stream")


@dataclass(frozen=True)
class Dist:
    """The index of a built UI: URL path (relative, no leading slash) to its asset."""

    root: Path
    files: dict[str, Asset]

    @classmethod
    def scan(cls, root: Path = DIST) -> Dist | None:
        """Index `root`, or None when the UI was not built there (no index.html)."""
        if not (root / INDEX).is_file():
            return None
        files: dict[str, Asset] = {}
        for path in sorted(root.rglob("*")):
            if not path.is_file() or path.suffix in (".gz", ".br"):
                continue
            name = path.relative_to(root).as_posix()
            encodings = tuple(token for token, suffix in ENCODINGS if path.with_name(path.name + suffix).is_file())
            immutable = name.startswith(IMMUTABLE_PREFIX)
            # Hashed names need no validator; the rest gets one from its content.
            etag = "" if immutable else '"' + hashlib.sha256(path.read_bytes()).hexdigest()[:32] + '"'
            files[name] = Asset(
                path=path,
                content_type=_content_type(name),
                cache_control=IMMUTABLE if immutable else REVALIDATE,
                etag=etag,
                encodings=encodings,
            )
        return cls(root=root, files=files)

    @property
    def index(self) -> Asset:
        return self.files[INDEX]

    def lookup(self, path: str) -> Asset | None:
        """The asset a URL path names: a file of the build, index.html for a client-side route
        (a path that names no file and is no asset), or None (a missing asset: 404)."""
        name = path.strip("/")
        found = self.files.get(name)
        if found is not None:
            return found
        return None if names_a_file(name) else self.index


def names_a_file(path: str) -> bool:
    """True for a path that asks for a file (an asset, or a last segment with an extension),
    false for one of the app's routes (`nodes/n2`), which the page answers."""
    name = path.strip("/")
    return name.startswith(IMMUTABLE_PREFIX) or "." in name.rsplit("/", 1)[-1]
