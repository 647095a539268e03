"""The HTTP API skeleton: resources, error documents, limits, permissions on every route."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from litestar.handlers.http_handlers import HTTPRouteHandler
from litestar.routes import WebSocketRoute
from litestar.testing import TestClient

from appliance.app import MAX_BODY_BYTES, Appliance
from appliance.auth.permissions import declared_permission, is_public
from appliance.node.types import InterfaceAddress, Memory, Node
from tests.unit.appliance.conftest import FakeHost, admin_token

PROBLEM = "application/problem+json"


def _assert_problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["title"]
    assert body["type"] == "about:blank"
    assert "Traceback" not in response.text
    return body


def test_node_reports_identity_and_host_facts(client: TestClient[Any], appliance: Appliance) -> None:
    body = client.get("/api/v1/node").json()
    assert body["name"] == "n1"
    assert body["cpu"] == {"count": 4, "model": "Test CPU"}
    assert body["kernel"] == "6.1.0-test"
    assert body["memory"]["total_bytes"] == 8 << 30
    assert body["disk"]["free_bytes"] == 40 << 30
    assert {a["address"] for a in body["addresses"]} >= {"192.0.2.10", "2001:db8::10"}
    assert body["uptime_seconds"] >= 0
    assert len(body["node_id"]) == 36


def test_host_facts_are_cached_between_polls(client: TestClient[Any], appliance: Appliance) -> None:
    host = appliance.node_service._host
    assert isinstance(host, FakeHost)
    for _ in range(5):
        client.get("/api/v1/node")
    assert host.address_calls == 1


def test_put_node_sets_description_and_labels_and_persists(client: TestClient[Any], appliance: Appliance) -> None:
    response = client.put("/api/v1/node", json={"description": "rack 4, top", "labels": {"rack": "r4"}})
    assert response.status_code == 200
    assert response.json()["labels"] == {"rack": "r4"}
    assert client.get("/api/v1/node").json()["description"] == "rack 4, top"
    stored = appliance.node_service._db.get_meta("settings")
    assert stored is not None
    assert json.loads(stored)["labels"] == {"rack": "r4"}


def test_health_and_readiness(client: TestClient[Any], appliance: Appliance) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert set(ready.json()["checks"]) == {"database", "identity", "api", "gossip", "network", "units"}
    assert ready.json()["checks"]["network"]["detail"].startswith("no configuration applied yet")
    appliance.readiness.set("database", False, "disk gone")
    not_ready = client.get("/readyz")
    assert not_ready.status_code == 503
    assert not_ready.json()["checks"]["database"] == {"ready": False, "detail": "disk gone"}


def test_unknown_path_is_404_problem(client: TestClient[Any]) -> None:
    _assert_problem(client.get("/api/v1/nothing-here"), 404)


def test_wrong_method_is_405_problem(client: TestClient[Any]) -> None:
    _assert_problem(client.delete("/api/v1/node"), 405)
    _assert_problem(client.post("/healthz"), 405)


def test_malformed_json_is_400(client: TestClient[Any]) -> None:
    response = client.put("/api/v1/node", content=b'{"labels": ', headers={"content-type": "application/json"})
    body = _assert_problem(response, 400)
    assert "JSON" in body["detail"]


def test_wrong_type_is_422_with_field_path(client: TestClient[Any]) -> None:
    body = _assert_problem(client.put("/api/v1/node", json={"description": 5}), 422)
    assert body["errors"] == [{"path": "$.description", "message": "Expected `str`, got `int`"}]


def test_unknown_field_is_422_naming_it(client: TestClient[Any]) -> None:
    body = _assert_problem(client.put("/api/v1/node", json={"description": "x", "colour": "red"}), 422)
    assert body["errors"] == [{"path": "$.colour", "message": "Object contains unknown field `colour`"}]


def test_constraint_violation_is_422(client: TestClient[Any]) -> None:
    body = _assert_problem(client.put("/api/v1/node", json={"description": "x" * 257}), 422)
    assert body["errors"][0]["path"] == "$.description"
    _assert_problem(client.put("/api/v1/node", json={"labels": {"Not A Key": "v"}}), 422)
    _assert_problem(client.put("/api/v1/node", json=[1, 2]), 422)


def test_oversized_body_is_413(client: TestClient[Any]) -> None:
    payload = b'{"description": "' + b"x" * MAX_BODY_BYTES + b'"}'
    _assert_problem(client.put("/api/v1/node", content=payload, headers={"content-type": "application/json"}), 413)


def test_non_json_body_is_415(client: TestClient[Any]) -> None:
    response = client.put("/api/v1/node", content=b"description=x", headers={"content-type": "text/plain"})
    _assert_problem(response, 415)


def test_unexpected_error_is_a_bare_500(appliance: Appliance) -> None:
    def explode() -> Memory:
        raise RuntimeError("secret internals")

    appliance.node_service._host.memory = explode  # type: ignore[method-assign]
    appliance.node_service._snapshot = None
    with TestClient(appliance.asgi, raise_server_exceptions=False) as quiet:
        response = quiet.get("/api/v1/node", headers={"Authorization": f"Bearer {admin_token(appliance)}"})
    body = _assert_problem(response, 500)
    assert "secret internals" not in response.text
    assert body["detail"] == "internal error; see the node's log"


def test_metrics_count_requests_by_route_template(client: TestClient[Any]) -> None:
    client.get("/api/v1/node")
    client.get("/api/v1/does-not-exist")
    text = client.get("/metrics").text
    assert 'debvisor_http_requests_total{method="GET",route="/api/v1/node",status="200"} 1.0' in text
    assert 'debvisor_http_requests_total{method="GET",route="<unmatched>",status="404"} 1.0' in text
    assert "debvisor_http_request_duration_seconds_bucket" in text
    assert "debvisor_http_requests_in_flight" in text
    assert "process_resident_memory_bytes" in text


def test_openapi_document_and_reference_page(client: TestClient[Any]) -> None:
    spec = client.get("/api/v1/openapi.json").json()
    assert spec["openapi"].startswith("3.1")
    assert "/api/v1/node" in spec["paths"]
    assert {"get", "put"} <= set(spec["paths"]["/api/v1/node"])
    page = client.get("/api/v1/docs")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "/api/v1/node" in page.text
    assert "<script" not in page.text  # works without any CDN


def test_every_route_declares_a_permission_or_is_public(appliance: Appliance) -> None:
    public = set()
    for route in appliance.litestar.routes:
        if isinstance(route, WebSocketRoute):  # WebSockets pass the same gate (appliance/auth/access.py)
            if is_public(route.route_handler):
                public.add(route.path)
            else:
                assert declared_permission(route.route_handler) is not None, f"{route.path} declares no permission"
            continue
        for handler in route.route_handlers:  # type: ignore[union-attr]
            assert isinstance(handler, HTTPRouteHandler)
            if handler.http_methods == {"OPTIONS"}:
                continue  # Litestar's automatic OPTIONS: lists allowed methods, nothing else
            if is_public(handler):
                public.add(route.path)
                continue
            assert declared_permission(handler) is not None, f"{route.path} declares no permission"
    # The internal routes answer only signed node calls (appliance/cluster/nodeauth.py); the
    # enrolment routes only a PXE machine's single-use credential and its poll secret.
    internal = {f"/api/v1/cluster/internal/{name}" for name in ("ca-key", "renew", "join-token", "events")}
    enrolment = {"/api/v1/pxe/enrol", "/api/v1/pxe/enrol/poll"}
    outside = {"/healthz", "/readyz", "/api/v1/auth/login", "/api/v1/cluster/ca", "/api/v1/cluster/join"}
    # The web UI's page and files (appliance/webui): they hold no data.
    webui = {"/", "/{path:path}"}
    assert public == outside | internal | enrolment | webui


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=300),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=20), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.dictionaries(st.sampled_from(["description", "labels", "other"]), json_values) | json_values)
def test_any_json_body_gets_2xx_or_4xx(client: TestClient[Any], body: object) -> None:
    response = client.put("/api/v1/node", content=json.dumps(body), headers={"content-type": "application/json"})
    assert response.status_code in {200, 400, 422}, response.text


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.binary(max_size=200))
def test_any_bytes_body_gets_2xx_or_4xx(client: TestClient[Any], raw: bytes) -> None:
    response = client.put("/api/v1/node", content=raw, headers={"content-type": "application/json"})
    assert response.status_code in {200, 400, 422}, response.text


@pytest.mark.parametrize("path", ["/api/v1/node/%00", "/api/v1/../../etc/passwd", "/%ff%fe", "/api/v1/node?x=%zz"])
def test_odd_paths_never_500(client: TestClient[Any], path: str) -> None:
    assert client.get(path).status_code < 500


def test_service_errors_become_problems_with_their_headers() -> None:
    """401, 409 and 429 come from services (accounts, conflicts, rate limits) as ApiError."""
    from litestar import Litestar, get
    from litestar.params import FromPath

    from appliance.api.problems import EXCEPTION_HANDLERS, ApiError

    @get("/fail/{status:int}")
    async def fail(status: FromPath[int]) -> None:
        headers = {"Retry-After": "3"} if status == 429 else {"WWW-Authenticate": "Bearer"}
        raise ApiError(status, f"failed with {status}", headers=headers)

    app = Litestar([fail], exception_handlers=EXCEPTION_HANDLERS, logging_config=None)  # type: ignore[arg-type]
    with TestClient(app) as test_client:
        for status in (401, 403, 409, 429):
            response = test_client.get(f"/fail/{status}")
            body = _assert_problem(response, status)
            assert body["detail"] == f"failed with {status}"
        assert test_client.get("/fail/429").headers["retry-after"] == "3"
        assert test_client.get("/fail/401").headers["www-authenticate"] == "Bearer"


def test_cluster_summary_of_a_single_node(client: TestClient[Any]) -> None:
    summary = client.get("/api/v1/cluster").json()
    assert summary["answered_by"] == "n1"
    assert summary["states"] == {"alive": 1}
    assert summary["totals"] == {"nodes": 1, "cpus": 4, "memory_bytes": 8 << 30}
    facts = summary["facts"]["n1"]
    assert facts["cpu"] == {"count": 4, "model": "Test CPU"}
    assert [a["address"] for a in facts["addresses"]] == ["192.0.2.10", "2001:db8::10"]  # global scope only
    assert summary["fresh"] is None
    fresh = client.get("/api/v1/cluster", params={"fresh": "true"}).json()["fresh"]
    assert [(a["name"], a["answered"]) for a in fresh] == [("n1", True)]


def test_a_burst_of_polls_refreshes_the_host_facts_once(appliance: Appliance) -> None:
    # Requests arriving while the (slow, netlink) refresh runs wait for it rather than start their own.
    host = appliance.node_service._host
    assert isinstance(host, FakeHost)
    real = host.addresses

    async def slow_addresses() -> list[InterfaceAddress]:
        await asyncio.sleep(0.05)
        return await real()

    host.addresses = slow_addresses  # type: ignore[method-assign]

    async def burst() -> list[Node]:
        return await asyncio.gather(*(appliance.node_service.get() for _ in range(20)))

    nodes = asyncio.run(burst())
    assert host.address_calls == 1
    assert all(n.addresses == nodes[0].addresses for n in nodes)
