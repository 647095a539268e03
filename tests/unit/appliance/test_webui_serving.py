"""The web UI as the node serves it: cache rules, precompressed variants, the CSP, client-side
routes answered with the page (never under /api), and a node without a built UI.

A small dist is written per test (the real build is tested end to end in
tests/integration/test_webui.py), served by the webui subsystem's own routes and, for the
routing rules that involve the API, by the whole app.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from litestar import Litestar
from litestar.testing import TestClient

from appliance.api.problems import EXCEPTION_HANDLERS
from appliance.app import Appliance
from appliance.subsystem import Core
from appliance.webui.assets import Dist, accepted_encodings
from appliance.webui.subsystem import build, content_security_policy

INDEX = b'<!doctype html><html><head><script type="module" src="/assets/index-abc123.js"></script></head></html>'
SCRIPT = b"console.log('debvisor');" * 40


def _dist(root: Path) -> Path:
    (root / "assets").mkdir(parents=True)
    (root / "index.html").write_bytes(INDEX)
    (root / "favicon.svg").write_bytes(b"<svg/>")
    (root / "assets" / "index-abc123.js").write_bytes(SCRIPT)
    (root / "assets" / "index-abc123.js.gz").write_bytes(gzip.compress(SCRIPT))
    (root / "assets" / "index-abc123.js.br").write_bytes(b"brotli-bytes")
    return root


def _client(root: Path) -> TestClient[Any]:
    app = Litestar(route_handlers=build(cast("Core", None), root=root).routes, exception_handlers=EXCEPTION_HANDLERS)  # type: ignore[arg-type]
    return TestClient(app, base_url="https://node.example:8443")


@pytest.fixture
def served(tmp_path: Path) -> Iterator[TestClient[Any]]:
    with _client(_dist(tmp_path / "dist")) as client:
        yield client


def test_hashed_assets_are_immutable_and_precompressed(served: TestClient[Any]) -> None:
    br = served.get("/assets/index-abc123.js", headers={"Accept-Encoding": "gzip, br"})
    assert br.status_code == 200
    assert br.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert br.headers["content-encoding"] == "br"
    assert br.headers["vary"] == "Accept-Encoding"
    assert br.headers["content-type"].startswith("text/javascript")
    gz = served.get("/assets/index-abc123.js", headers={"Accept-Encoding": "gzip, br;q=0"})
    assert gz.headers["content-encoding"] == "gzip"
    assert gz.content == SCRIPT  # the client undid the gzip the node sent as it was
    plain = served.get("/assets/index-abc123.js", headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers
    assert plain.content == SCRIPT


def test_hashed_files_are_read_once_and_the_page_every_time(tmp_path: Path) -> None:
    root = _dist(tmp_path / "dist")
    with _client(root) as client:
        first = client.get("/assets/index-abc123.js", headers={"Accept-Encoding": "identity"})
        assert first.content == SCRIPT
        assert client.get("/").content == INDEX
        # Overwritten in place (no build does that to a hashed name): still the bytes first read.
        (root / "assets" / "index-abc123.js").write_bytes(b"changed")
        (root / "index.html").write_bytes(INDEX + b"<!-- new build -->")
        again = client.get("/assets/index-abc123.js", headers={"Accept-Encoding": "identity"})
        assert again.content == SCRIPT
        assert client.get("/").content == INDEX + b"<!-- new build -->"  # the page is never kept


def test_the_page_is_revalidated_and_answers_304_when_unchanged(served: TestClient[Any]) -> None:
    page = served.get("/")
    assert page.status_code == 200
    assert page.content == INDEX
    assert page.headers["cache-control"] == "no-cache"
    assert page.headers["content-type"].startswith("text/html")
    again = served.get("/", headers={"If-None-Match": page.headers["etag"]})
    assert again.status_code == 304
    assert again.content == b""


def test_every_answer_carries_the_strict_policy(served: TestClient[Any]) -> None:
    for path in ("/", "/assets/index-abc123.js", "/nodes/n2"):
        headers = served.get(path).headers
        csp = headers["content-security-policy"]
        assert "default-src 'self'" in csp
        assert "script-src 'self';" in csp
        assert "'unsafe-inline'" not in csp
        assert "frame-ancestors 'none'" in csp
        assert "connect-src 'self' wss://node.example:8443;" in csp
        assert headers["x-frame-options"] == "DENY"
        assert headers["x-content-type-options"] == "nosniff"


def test_a_forged_host_never_reaches_the_policy() -> None:
    assert "wss://" not in content_security_policy("evil.example; script-src *")
    assert "connect-src 'self' wss://[::1]:8443;" in content_security_policy("[::1]:8443")


def test_client_side_routes_get_the_page_and_missing_files_a_404(served: TestClient[Any]) -> None:
    for route in ("/nodes", "/nodes/n2", "/audit"):
        answer = served.get(route)
        assert answer.status_code == 200, route
        assert answer.content == INDEX
    assert served.get("/favicon.svg").content == b"<svg/>"
    missing = served.get("/assets/index-gone.js")
    assert missing.status_code == 404
    assert missing.headers["content-type"].startswith("application/problem+json")
    assert served.get("/robots.txt").status_code == 404
    assert served.get("/api/v1/anything").status_code == 404  # even without the API's routes
    assert served.get("/pxe/vmlinuz").status_code == 404  # boot files: only the PXE listener


def test_a_node_without_a_built_ui_says_so(tmp_path: Path) -> None:
    with _client(tmp_path / "nothing") as client:
        page = client.get("/nodes/n2")
        assert page.status_code == 503
        assert b"web UI is not built" in page.content
        assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
        assert client.get("/assets/index-abc123.js").status_code == 404
        # Built later (a checkout's .ci/setup while the node runs): picked up without a restart.
        _dist(tmp_path / "nothing")
        assert client.get("/").status_code == 200


def test_the_app_keeps_api_paths_for_the_api(appliance: Appliance, anonymous: TestClient[Any]) -> None:
    for path in ("/api/v1/no-such-route", "/api/v1/nodes/n1/no-such-thing", "/api"):
        answer = anonymous.get(path)
        assert answer.status_code in (401, 404), path
        assert answer.headers["content-type"].startswith("application/problem+json"), path
    assert anonymous.get("/healthz").json()["status"] == "ok"
    page = anonymous.get("/nodes/n1")
    assert page.status_code in (200, 503)  # 503 where the UI is not built
    assert page.headers["content-type"].startswith("text/html")
    assert page.headers["x-frame-options"] == "DENY"


def test_accept_encoding_parsing() -> None:
    assert accepted_encodings("gzip, deflate, br;q=0.8") == {"gzip", "deflate", "br"}
    assert accepted_encodings("br;q=0, gzip;q=1.0") == {"gzip"}
    assert accepted_encodings("") == set()


def test_the_index_lists_only_what_was_built(tmp_path: Path) -> None:
    dist = Dist.scan(_dist(tmp_path / "d"))
    assert dist is not None
    assert sorted(dist.files) == ["assets/index-abc123.js", "favicon.svg", "index.html"]
    assert dist.files["assets/index-abc123.js"].encodings == ("br", "gzip")
    assert dist.lookup("../../etc/passwd") is dist.index  # a route name, never a file outside the build
    assert dist.lookup("../../etc/os-release.d/x.conf") is None
    assert Dist.scan(tmp_path / "absent") is None
