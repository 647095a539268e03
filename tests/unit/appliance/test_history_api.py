"""`GET /api/v1/nodes/{name}/history` on one node: what the archives hold, validation, roles.

The node's archives are written to its data dir before it starts, so the answer is known
exactly (the live sampler reads the real /proc, but its first sample has no rates and lands
seconds later, in a bucket these tests do not read). Forwarding to another node and a real
restart are in tests/integration/test_history.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from litestar.testing import TestClient

from appliance.app import Appliance, create_app
from appliance.auth.permissions import Role
from appliance.bootstrap import OpenedNode
from appliance.history.sampler import COLUMNS
from appliance.history.store import FILE_NAME, SUBDIR, HistoryStore
from appliance.settings import AuthSettings
from tests.kit.clock import FakeClock
from tests.unit.appliance.conftest import BASE, FakeHost, admin_token

URL = "/api/v1/nodes/n1/history"


@pytest.fixture
def history_app(node: OpenedNode, clock: FakeClock) -> Appliance:
    store = HistoryStore(node.datadir.root / SUBDIR / FILE_NAME, COLUMNS)
    start = clock() - 60
    for k in range(12):  # the last minute: CPU 10..65 %, 1 MiB/s received
        store.add(start + 5 * k, [10.0 + 5 * k, 2e9, 6e9, 1048576.0, 1000.0, 0.0, 4096.0])
    store.save()
    return create_app(node, host=FakeHost(), auth=AuthSettings(rate_limit=0), clock=clock, monotonic=clock)


@pytest.fixture
def api(history_app: Appliance) -> Iterator[TestClient[Any]]:
    with TestClient(history_app.asgi, base_url=BASE) as client:
        client.headers["Authorization"] = f"Bearer {admin_token(history_app)}"
        yield client


def test_the_last_hour_in_five_second_buckets(api: TestClient[Any], clock: FakeClock) -> None:
    response = api.get(URL, params={"metrics": "cpu,net", "range": "1h"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["node"], body["range"], body["step"]) == ("n1", "1h", 5)
    assert len(body["times"]) == 720
    assert body["times"][-1] == int(clock() // 5) * 5
    series = {s["name"]: s for s in body["series"]}
    assert list(series) == ["cpu", "net_rx", "net_tx"]
    assert series["cpu"]["unit"] == "percent"
    assert series["cpu"]["avg"][-13:] == [*(10.0 + 5 * k for k in range(12)), None]  # nothing yet in this bucket
    assert series["net_rx"]["avg"][-2] == 1048576.0
    assert "max" not in series["cpu"]


def test_the_day_in_minutes_with_maxima_and_every_metric_by_default(api: TestClient[Any]) -> None:
    body = api.get(URL, params={"range": "1d"}).json()
    assert body["step"] == 60
    assert len(body["times"]) == 1440
    assert [s["name"] for s in body["series"]] == list(COLUMNS)
    cpu = body["series"][0]
    filled = [(a, m) for a, m in zip(cpu["avg"], cpu["max"], strict=True) if a is not None]
    assert 1 <= len(filled) <= 2  # the minute may straddle two buckets
    assert max(m for _, m in filled) == 65.0
    week = api.get(URL, params={"range": "1w", "metrics": "disk"}).json()
    assert (week["step"], len(week["times"])) == (600, 1008)


@pytest.mark.parametrize(
    ("params", "path"),
    [
        ({"metrics": "cpu,gpu"}, "query:metrics"),
        ({"metrics": ","}, "query:metrics"),
        ({"range": "1y"}, "query:range"),
    ],
)
def test_unknown_metrics_and_ranges_are_422_problems(api: TestClient[Any], params: dict[str, str], path: str) -> None:
    response = api.get(URL, params=params)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["errors"][0]["path"] == path
    if "metrics" in params and params["metrics"] != ",":
        assert "'gpu'" in response.json()["detail"]


def test_a_viewer_reads_it_and_anonymous_does_not(history_app: Appliance, api: TestClient[Any]) -> None:
    _, secret = history_app.accounts.create_token(owner="admin", name="v", role=Role.VIEWER, expires_at=None)
    viewer = api.get(URL, headers={"Authorization": f"Bearer {secret}"})
    assert viewer.status_code == 200
    anonymous = api.get(URL, headers={"Authorization": ""})
    assert anonymous.status_code == 401


def test_another_node_that_is_not_a_member_is_404(api: TestClient[Any]) -> None:
    response = api.get("/api/v1/nodes/nobody/history")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
