"""The network API over an in-memory kernel: routes, validation, 409s, permissions, audit.

The node's netconfig runs against `FakeKernel` (tests/unit/netconfig/fakekernel.py) and a
fixed link reader, so these need no root; the same routes against a real namespace are in
tests/integration/test_network_routes.py, and forwarding between nodes in
tests/integration/test_network_api.py.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from litestar.testing import TestClient

from appliance.app import Appliance, create_app
from appliance.audit.log import AuditQuery
from appliance.auth.permissions import Role
from appliance.bootstrap import OpenedNode
from appliance.network.service import NetworkSettings
from appliance.network.types import LinkCounters, LinkState, RouteState
from appliance.settings import AuthSettings
from netconfig.model import Nic
from tests.kit.clock import FakeClock
from tests.kit.wait import wait_until
from tests.unit.appliance.conftest import BASE, FakeHost, admin_token
from tests.unit.netconfig.fakekernel import FakeKernel

BRIDGE = {"bridges": [{"name": "br0", "addresses": ["10.1.0.1/24"], "ports": [{"name": "eth1"}]}]}
NICS = {"nics": [{"name": "eth1", "mac": "02:00:00:00:00:01"}]}
CONFIG = NICS | BRIDGE


class FakeReader:
    def read(self) -> tuple[list[LinkState], list[RouteState]]:
        counters = LinkCounters(rx_bytes=1000, rx_packets=10, tx_bytes=2000, tx_packets=20, rx_errors=1)
        link = LinkState(
            name="eth1", index=2, kind="", mac="02:00:00:00:00:01", mtu=1500, up=True, operstate="UP", counters=counters
        )
        return [link], [RouteState(to="10.1.0.0/24", dev="br0", protocol="kernel")]

    def close(self) -> None:
        pass


class Checker:
    def __init__(self) -> None:
        self.answers = True
        self.asked: list[str] = []

    def __call__(self, address: str) -> bool:
        self.asked.append(address)
        return self.answers


@pytest.fixture
def kernel() -> FakeKernel:
    return FakeKernel([Nic(name="eth1", mac="02:00:00:00:00:01", mtu=1500)])


@pytest.fixture
def checker() -> Checker:
    return Checker()


@pytest.fixture
def net_app(node: OpenedNode, clock: FakeClock, kernel: FakeKernel, checker: Checker) -> Appliance:
    settings = NetworkSettings(adapter=lambda: kernel, reader=FakeReader, check=checker)
    return create_app(
        node, host=FakeHost(), auth=AuthSettings(rate_limit=0), clock=clock, monotonic=clock, network=settings
    )


@pytest.fixture
def api(net_app: Appliance) -> Iterator[TestClient[Any]]:
    with TestClient(net_app.asgi, base_url=BASE) as client:
        client.headers["Authorization"] = f"Bearer {admin_token(net_app)}"
        yield client


def token_for(app: Appliance, role: Role) -> dict[str, str]:
    _, secret = app.accounts.create_token(owner="admin", name=f"{role}", role=role, expires_at=None)
    return {"Authorization": f"Bearer {secret}"}


NET = "/api/v1/nodes/n1/network"


def test_desired_starts_empty_and_put_stores_canonical_form(api: TestClient[Any], kernel: FakeKernel) -> None:
    assert api.get(NET).json() == {}
    nothing = api.post(f"{NET}/apply", json={})
    assert nothing.status_code == 409
    assert "no configuration is stored" in nothing.json()["detail"]
    config = NICS | {"bridges": [{"name": "br0", "addresses": ["FD00:0:0::1/64"], "ports": [{"name": "eth1"}]}]}
    stored = api.put(NET, json=config)
    assert stored.status_code == 200, stored.text
    assert stored.json()["bridges"][0]["addresses"] == ["fd00::1/64"]
    assert api.get(NET).json() == stored.json()
    assert "br0" not in kernel.specs  # stored, not applied


def test_invalid_configuration_is_422_with_every_path(api: TestClient[Any]) -> None:
    bad = {"vxlans": [{"name": "vx1", "vni": 0}], "bridges": [{"name": "br0", "ports": [{"name": "nope"}]}]}
    response = api.put(NET, json=bad)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    paths = {e["path"] for e in response.json()["errors"]}
    assert "$.vxlans[0].vni" in paths, response.json()
    assert any(p.startswith("$.bridges[0]") for p in paths), response.json()
    unknown = api.put(NET, json={"bridges": [{"name": "br0", "colour": "red"}]})
    assert unknown.status_code == 422
    assert unknown.json()["errors"][0]["path"].endswith("colour")
    plan = api.post(f"{NET}/plan", json={"config": bad})
    assert plan.status_code == 422


def test_plan_apply_confirm(api: TestClient[Any], kernel: FakeKernel, checker: Checker) -> None:
    assert api.put(NET, json=CONFIG).status_code == 200
    plan = api.post(f"{NET}/plan", json={})
    assert plan.status_code == 200, plan.text
    assert "ip link add br0 type bridge" in " ".join(plan.json()["actions"])
    assert "br0" not in kernel.specs
    applied = api.post(f"{NET}/apply", json={"confirm_within": 60, "check": "10.1.0.2"})
    assert applied.status_code == 200, applied.text
    assert applied.json()["confirm_within"] == 60
    assert applied.json()["actions"]
    assert checker.asked == ["10.1.0.2"]
    assert "br0" in kernel.specs
    status = api.get(f"{NET}/status").json()
    assert status["pending"]["bridges"][0]["name"] == "br0"
    assert 0 < status["remaining"] <= 60
    assert status["deadline"] == applied.json()["deadline"]
    assert status["links"][0]["counters"]["rx_bytes"] == 1000
    assert status["routes"][0]["dev"] == "br0"
    assert status["startup"].startswith("no configuration applied yet")
    again = api.post(f"{NET}/apply", json={})
    assert again.status_code == 409
    assert "waiting for confirmation" in again.json()["detail"]
    confirmed = api.post(f"{NET}/confirm")
    assert confirmed.status_code == 200
    assert confirmed.json()["result"] == "confirmed"
    status = api.get(f"{NET}/status").json()
    assert status["pending"] is None
    assert status["applied"]["bridges"][0]["name"] == "br0"
    assert status["last_outcome"]["result"] == "confirmed"
    assert api.post(f"{NET}/confirm").status_code == 409
    assert api.post(f"{NET}/rollback").status_code == 409
    assert api.post(f"{NET}/plan", json={}).json()["actions"] == []


def test_apply_with_a_body_then_rollback(api: TestClient[Any], kernel: FakeKernel) -> None:
    applied = api.post(f"{NET}/apply", json={"config": CONFIG})
    assert applied.status_code == 200, applied.text
    assert applied.json()["deadline"] - time.time() > 0  # default window 120 s on the fake clock
    assert api.get(NET).json()["bridges"][0]["name"] == "br0"  # the body became the stored configuration
    rolled = api.post(f"{NET}/rollback")
    assert rolled.status_code == 200
    assert rolled.json()["result"] == "rolled-back"
    assert "br0" not in kernel.specs
    assert api.get(f"{NET}/status").json()["last_outcome"]["reason"] == "rolled back on request"


def test_failed_check_rolls_back_and_says_so(api: TestClient[Any], kernel: FakeKernel, checker: Checker) -> None:
    checker.answers = False
    response = api.post(f"{NET}/apply", json={"config": CONFIG, "check": "10.1.0.9"})
    assert response.status_code == 409
    assert "rolled back" in response.json()["detail"]
    assert "10.1.0.9 did not answer" in response.json()["detail"]
    assert "br0" not in kernel.specs
    assert api.get(f"{NET}/status").json()["pending"] is None


def test_unconfirmed_change_rolls_back_at_the_deadline(
    api: TestClient[Any], kernel: FakeKernel, clock: FakeClock
) -> None:
    assert api.post(f"{NET}/apply", json={"config": CONFIG, "confirm_within": 10}).status_code == 200
    assert "br0" in kernel.specs
    clock.advance(11)
    wait_until(lambda: api.get(f"{NET}/status").json()["pending"] is None, 5, 0.1, what="the rollback")
    status = api.get(f"{NET}/status").json()
    assert status["pending"] is None
    assert status["last_outcome"]["reason"] == "not confirmed in time"
    assert "br0" not in kernel.specs


def test_apply_body_limits(api: TestClient[Any]) -> None:
    for window in (5, 4000):
        response = api.post(f"{NET}/apply", json={"confirm_within": window})
        assert response.status_code == 422
        assert response.json()["errors"][0]["path"] == "$.confirm_within"


def test_viewer_reads_but_cannot_change(api: TestClient[Any], net_app: Appliance) -> None:
    viewer = token_for(net_app, Role.VIEWER)
    assert api.get(f"{NET}/status", headers=viewer).status_code == 200
    assert api.get(NET, headers=viewer).status_code == 200
    assert api.post("/api/v1/networks", headers=viewer, json={"name": "a", "vni": 1, "bridge": "b"}).status_code == 403
    for path in ("apply", "confirm", "rollback"):
        assert api.post(f"{NET}/{path}", headers=viewer, json={}).status_code == 403
    assert api.put(NET, headers=viewer, json=CONFIG).status_code == 403
    operator = token_for(net_app, Role.OPERATOR)
    assert api.put(NET, headers=operator, json=CONFIG).status_code == 200
    developer = token_for(net_app, Role.DEVELOPER)
    assert api.get(f"{NET}/status", headers=developer).status_code == 403
    del api.headers["Authorization"]
    assert api.get(f"{NET}/status").status_code == 401


def test_changes_are_audited(api: TestClient[Any], net_app: Appliance, checker: Checker) -> None:
    api.put(NET, json=CONFIG)
    api.post(f"{NET}/apply", json={"confirm_within": 30})
    api.post(f"{NET}/confirm")
    checker.answers = False
    api.post(f"{NET}/apply", json={"config": NICS, "check": "10.1.0.9"})
    api.post(f"{NET}/rollback")
    entries = net_app.audit.query(AuditQuery(action="network."), 100)
    seen = [(e.action, e.outcome, e.target) for e in entries]
    assert seen == [
        ("network.config.put", "success", "node n1"),
        ("network.apply", "success", "node n1"),
        ("network.confirm", "success", "node n1"),
        ("network.apply", "failed", "node n1"),
        ("network.rollback", "failed", "node n1"),
    ]
    assert "confirm within 30 s" in entries[1].detail or "30 s" in entries[1].detail


def test_unknown_node_is_404(api: TestClient[Any]) -> None:
    response = api.get("/api/v1/nodes/elsewhere/network/status")
    assert response.status_code == 404
    assert "elsewhere" in response.json()["detail"]


# -- overlay networks ----------------------------------------------------------------------------


def test_overlay_crud_and_conflicts(api: TestClient[Any], net_app: Appliance) -> None:
    created = api.post("/api/v1/networks", json={"name": "blue", "vni": 100, "bridge": "ovl0"})
    assert created.status_code == 201, created.text
    assert created.json() | {"created_at": 0, "updated_at": 0} == {
        "name": "blue", "vni": 100, "bridge": "ovl0", "vxlan": "vx100", "mtu": 1450, "port": 4789,
        "underlay": None, "created_at": 0, "updated_at": 0,
    }  # fmt: skip
    assert api.post("/api/v1/networks", json={"name": "blue", "vni": 101, "bridge": "ovl1"}).status_code == 409
    dup_vni = api.post("/api/v1/networks", json={"name": "red", "vni": 100, "bridge": "ovl1"})
    assert dup_vni.status_code == 409
    assert "VNI 100" in dup_vni.json()["detail"]
    assert api.post("/api/v1/networks", json={"name": "red", "vni": 101, "bridge": "ovl0"}).status_code == 409
    assert api.post("/api/v1/networks", json={"name": "red", "vni": 101, "bridge": "vx100"}).status_code == 409
    for bad in ({"vni": 0}, {"vni": 16_777_216}, {"bridge": "a-name-far-too-long"}, {"mtu": 100}, {"name": "Red"}):
        body = {"name": "red", "vni": 101, "bridge": "ovl1"} | bad
        response = api.post("/api/v1/networks", json=body)
        assert response.status_code == 422, (bad, response.text)
    bad_underlay = api.post("/api/v1/networks", json={"name": "red", "vni": 101, "bridge": "ovl1", "underlay": "x"})
    assert bad_underlay.status_code == 422
    assert [n["name"] for n in api.get("/api/v1/networks").json()] == ["blue"]
    updated = api.put("/api/v1/networks/blue", json={"vni": 100, "bridge": "ovl0", "mtu": 1400})
    assert updated.status_code == 200
    assert updated.json()["mtu"] == 1400
    assert api.get("/api/v1/networks/blue").json()["mtu"] == 1400
    # a node's own configuration may not take an overlay's links
    clash = api.put(NET, json={"bridges": [{"name": "ovl0"}]})
    assert clash.status_code == 422
    (error,) = clash.json()["errors"]
    assert error["path"] == "$.bridges[0].name"
    assert error["message"].startswith("'ovl0' belongs to overlay network 'blue'")
    assert api.delete("/api/v1/networks/blue").status_code == 204
    assert api.get("/api/v1/networks/blue").status_code == 404
    assert api.delete("/api/v1/networks/blue").status_code == 404
    actions = [(e.action, e.outcome, e.target) for e in net_app.audit.query(AuditQuery(action="network.overlay."), 100)]
    assert ("network.overlay.create", "success", "blue") in actions
    assert ("network.overlay.update", "success", "blue") in actions
    assert ("network.overlay.delete", "success", "blue") in actions
    assert ("network.overlay.create", "failed", "red") in actions


def test_overlay_is_built_on_this_node(api: TestClient[Any], net_app: Appliance, kernel: FakeKernel) -> None:
    # a single-node cluster: the bridge and VXLAN device exist, with nobody to flood to
    assert api.post("/api/v1/networks", json={"name": "blue", "vni": 100, "bridge": "ovl0"}).status_code == 201
    # The reconciler applies the links in its worker thread, then records the pass's states on
    # the event loop: wait for the status (which comes last), not for the first link to appear.
    built = [
        {"name": "blue", "vni": 100, "bridge": "ovl0", "vxlan": "vx100", "local": "127.0.0.1", "peers": [], "error": ""}
    ]
    wait_until(lambda: api.get(f"{NET}/status").json()["overlays"] == built, 15, what="the overlay in the status")
    vxlan = kernel.specs["vx100"]
    assert kernel.master["vx100"] == "ovl0"
    assert vxlan.mtu == 1450
    assert getattr(vxlan, "local", None) == "127.0.0.1"
    assert api.delete("/api/v1/networks/blue").status_code == 204
    # both links go in one pass, one after the other: wait for both
    wait_until(lambda: not {"vx100", "ovl0"} & set(kernel.specs), 15, what="the VXLAN device and bridge to go")


def test_nothing_touches_the_kernel_without_configuration(node: OpenedNode, clock: FakeClock) -> None:
    class Untouchable:
        def close(self) -> None:
            pass

        def __getattr__(self, name: str) -> Any:
            raise AssertionError(f"the kernel was used: {name}")

    settings = NetworkSettings(adapter=Untouchable, reader=FakeReader)
    app = create_app(
        node, host=FakeHost(), auth=AuthSettings(rate_limit=0), clock=clock, monotonic=clock, network=settings
    )
    with TestClient(app.asgi, base_url=BASE) as client:
        client.headers["Authorization"] = f"Bearer {admin_token(app)}"
        assert client.get("/readyz").json()["checks"]["network"]["ready"] is True
        assert client.get(NET).json() == {}
        wait_until(lambda: app.overlays.passes >= 1, 15, what="the overlay reconciler's first pass")


@pytest.mark.parametrize("bad", ["-f", "--help", "example.org", "10.1.0.9 -c 100000"])
def test_a_check_that_is_not_an_ip_address_is_refused_before_anything(
    api: TestClient[Any], kernel: FakeKernel, checker: Checker, bad: str
) -> None:
    response = api.post(f"{NET}/apply", json={"config": CONFIG, "check": bad})
    assert response.status_code == 422, response.text
    problem = response.json()
    assert problem["detail"] == "check must be an IPv4 or IPv6 address"
    assert problem["errors"][0]["path"] == "$.check"
    assert checker.asked == []  # ping was never run
    assert "br0" not in kernel.specs
    assert api.get(f"{NET}/status").json()["desired"] is None  # and nothing was stored
