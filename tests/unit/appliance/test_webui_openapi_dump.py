"""The OpenAPI dump the web UI's types are generated from: the document a node serves, stable
from run to run (so the generated types change only when the API does), without the UI's own
routes (they are not API)."""

from __future__ import annotations

import json

from appliance.webui.openapi_dump import openapi_document


def test_the_dump_is_the_served_document_and_stable() -> None:
    first = openapi_document()
    assert openapi_document() == first
    schema = json.loads(first)
    assert schema["openapi"].startswith("3.1")
    assert "/api/v1/auth/login" in schema["paths"]
    assert "ProblemDetails" in schema["components"]["schemas"]
    assert not [
        path
        for path in schema["paths"]
        if not path.startswith("/api/v1/") and path not in ("/healthz", "/readyz", "/metrics")
    ]
