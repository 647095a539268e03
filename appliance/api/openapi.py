"""The OpenAPI document as served: Litestar's generated schema, completed in one place.

Litestar documents what a handler returns when it succeeds, but not the problems the layers
around it answer: the access gate's 401/403/429 on every non-public route, 415 on a JSON body
sent as something else, 400/413/422 on bodies and parameters, and the forwarder's
404/421/502/503/504 on a route that passes the request on to another node. Pasting those into
every handler would drift; instead each route's problem statuses are derived here from its
policy (`appliance.auth.access.policy_for`: public or not, takes a body), from whether its
operation has parameters, and from what the handler declares in its `opt` with `problems()`:
only the statuses its own code raises (a 404 for a missing resource, a 409 for a conflict)
and whether it forwards. Every such status is answered as `application/problem+json` with the
shared `ProblemDetails` schema (`appliance.api.problems.Problem`).

An operation with parameters also lists 414, which the HTTP server answers (without a body)
to a URL longer than it accepts. The same pass fixes what the generated document gets wrong
or leaves out: Litestar's default 400 (a JSON shape this API never sends), content on 204
answers, extra media types a handler answers (the audit export's CSV), the bodies of handlers
that decode them themselves (`reads_body`), and the random examples Litestar generates for
`ResponseSpec` answers, which also leave dangling `$ref`s (`pxe_inventory_DiskInfo`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

import msgspec
from litestar import Litestar, Request
from litestar.handlers.http_handlers import HTTPRouteHandler
from litestar.openapi.plugins import JsonRenderPlugin
from litestar.routes import HTTPRoute

from appliance.api.problems import PROBLEM_JSON, Problem
from appliance.auth.access import policy_for

PROBLEMS_KEY = "problems"
FORWARDS_KEY = "forwards"
MEDIA_TYPES_KEY = "media_types"
BODY_KEY = "reads_body"
PROBLEM_SCHEMA = "ProblemDetails"

ALWAYS_STATUSES = frozenset({500})  # a bug anywhere: the answer says only to read the node's log
GATE_STATUSES = frozenset({401, 403, 429})  # every non-public route: credentials, permission, rate limit
BODY_STATUSES = frozenset({400, 413, 422})  # a JSON body: not JSON, too large, breaks the schema
JSON_BODY_STATUSES = frozenset({415})  # a `data` body sent as another media type (checked by the gate)
PARAMETER_STATUSES = frozenset({422})  # a query or header parameter of the wrong type or range
FORWARD_STATUSES = frozenset({404, 421, 502, 503, 504})  # a request passed on to another node

# Why each problem status is answered; the table in docs/api.md says the same.
REASONS: dict[int, str] = {
    400: "The body is not valid JSON (or a parameter the handler parses is malformed)",
    401: "No or bad credentials",
    403: "Authenticated but not permitted (role, CSRF token, a password to change first, or the route's own rule)",
    404: "No such resource (or, for a per-node route, no such node)",
    409: "The change conflicts with the current state",
    410: "Gone: the thing asked about expired",
    413: "The body is larger than the limit",
    415: "The body is not application/json",
    421: "Forwarded once already and still not at the named node",
    422: "Well-formed but invalid; `errors` lists each bad field by JSON path",
    429: "Too many requests; Retry-After says when to try again",
    500: "A failure on the node; its log has the details",
    502: "Something other than the named node answered at its address",
    503: "The named node (or a subsystem) is down, has left or cannot be reached",
    504: "The named node did not answer in time",
}

# The HTTP server (granian) answers an over-long URL itself, before the API sees it, without a body.
URI_TOO_LONG = {"description": "The URL is longer than the HTTP server accepts (answered by it, without a body)"}

_METHODS = ("get", "put", "post", "patch", "delete")
_STATE_KEY = "debvisor_openapi_document"  # where the built document is kept, in the app's state


def problems(*statuses: int, forwards: bool = False) -> dict[str, Any]:
    """`opt` entries for a handler: the problem statuses its own code answers, beyond what its
    policy implies, and whether it forwards the request to another node.

    Use with the permission: `opt=requires(Permission.X) | problems(404, forwards=True)`.
    """
    unknown = [s for s in statuses if s not in REASONS]
    if unknown:
        raise ValueError(f"no reason documented for status {unknown}")
    opt: dict[str, Any] = {PROBLEMS_KEY: frozenset(statuses)}
    if forwards:
        opt[FORWARDS_KEY] = True
    return opt


def media_types(*types: str) -> dict[str, Any]:
    """`opt` entry for a handler whose success answer comes in more media types than its return
    type says (the audit export: CSV besides JSON); each is documented as a string body."""
    return {MEDIA_TYPES_KEY: tuple(types)}


def reads_body(body_type: type, *, required: bool = True) -> dict[str, Any]:
    """`opt` entry for a handler that decodes its JSON body itself (so Litestar cannot see it):
    the msgspec struct it expects, documented as its request body."""
    return {BODY_KEY: (body_type, required)}


def problem_statuses(handler: HTTPRouteHandler, *, has_parameters: bool) -> frozenset[int]:
    """Every problem status a route can answer, from its policy and its declarations."""
    policy = policy_for(handler)
    body_method = bool(handler.http_methods & {"POST", "PUT", "PATCH"})
    statuses: set[int] = set(handler.opt.get(PROBLEMS_KEY, ())) | ALWAYS_STATUSES
    if not policy.public:
        statuses |= GATE_STATUSES
    if policy.takes_json_body and body_method:
        statuses |= BODY_STATUSES | JSON_BODY_STATUSES
    if has_parameters:
        statuses |= PARAMETER_STATUSES
    if handler.opt.get(FORWARDS_KEY) is True:
        statuses |= FORWARD_STATUSES
    return frozenset(statuses)


def _problem_response(status: int) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": REASONS[status],
        "content": {PROBLEM_JSON: {"schema": {"$ref": f"#/components/schemas/{PROBLEM_SCHEMA}"}}},
    }
    if status == 429:
        response["headers"] = {
            "Retry-After": {"description": "Seconds to wait before trying again", "schema": {"type": "integer"}}
        }
    if status == 401:
        response["headers"] = {
            "WWW-Authenticate": {"description": "The scheme to authenticate with", "schema": {"type": "string"}}
        }
    return response


def _problem_schemas() -> dict[str, Any]:
    """The ProblemDetails schema (and the FieldError it lists), from the struct the API sends."""
    (schema,), components = msgspec.json.schema_components([Problem], ref_template="#/components/schemas/{name}")
    components[PROBLEM_SCHEMA] = components.pop(schema["$ref"].rsplit("/", 1)[-1])
    components[PROBLEM_SCHEMA]["description"] = "An RFC 9457 problem document; every error the API answers is one."
    return dict(components)


def _add_request_body(operation: dict[str, Any], handler: HTTPRouteHandler, components: dict[str, Any]) -> None:
    declared = handler.opt.get(BODY_KEY)
    if declared is None or "requestBody" in operation:
        return
    body_type, required = declared
    (schema,), found = msgspec.json.schema_components([body_type], ref_template="#/components/schemas/{name}")
    for name, definition in found.items():
        if components.setdefault(name, definition) != definition:
            raise ValueError(f"two different schemas are named {name!r}")
    operation["requestBody"] = {"required": required, "content": {"application/json": {"schema": schema}}}


def _has_parameters(operation: dict[str, Any]) -> bool:
    return any(p.get("in") != "path" for p in operation.get("parameters") or [])


def _complete_operation(operation: dict[str, Any], handler: HTTPRouteHandler) -> None:
    responses: dict[str, Any] = operation.setdefault("responses", {})
    declared = {str(code) for code in (handler.responses or {})}
    # Litestar's default 400 describes its own exception shape, never sent here.
    if "400" in responses and "400" not in declared:
        del responses["400"]
    for code, response in responses.items():
        if code == "204":
            response.pop("content", None)  # a 204 has no body
    success = next((r for code, r in sorted(responses.items()) if code.startswith("2")), None)
    extra_types = handler.opt.get(MEDIA_TYPES_KEY, ())
    if success is not None:
        for media_type in extra_types:
            success.setdefault("content", {})[media_type] = {"schema": {"type": "string"}}
    for status in sorted(problem_statuses(handler, has_parameters=_has_parameters(operation))):
        responses.setdefault(str(status), _problem_response(status))
    if operation.get("parameters"):
        responses.setdefault("414", dict(URI_TOO_LONG))


def documented_routes(app: Litestar) -> Iterable[tuple[str, str, HTTPRouteHandler]]:
    """(OpenAPI path, lower-case method, handler) of every operation the document lists."""
    for route in app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        for handler in route.route_handlers:
            if not handler.resolve_include_in_schema():
                continue
            for method in sorted(handler.http_methods):
                if method.lower() in _METHODS:
                    yield route.path_format or "/", method.lower(), handler


def complete(app: Litestar, schema: dict[str, Any]) -> dict[str, Any]:
    """Add every route's problem answers and the shared problem schema to `schema` (in place)."""
    paths: dict[str, Any] = schema.get("paths") or {}
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components.update(_problem_schemas())
    for path, method, handler in documented_routes(app):
        operation = paths.get(path, {}).get(method)
        if operation is not None:
            _add_request_body(operation, handler, components)
            _complete_operation(operation, handler)
    return schema


def _without_generated_examples(app: Litestar) -> None:
    """Turn off Litestar's random examples for declared answers: they change on every build,
    say nothing true, and (2.25) leave references to nested structs that are never defined."""
    for _, _, handler in documented_routes(app):
        if handler.responses:
            handler.responses = {
                code: dataclasses.replace(spec, generate_examples=False) for code, spec in handler.responses.items()
            }


def prepare(app: Litestar) -> None:
    """Call once on the assembled app, before its document is first built."""
    _without_generated_examples(app)


def document(app: Litestar) -> dict[str, Any]:
    """The app's complete OpenAPI document (built once per app)."""
    found: dict[str, Any] | None = app.state.get(_STATE_KEY)
    if found is None:
        found = complete(app, app.openapi_schema.to_schema())
        app.state[_STATE_KEY] = found
    return found


class DocumentPlugin(JsonRenderPlugin):
    """Serves `document(app)` as JSON instead of Litestar's bare generated schema."""

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        return self.render_json(request, document(request.app))
