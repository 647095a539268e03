"""docs/events.md's table of event types says what the code's one permission table says."""

from __future__ import annotations

import re
from pathlib import Path

from appliance.auth.permissions import EVENT_PERMISSIONS

EVENTS_DOC = Path(__file__).parents[3] / "docs" / "events.md"
_ROW = re.compile(r"^\| `(?P<type>[a-z]+)` \| .* \| `(?P<permission>[a-z]+:[a-z]+)` \|$")


def test_the_event_table_matches_the_permission_table() -> None:
    documented = {m["type"]: m["permission"] for line in EVENTS_DOC.read_text().splitlines() if (m := _ROW.match(line))}
    assert documented == {kind: str(permission) for kind, permission in EVENT_PERMISSIONS.items()}
