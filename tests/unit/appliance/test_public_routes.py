"""The routes anyone may call without credentials are exactly those docs/security.md lists.

The list is read from the table at the top of docs/security.md ("route | why it is public |
what it checks instead"), so the code and the document cannot drift apart. The app's side is
measured twice: from each route's declared policy, and by calling every route without
credentials (every other route must answer 401).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from litestar.handlers.http_handlers import HTTPRouteHandler
from litestar.routes import HTTPRoute
from litestar.testing import TestClient

from appliance.app import Appliance
from appliance.auth.access import policy_for

SECURITY_DOC = Path(__file__).resolve().parents[3] / "docs" / "security.md"
_METHODS = ("GET", "PUT", "POST", "PATCH", "DELETE")
_ROUTE = re.compile(r"`(?:(GET|PUT|POST|PATCH|DELETE) )?(/[^`]*)`")


def documented_public_routes(text: str) -> list[tuple[str | None, str]]:
    """(method or None, path) from the first table whose header starts with `| route |`.

    A path ending in `/...` stands for every route under it (any method).
    """
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if re.match(r"^\|\s*route\s*\|", line))
    routes: list[tuple[str | None, str]] = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        first_cell = line.split("|")[1]
        found = _ROUTE.findall(first_cell)
        assert found, f"a row of the public-route table names no route: {line}"
        routes += [(method or None, path) for method, path in found]
    return routes


def _covers(entry: tuple[str | None, str], method: str, path: str) -> bool:
    doc_method, doc_path = entry
    if doc_method is not None and doc_method != method:
        return False
    if doc_path.endswith("/..."):
        return path.startswith(doc_path[: -len("...")])
    return path == doc_path


def _routes(appliance: Appliance) -> list[tuple[str, str, HTTPRouteHandler]]:
    """(method, path template, handler) of every route the API serves (Litestar's automatic
    OPTIONS answers aside)."""
    found: list[tuple[str, str, HTTPRouteHandler]] = []
    for route in appliance.litestar.routes:
        if isinstance(route, HTTPRoute):
            for handler in route.route_handlers:
                found += [(m, route.path_format, handler) for m in sorted(handler.http_methods) if m in _METHODS]
    return found


def public_routes(appliance: Appliance) -> list[tuple[str, str]]:
    return sorted((method, path) for method, path, handler in _routes(appliance) if policy_for(handler).public)


def test_the_doc_table_parses() -> None:
    routes = documented_public_routes(SECURITY_DOC.read_text())
    assert ("GET", "/healthz") in routes
    assert ("POST", "/api/v1/cluster/join") in routes
    assert (None, "/api/v1/cluster/internal/...") in routes
    sample = "| route | why | what |\n|---|---|---|\n| `GET /a`, `POST /b` | x | y |\n| `/c/...` | x | y |\n\nafter"
    assert documented_public_routes(sample) == [("GET", "/a"), ("POST", "/b"), (None, "/c/...")]


def test_public_routes_are_exactly_those_docs_security_md_lists(appliance: Appliance) -> None:
    documented = documented_public_routes(SECURITY_DOC.read_text())
    public = public_routes(appliance)
    assert len(public) >= 5
    undocumented = [(m, p) for m, p in public if not any(_covers(entry, m, p) for entry in documented)]
    assert not undocumented, f"public routes docs/security.md does not list: {undocumented}"
    stale = [entry for entry in documented if not any(_covers(entry, m, p) for m, p in public)]
    assert not stale, f"docs/security.md lists routes that are not public (or do not exist): {stale}"


def test_every_other_route_refuses_an_anonymous_caller(appliance: Appliance, anonymous: TestClient[Any]) -> None:
    """Measured, not declared: a caller without credentials gets 401 from every route the policy
    calls non-public, and something else from the public ones."""
    answered_without_credentials = set()
    refused = 0
    for method, path, handler in _routes(appliance):
        url = re.sub(r"\{[^}]*\}", "x", path)
        answer = anonymous.request(method, url, json={} if method in ("POST", "PUT", "PATCH") else None)
        if answer.status_code != 401:
            answered_without_credentials.add((method, path))
        else:
            refused += 1
            assert not policy_for(handler).public or path.startswith("/api/v1/cluster/internal/"), (method, path)
    public = set(public_routes(appliance))
    # The internal node calls are public to the gate and refuse an unsigned call themselves.
    assert answered_without_credentials == {(m, p) for m, p in public if not p.startswith("/api/v1/cluster/internal/")}
    assert refused > 40
    assert ("GET", "/healthz") in answered_without_credentials
    # The boot files are not on the API at all (they have their own listener).
    assert anonymous.get("/pxe/boot.ipxe", params={"mac": "52:54:00:00:00:01"}).status_code == 404
