"""What a handler may add to the audit entry of the request it serves.

The access gate records every unsafe request; by default the entry's target is the request
path. A handler that knows better (the created user's name, the revoked token's id) calls
`note(request, target=..., detail=...)`. Details must never hold a secret.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from litestar import Request

from appliance.audit.log import Outcome

AUDIT_STATE_KEY = "debvisor_audit"


@dataclass
class AuditNote:
    target: str = ""
    detail: str = ""


def note(request: Request[Any, Any, Any], *, target: str | None = None, detail: str | None = None) -> None:
    """Refine the audit entry of the current request (a no-op where none is being written)."""
    current = request.scope.get("state", {}).get(AUDIT_STATE_KEY)
    if isinstance(current, AuditNote):
        if target is not None:
            current.target = target
        if detail is not None:
            current.detail = detail


def outcome_of(status: int) -> Outcome:
    if status < 400:
        return "success"
    if status in (401, 403):
        return "denied"
    if status == 429:
        return "throttled"
    return "failed"
