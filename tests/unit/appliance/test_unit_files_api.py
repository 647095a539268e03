"""The unit-file and transient-unit routes on a node whose system bus cannot be reached (as on
the development machines): reading works from the files, every change is a 503 problem before
anything is touched, and only admins get that far. The same routes against real systemd are in
tests/integration/test_unit_files.py."""

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

UNITS = "/api/v1/nodes/n1/units"
PROBLEM = "application/problem+json"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    admin = tmp_path / "root/etc/systemd/system"
    admin.mkdir(parents=True)
    (admin / "ours.service").write_text("[Service]\nExecStart=/bin/true\n")
    return tmp_path / "root"


@pytest.fixture
def app(node: OpenedNode, clock: FakeClock, root: Path) -> Appliance:
    return create_app(
        node,
        host=FakeHost(),
        auth=AuthSettings(rate_limit=0),
        clock=clock,
        monotonic=clock,
        system_bus=SystemBus("unix:path=/nonexistent/system_bus_socket"),
        host_root=root,
    )


@pytest.fixture
def api(app: Appliance) -> Iterator[TestClient[Any]]:
    with TestClient(app.asgi, base_url=BASE) as client:
        client.headers["Authorization"] = f"Bearer {admin_token(app)}"
        yield client


def test_reading_needs_no_bus_and_changes_are_503_before_anything_is_touched(api: TestClient[Any], root: Path) -> None:
    read = api.get(f"{UNITS}/ours.service/file")
    assert read.status_code == 200
    assert (read.json()["path"], read.json()["content"]) == (
        "/etc/systemd/system/ours.service",
        "[Service]\nExecStart=/bin/true\n",
    )
    assert read.headers["cache-control"] == "no-store"

    put = api.put(f"{UNITS}/new.service/file", json={"content": "[Unit]\nDescription=new\n"})
    assert (put.status_code, put.headers["content-type"]) == (503, PROBLEM)
    assert "systemd cannot be reached" in put.json()["detail"]
    assert not (root / "etc/systemd/system/new.service").exists()
    reverted = api.delete(f"{UNITS}/ours.service/file")
    assert reverted.status_code == 503
    assert (root / "etc/systemd/system/ours.service").exists()
    run = api.post(f"{UNITS}/transient", json={"name": "x", "command": ["/bin/true"]})
    assert (run.status_code, run.headers["content-type"]) == (503, PROBLEM)


def test_bad_input_is_a_problem_naming_the_field(api: TestClient[Any]) -> None:
    bad = api.put(f"{UNITS}/new.service/file", json={"content": "ExecStart=/bin/true\n"})
    assert (bad.status_code, bad.headers["content-type"]) == (422, PROBLEM)
    assert bad.json()["errors"] == [{"path": "$.content", "message": "line 1: a setting before any [Section]"}]
    assert api.get(f"{UNITS}/new.socket/file").status_code == 422
    assert api.get(f"{UNITS}/missing.service/file").status_code == 404
    run = api.post(f"{UNITS}/transient", json={"name": "x", "command": ["true"]})
    assert (run.status_code, run.json()["errors"][0]["path"]) == (422, "$.command")


@pytest.mark.parametrize("role", [Role.OPERATOR, Role.VIEWER, Role.DEVELOPER])
def test_only_admins(app: Appliance, role: Role, root: Path) -> None:
    _, secret = app.accounts.create_token(owner="admin", name=str(role), role=role, expires_at=None)
    with TestClient(app.asgi, base_url=BASE) as client:
        client.headers["Authorization"] = f"Bearer {secret}"
        answers = [
            client.get(f"{UNITS}/ours.service/file"),
            client.put(f"{UNITS}/ours.service/file", json={"content": "[Service]\nExecStart=/bin/false\n"}),
            client.delete(f"{UNITS}/ours.service/file"),
            client.post(f"{UNITS}/transient", json={"name": "x", "command": ["/bin/true"]}),
        ]
    assert [(a.status_code, a.headers["content-type"]) for a in answers] == [(403, PROBLEM)] * 4
    assert (root / "etc/systemd/system/ours.service").read_text() == "[Service]\nExecStart=/bin/true\n"
