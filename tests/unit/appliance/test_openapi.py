"""The served OpenAPI document: valid OpenAPI 3.1, every reference resolves, every route lists
the problems it can answer, and every answer the API unit tests got is documented.

The last check reads what `answers.py` recorded while the other tests of this directory ran
(it is ordered after them); run alone, without them, it has nothing to check and says so.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import jsonschema
import pytest
from litestar.testing import TestClient
from openapi_spec_validator import validate

from appliance.api.openapi import (
    BODY_STATUSES,
    FORWARD_STATUSES,
    GATE_STATUSES,
    PROBLEM_SCHEMA,
    document,
    documented_routes,
    problem_statuses,
    problems,
)
from appliance.api.problems import PROBLEM_JSON
from appliance.app import Appliance
from appliance.auth.access import policy_for
from tests.unit.appliance.answers import ANSWERS, Answer
from tests.unit.appliance.conftest import another_browser

# The API tests of this directory get about 20 answers each when all of them run; fewer means
# the recording broke, and the check would pass on nothing. The floors hold on average over the
# whole directory only: a run filtered with -k (or a few files) may pick tests that make one or
# two requests each, and then failed the floor although nothing was wrong (it did so once, and
# passed on the unfiltered rerun). Such a run still needs answers to have been recorded.
MIN_ANSWERS_PER_FEEDING_TEST = 5
TESTS_PER_OPERATION = 4  # at least one distinct operation answered per this many feeding tests
FLOORS_FROM_FEEDING_TESTS = 50  # 91 feed the check in a full run of tests/unit/appliance


def _served(client: TestClient[Any]) -> dict[str, Any]:
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    served: dict[str, Any] = response.json()
    return served


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [ref for value in node.values() for ref in _refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in _refs(value)]
    return []


def _resolve(schema: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), f"{ref} is not a local reference"
    node: Any = schema
    for escaped in ref[2:].split("/"):
        part = escaped.replace("~1", "/").replace("~0", "~")
        assert isinstance(node, dict), f"{ref} does not resolve (no {part!r})"
        assert part in node, f"{ref} does not resolve (no {part!r})"
        node = node[part]
    return node


def test_served_document_is_valid_openapi_31(client: TestClient[Any]) -> None:
    served = _served(client)
    assert served["openapi"].startswith("3.1")
    validate(served)  # raises on any schema violation or unresolvable reference


def test_every_reference_resolves(client: TestClient[Any]) -> None:
    served = _served(client)
    refs = set(_refs(served))
    assert len(refs) > 50
    for ref in sorted(refs):
        _resolve(served, ref)
    # The struct the 2.25 example generator used to leave dangling is defined now.
    assert "DiskInfo" in served["components"]["schemas"]


def test_every_route_documents_its_problems(appliance: Appliance, client: TestClient[Any]) -> None:
    served = _served(client)
    checked = Counter[str]()
    for path, method, handler in documented_routes(appliance.litestar):
        operation = served["paths"][path][method]
        responses = operation["responses"]
        policy = policy_for(handler)
        expected = problem_statuses(
            handler, has_parameters=any(p["in"] != "path" for p in operation.get("parameters", []))
        )
        for status in expected:
            content = responses[str(status)]["content"]
            assert list(content) == [PROBLEM_JSON], f"{method} {path} {status}"
            assert content[PROBLEM_JSON]["schema"] == {"$ref": f"#/components/schemas/{PROBLEM_SCHEMA}"}
        if not policy.public:
            assert expected >= GATE_STATUSES, f"{method} {path}"
            checked["gated"] += 1
        if policy.takes_json_body and method in ("post", "put", "patch"):
            assert BODY_STATUSES | {415} <= expected, f"{method} {path}"
            checked["body"] += 1
        if path.startswith("/api/v1/nodes/{name}/"):
            assert expected >= FORWARD_STATUSES, f"{method} {path} is per node: it must document forwarding"
            checked["per node"] += 1
        assert "default" not in responses  # a catch-all would document every status
        for code, response in responses.items():
            if code == "204":
                assert "content" not in response
    assert checked["gated"] > 40, checked
    assert checked["body"] >= 12, checked
    assert checked["per node"] >= 15, checked
    assert "text/csv" in served["paths"]["/api/v1/audit/export"]["get"]["responses"]["200"]["content"]
    assert "text/html" in served["paths"]["/api/v1/docs"]["get"]["responses"]["200"]["content"]
    # Handlers that decode their own bodies declare them, so clients (and the fuzzer) see them.
    enrol = served["paths"]["/api/v1/pxe/enrol"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert _resolve(served, enrol["$ref"])["required"] == ["id", "secret", "mac"]


def test_problem_details_schema_describes_real_problems(client: TestClient[Any]) -> None:
    served = _served(client)
    schema = {"$ref": f"#/components/schemas/{PROBLEM_SCHEMA}", "components": served["components"]}
    bad_field = client.put("/api/v1/node", json={"description": 5})
    with another_browser(client) as anonymous:
        unauthenticated = anonymous.get("/api/v1/node")
    for answer in (unauthenticated, client.get("/api/v1/users/nobody"), bad_field):
        assert answer.headers["content-type"].startswith(PROBLEM_JSON)
        jsonschema.validate(answer.json(), schema)
    assert bad_field.json()["errors"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"title": "no status"}, schema)


def test_the_reference_page_lists_the_problems(client: TestClient[Any]) -> None:
    page = client.get("/api/v1/docs")
    assert page.status_code == 200
    assert "ProblemDetails" in page.text
    assert "401" in page.text
    assert "504" in page.text


def _undocumented(served: dict[str, Any], answer: Answer) -> str | None:
    operation = served["paths"].get(answer.path, {}).get(answer.method)
    if operation is None:
        return "the operation is not in the document"
    response = operation["responses"].get(str(answer.status))
    if response is None:
        return f"status {answer.status} is not documented"
    if answer.media_type and answer.media_type not in response.get("content", {}):
        return f"{answer.media_type} is not documented for {answer.status}"
    if not answer.media_type and response.get("content") and answer.status != 204:
        return f"{answer.status} is documented with a body but was answered without one"
    return None


def test_the_answer_check_names_what_is_undocumented() -> None:
    """The check the recorded answers go through: it must be able to fail."""
    served = {
        "paths": {
            "/a": {
                "get": {
                    "responses": {
                        "200": {"content": {"application/json": {}}},
                        "204": {"description": "none"},
                        "404": {"content": {PROBLEM_JSON: {}}},
                    }
                }
            }
        }
    }
    assert _undocumented(served, Answer("get", "/a", 200, "application/json")) is None
    assert _undocumented(served, Answer("get", "/a", 204, "")) is None
    assert _undocumented(served, Answer("get", "/a", 409, PROBLEM_JSON)) == "status 409 is not documented"
    assert _undocumented(served, Answer("get", "/a", 404, "text/html")) == "text/html is not documented for 404"
    assert (
        _undocumented(served, Answer("post", "/a", 200, "application/json")) == "the operation is not in the document"
    )


def test_a_handler_cannot_declare_a_status_without_a_documented_reason() -> None:
    assert problems(404, forwards=True)["forwards"] is True
    with pytest.raises(ValueError, match="418"):
        problems(418)


@pytest.mark.after_api_tests
def test_every_answer_the_api_tests_got_is_documented(request: pytest.FixtureRequest, appliance: Appliance) -> None:
    # The tests that build an app through the `appliance` fixture (this module's own aside).
    feeders = [
        item
        for item in request.session.items
        if "appliance" in getattr(item, "fixturenames", ()) and item.path != request.node.path
    ]
    if not feeders:
        pytest.skip("no API test ran in this session to record answers (run tests/unit/appliance)")
    recorded = list(ANSWERS)
    assert recorded, f"{len(feeders)} API tests ran and no answer was recorded: answers.py no longer sees them"
    operations = {(a.method, a.path) for a in recorded}
    if len(feeders) >= FLOORS_FROM_FEEDING_TESTS:
        assert len(recorded) >= MIN_ANSWERS_PER_FEEDING_TEST * len(feeders), (len(recorded), len(feeders))
        assert len(operations) >= len(feeders) // TESTS_PER_OPERATION, sorted(operations)
    served = document(appliance.litestar)
    wrong = sorted(
        {
            f"{a.method.upper()} {a.path} -> {a.status} {a.media_type}: {why}"
            for a in recorded
            if (why := _undocumented(served, a))
        }
    )
    assert not wrong, "\n".join(wrong)
