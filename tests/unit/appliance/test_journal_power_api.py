"""The journal and power routes in the app: the role matrix, checked input, and a node without
a system bus refusing a power action with nothing done (the real paths are in
tests/integration/test_journal.py and test_node_power.py, against systemd in a container).

The node here is given a bus address where nothing listens and an empty directory as the
managed machine's root, so no test can reach this machine's own systemd or journal.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from appliance.app import Appliance, create_app
from appliance.auth.permissions import Role
from appliance.bootstrap import OpenedNode
from appliance.settings import AuthSettings
from appliance.units.bus import SystemBus
from tests.kit.clock import FakeClock
from tests.unit.appliance.conftest import BASE, FakeHost, admin_token

JOURNAL = "/api/v1/nodes/n1/journal"
POWER = "/api/v1/nodes/n1/power"
BODY = {"action": "reboot", "reason": "kernel update", "confirm": "n1"}


@pytest.fixture
def app(node: OpenedNode, clock: FakeClock, tmp_path: Path) -> Appliance:
    (tmp_path / "machine").mkdir()
    return create_app(
        node, host=FakeHost(), auth=AuthSettings(rate_limit=0), clock=clock, monotonic=clock,
        system_bus=SystemBus(f"unix:path={tmp_path}/no-bus"), host_root=tmp_path / "machine",
    )  # fmt: skip


@pytest.fixture
def api(app: Appliance) -> Iterator[TestClient[Any]]:
    with TestClient(app.asgi, base_url=BASE) as client:
        yield client


def as_role(app: Appliance, role: Role) -> dict[str, str]:
    if role is Role.ADMIN:
        return {"Authorization": f"Bearer {admin_token(app)}"}
    _, secret = app.accounts.create_token(owner="admin", name=f"{role}", role=role, expires_at=None)
    return {"Authorization": f"Bearer {secret}"}


@pytest.mark.parametrize(
    ("role", "journal", "power"),
    [(Role.ADMIN, 200, 503), (Role.OPERATOR, 200, 403), (Role.VIEWER, 403, 403), (Role.DEVELOPER, 403, 403)],
)
def test_role_matrix(api: TestClient[Any], app: Appliance, role: Role, journal: int, power: int) -> None:
    headers = as_role(app, role)
    assert api.get(JOURNAL, headers=headers).status_code == journal
    assert api.post(POWER, json=BODY, headers=headers).status_code == power
    assert api.get(JOURNAL).status_code == 401
    assert api.post(POWER, json=BODY).status_code == 401


def test_a_machine_without_a_journal_answers_an_empty_page(api: TestClient[Any], app: Appliance) -> None:
    answer = api.get(JOURNAL, params={"unit": "ssh.service", "limit": "5"}, headers=as_role(app, Role.OPERATOR))
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"entries": [], "more": False}


def test_bad_filters_are_422_before_journalctl_runs(api: TestClient[Any], app: Appliance) -> None:
    headers = as_role(app, Role.OPERATOR)
    for params, path in (({"unit": "--root=/"}, "$.unit"), ({"limit": "0"}, "$.limit"), ({"x": "1"}, "$.x")):
        answer = api.get(JOURNAL, params=params, headers=headers)
        assert answer.status_code == 422
        assert answer.headers["content-type"].startswith("application/problem+json")
        assert answer.json()["errors"][0]["path"] == path


def test_power_without_a_bus_is_503_and_the_node_stays(api: TestClient[Any], app: Appliance) -> None:
    headers = as_role(app, Role.ADMIN)
    answer = api.post(POWER, json=BODY, headers=headers)
    assert answer.status_code == 503
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert "nothing was done" in answer.json()["detail"]
    assert not app.cluster.swim.leaving
    (entry,) = _entries(api, headers)
    assert entry["outcome"] == "failed"
    assert "cannot reach systemd" in entry["detail"]


def _entries(api: TestClient[Any], headers: dict[str, str]) -> list[dict[str, Any]]:
    return list(api.get("/api/v1/audit", params={"action": "node.power"}, headers=headers).json()["entries"])


def test_power_checks_its_body_and_the_name_typed_back(api: TestClient[Any], app: Appliance) -> None:
    headers = as_role(app, Role.ADMIN)
    wrong = api.post(POWER, json={**BODY, "confirm": "n2"}, headers=headers)
    assert wrong.status_code == 422
    assert wrong.json()["errors"] == [{"path": "$.confirm", "message": "type the node's name, 'n1'"}]
    for body in ({**BODY, "action": "halt"}, {**BODY, "reason": ""}, {"action": "reboot", "confirm": "n1"}):
        assert api.post(POWER, json=body, headers=headers).status_code in (400, 422), body
    assert not app.cluster.swim.leaving
