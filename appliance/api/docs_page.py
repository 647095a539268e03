"""A self-contained API reference page rendered from the app's own OpenAPI document.

Edge nodes often have no route to a CDN, so the usual Swagger/Redoc pages (which load their
JavaScript from one) would be blank. This page is plain HTML built on the server from the
same OpenAPI document served at `/api/v1/openapi.json`: every operation with its method,
path, summary, parameters, body and responses, and links to the schemas.
"""

from __future__ import annotations

import html
from typing import Any

import msgspec
from litestar import MediaType, Request, Router, get

from appliance.api.openapi import document
from appliance.auth.permissions import Permission, requires

_METHODS = ("get", "put", "post", "patch", "delete")

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:70rem;color:#1b1f24;padding:0 1rem}
h1{margin-bottom:.2rem} .op{border:1px solid #d0d7de;border-radius:6px;margin:.8rem 0;padding:.6rem .9rem}
.m{display:inline-block;min-width:4.2rem;font-weight:700;font-family:monospace}
.get{color:#0969da}.put,.patch{color:#9a6700}.post{color:#1a7f37}.delete{color:#cf222e}
code,pre{font-family:ui-monospace,monospace;font-size:.85rem}
pre{background:#f6f8fa;padding:.6rem;overflow:auto}
table{border-collapse:collapse}td{padding:.1rem .6rem}
"""


def _ref_name(schema: dict[str, Any]) -> str:
    ref = schema.get("$ref")
    if isinstance(ref, str):
        name = ref.rsplit("/", 1)[-1]
        return f'<a href="#schema-{html.escape(name)}">{html.escape(name)}</a>'
    return html.escape(str(schema.get("type", "object")))


def _response(code: str, response: dict[str, Any]) -> str:
    content = next(iter(response.get("content", {}).values()), None)
    return html.escape(code) + (f" {_ref_name(content['schema'])}" if content else "")


def _operation(method: str, path: str, op: dict[str, Any]) -> str:
    parts = [
        f'<div class="op"><span class="m {method}">{method.upper()}</span> <code>{html.escape(path)}</code>',
        f"<div>{html.escape(op.get('summary') or op.get('description') or '')}</div>",
    ]
    params = op.get("parameters") or []
    if params:
        rows = "".join(
            f"<tr><td><code>{html.escape(p['name'])}</code></td><td>{html.escape(p['in'])}</td>"
            f"<td>{'required' if p.get('required') else ''}</td>"
            f"<td>{_ref_name(p.get('schema', {}))}</td></tr>"
            for p in params
        )
        parts.append(f"<table>{rows}</table>")
    body = (op.get("requestBody") or {}).get("content", {}).get("application/json")
    if body:
        parts.append(f"<div>Body: {_ref_name(body.get('schema', {}))}</div>")
    responses = ", ".join(_response(code, r) for code, r in (op.get("responses") or {}).items())
    parts.append(f"<div>Responses: {responses}</div></div>")
    return "".join(parts)


def render_reference(schema: dict[str, Any]) -> str:
    """The whole reference page as an HTML string."""
    info = schema.get("info", {})
    ops = [
        _operation(method, path, item[method])
        for path, item in sorted(schema.get("paths", {}).items())
        for method in _METHODS
        if method in item
    ]
    components = schema.get("components", {}).get("schemas", {})
    schemas = "".join(
        f'<h3 id="schema-{html.escape(name)}">{html.escape(name)}</h3>'
        f"<pre>{html.escape(msgspec.json.format(msgspec.json.encode(body)).decode())}</pre>"
        for name, body in sorted(components.items())
    )
    title = html.escape(f"{info.get('title', 'API')} {info.get('version', '')}")
    return (
        f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{title}</title>"
        f"<style>{_STYLE}</style></head><body><h1>{title}</h1>"
        f"<p>{html.escape(info.get('description', ''))}</p>"
        '<p>Machine-readable: <a href="/api/v1/openapi.json">/api/v1/openapi.json</a> (OpenAPI 3.1).</p>'
        f"<h2>Operations</h2>{''.join(ops)}<h2>Schemas</h2>{schemas}</body></html>"
    )


def docs_routes() -> Router:
    """`/api/v1/docs`: the reference page, built from the app's OpenAPI document."""

    @get("/api/v1/docs", opt=requires(Permission.API_DOCS_READ), media_type=MediaType.HTML, summary="This reference")
    async def reference(request: Request[Any, Any, Any]) -> str:
        return render_reference(document(request.app))

    return Router("/", route_handlers=[reference])
