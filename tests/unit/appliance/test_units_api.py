"""The units routes without a system bus, and the checks made before anything reaches it."""

from __future__ import annotations

from typing import Any

import pytest
from litestar.testing import TestClient

from appliance.app import create_app
from appliance.bootstrap import OpenedNode
from appliance.settings import AuthSettings
from appliance.units.bus import SystemBus
from appliance.units.service import parse_signal
from tests.kit.clock import FakeClock
from tests.kit.wait import wait_until
from tests.unit.appliance.conftest import BASE, FakeHost, admin_token


@pytest.mark.parametrize(("given", "number"), [(None, 15), ("SIGHUP", 1), ("hup", 1), ("KILL", 9), (10, 10), ("2", 2)])
def test_signals_by_name_or_number(given: str | int | None, number: int) -> None:
    assert parse_signal(given) == number


@pytest.mark.parametrize("given", ["SIGNOPE", "", 0, 65, "-1", "TERM;reboot"])
def test_bad_signals_are_refused(given: str | int) -> None:
    with pytest.raises(ValueError, match="signal"):
        parse_signal(given)


def test_without_a_bus_the_node_is_ready_with_units_degraded_and_unit_routes_answer_503(
    node: OpenedNode, clock: FakeClock, tmp_path: Any
) -> None:
    missing = SystemBus(f"unix:path={tmp_path}/no-bus")
    appliance = create_app(
        node, host=FakeHost(), auth=AuthSettings(rate_limit=0), clock=clock, monotonic=clock, system_bus=missing
    )
    with TestClient(appliance.asgi, base_url=BASE) as client:
        client.headers["Authorization"] = f"Bearer {admin_token(appliance)}"
        ready = client.get("/readyz")
        assert ready.status_code == 200
        # the watcher's first attempt may still be under way: units is never ready without a bus
        assert ready.json()["checks"]["units"]["ready"] is False
        for method, path in [
            ("GET", "/api/v1/nodes/n1/units"),
            ("GET", "/api/v1/nodes/n1/units/ssh.service"),
            ("POST", "/api/v1/nodes/n1/units/ssh.service/restart"),
            ("GET", "/api/v1/nodes/n1/unit-files"),
            ("GET", "/api/v1/nodes/n1/timers"),
        ]:
            answer = client.request(method, path)
            assert answer.status_code == 503, answer.text
            assert answer.headers["content-type"].startswith("application/problem+json")
            assert "no system bus" in answer.json()["detail"]
        # names and filters are checked before the bus is asked
        assert client.get("/api/v1/nodes/n1/units/not a unit").status_code == 422
        assert client.post("/api/v1/nodes/n1/units/x@.service/start").status_code == 422
        assert client.post("/api/v1/nodes/n1/units/ssh.service/explode").status_code == 422
        assert client.get("/api/v1/nodes/n1/units", params={"type": "bogus"}).status_code == 422
        bad_body = client.post("/api/v1/nodes/n1/units/ssh.service/kill", json={"signal": "NOPE"})
        assert bad_body.status_code == 422
        assert client.post("/api/v1/nodes/n1/units/ssh.service/start", json={"surprise": 1}).status_code == 422
        assert "systemd cannot be reached" in client.get("/api/v1/nodes/n1/units").json()["detail"]
        wait_until(lambda: "no system bus" in client.get("/readyz").json()["checks"]["units"]["detail"], 10)
