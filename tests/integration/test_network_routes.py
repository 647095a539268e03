"""The network API of one node against the real kernel, inside a throwaway network namespace.

The app is the unit tests' (TestClient, fake host facts) with `NetworkSettings(netns=NS)`, so
netconfig, the link reader and the reachability check all act inside NS, which the test makes
with a veth pair (`e0`, `e1`) and deletes afterwards. The root namespace holds an `unreachable`
route for the test subnet while it runs (tests/netns.py explains why).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from appliance.app import Appliance, create_app
from appliance.bootstrap import OpenedNode, open_node
from appliance.network.service import NetworkSettings
from appliance.settings import AuthSettings
from tests.kit.need import require_available
from tests.kit.wait import wait_until
from tests.netns import _quiet, _run, available
from tests.unit.appliance.conftest import BASE, HOST_ADDRESSES, FakeHost, admin_token, settings_for

pytestmark = [pytest.mark.privileged, pytest.mark.integration]

SUBNET = "10.91.0.0/24"
NET = "/api/v1/nodes/n1/network"


@pytest.fixture
def netns() -> Iterator[str]:
    require_available(available())
    name = f"dv{secrets.token_hex(3)}-net"
    metric = str(1000 + secrets.randbelow(60000))
    _run(["ip", "route", "add", "unreachable", SUBNET, "metric", metric])
    try:
        _run(["ip", "netns", "add", name])
        _run(["ip", "-n", name, "link", "set", "lo", "up"])
        _run(["ip", "-n", name, "link", "add", "e0", "type", "veth", "peer", "name", "e1"])
        yield name
    finally:
        _quiet(["ip", "netns", "del", name])
        _quiet(["ip", "route", "del", "unreachable", SUBNET, "metric", metric])


@pytest.fixture
def node(tmp_path: Path) -> Iterator[OpenedNode]:
    opened = open_node(settings_for(tmp_path / "data"), HOST_ADDRESSES)
    yield opened
    opened.close()


def make_app(node: OpenedNode, netns: str) -> Appliance:
    return create_app(node, host=FakeHost(), auth=AuthSettings(rate_limit=0), network=NetworkSettings(netns=netns))


@pytest.fixture
def api(node: OpenedNode, netns: str) -> Iterator[TestClient[Any]]:
    app = make_app(node, netns)
    with TestClient(app.asgi, base_url=BASE) as client:
        client.headers["Authorization"] = f"Bearer {admin_token(app)}"
        yield client


def link(netns: str, name: str) -> dict[str, Any] | None:
    result = _run(["ip", "-n", netns, "-j", "-d", "address", "show", "dev", name], check=False)
    if result.returncode != 0:
        return None
    found: list[dict[str, Any]] = json.loads(result.stdout)
    return found[0]


def mac(netns: str, name: str) -> str:
    found = link(netns, name)
    assert found is not None
    return str(found["address"])


def config(netns: str, *, bridge_address: str = "10.91.0.1/24") -> dict[str, Any]:
    return {
        "nics": [
            {"name": "e0", "mac": mac(netns, "e0")},
            {"name": "e1", "mac": mac(netns, "e1"), "addresses": ["10.91.0.2/24"]},
        ],
        "bridges": [{"name": "dvbr0", "ports": [{"name": "e0"}], "addresses": [bridge_address], "mtu": 1400}],
    }


def test_apply_check_confirm_and_status_in_a_namespace(api: TestClient[Any], netns: str) -> None:
    assert api.put(NET, json=config(netns)).status_code == 200
    applied = api.post(f"{NET}/apply", json={"confirm_within": 60, "check": "10.91.0.2"})
    assert applied.status_code == 200, applied.text
    bridge = link(netns, "dvbr0")
    assert bridge is not None
    assert bridge["mtu"] == 1400
    assert [a["local"] for a in bridge["addr_info"] if a["family"] == "inet"] == ["10.91.0.1"]
    assert _run(["ip", "link", "show", "dev", "dvbr0"], check=False).returncode != 0  # not in the root namespace
    confirmed = api.post(f"{NET}/confirm")
    assert confirmed.status_code == 200
    # traffic, so the counters have something to show
    assert _run(["ip", "netns", "exec", netns, "ping", "-c", "2", "-i", "0.2", "-W", "1", "10.91.0.2"]).returncode == 0
    status = api.get(f"{NET}/status").json()
    assert status["pending"] is None
    assert status["applied"]["bridges"][0]["name"] == "dvbr0"
    links = {item["name"]: item for item in status["links"]}
    assert links["dvbr0"]["kind"] == "bridge"
    assert "10.91.0.1/24" in links["dvbr0"]["addresses"]
    assert links["e0"]["master"] == "dvbr0"
    assert links["e0"]["kind"] == "veth"
    assert links["lo"]["counters"]["rx_packets"] > 0
    assert {"to": "10.91.0.0/24", "dev": "dvbr0", "protocol": "kernel"}.items() <= next(
        r for r in status["routes"] if r["dev"] == "dvbr0"
    ).items()
    assert api.post(f"{NET}/plan", json={}).json()["actions"] == []


def test_failed_check_is_rolled_back(api: TestClient[Any], netns: str) -> None:
    response = api.post(f"{NET}/apply", json={"config": config(netns), "check": "10.91.0.99"})
    assert response.status_code == 409
    assert "rolled back" in response.json()["detail"]
    assert link(netns, "dvbr0") is None
    assert api.get(f"{NET}/status").json()["last_outcome"]["result"] == "rolled-back"


def test_rollback_on_request(api: TestClient[Any], netns: str) -> None:
    assert api.post(f"{NET}/apply", json={"config": config(netns)}).status_code == 200
    assert link(netns, "dvbr0") is not None
    rolled = api.post(f"{NET}/rollback")
    assert rolled.status_code == 200
    assert any("dvbr0" in action for action in rolled.json()["actions"])
    assert link(netns, "dvbr0") is None


def test_start_up_applies_the_confirmed_configuration(node: OpenedNode, netns: str) -> None:
    app = make_app(node, netns)
    with TestClient(app.asgi, base_url=BASE) as client:
        client.headers["Authorization"] = f"Bearer {admin_token(app)}"
        assert client.post(f"{NET}/apply", json={"config": config(netns)}).status_code == 200
        assert client.post(f"{NET}/confirm").status_code == 200
    _run(["ip", "-n", netns, "link", "del", "dvbr0"])  # lost, as after a reboot
    again = make_app(node, netns)
    with TestClient(again.asgi, base_url=BASE) as client:
        detail = client.get("/readyz").json()["checks"]["network"]["detail"]
        assert detail.startswith("re-applied the confirmed configuration")
        assert link(netns, "dvbr0") is not None


def test_start_up_failure_is_reported_not_fatal(node: OpenedNode, netns: str) -> None:
    app = make_app(node, netns)
    with TestClient(app.asgi, base_url=BASE) as client:
        client.headers["Authorization"] = f"Bearer {admin_token(app)}"
        assert client.post(f"{NET}/apply", json={"config": config(netns)}).status_code == 200
        assert client.post(f"{NET}/confirm").status_code == 200
    _run(["ip", "-n", netns, "link", "del", "e0"])  # a NIC the configuration needs is gone
    again = make_app(node, netns)
    with TestClient(again.asgi, base_url=BASE) as client:
        client.headers["Authorization"] = f"Bearer {admin_token(again)}"
        ready = client.get("/readyz")
        assert ready.status_code == 200
        assert "start-up apply failed" in ready.json()["checks"]["network"]["detail"]
        assert client.get(f"{NET}/status").json()["startup"].startswith("start-up apply failed")


def test_console_change_is_adopted_by_the_service(api: TestClient[Any], netns: str, node: OpenedNode) -> None:
    # What `debvisor net apply FILE --confirm-within 3` leaves behind when it is killed at once:
    # a pending change in the shared state directory, with nobody counting down.
    from netconfig.confirm import NetConfig
    from netconfig.kernel import KernelAdapter
    from netconfig.load import loads
    from netconfig.state import StateDir

    with KernelAdapter(netns) as adapter:
        console = NetConfig(adapter, StateDir(node.datadir.root / "netconfig"))
        console.begin(loads(json.dumps(config(netns)), json=True), confirm_within=3)
    assert link(netns, "dvbr0") is not None
    blocked = api.post(f"{NET}/apply", json={"config": config(netns, bridge_address="10.91.0.3/24")})
    assert blocked.status_code == 409
    assert "already waiting" in blocked.json()["detail"]
    assert api.get(f"{NET}/status").json()["pending"]["bridges"][0]["name"] == "dvbr0"
    wait_until(lambda: link(netns, "dvbr0") is None, 10, 0.2, what="the unconfirmed bridge to be rolled back")
    assert api.get(f"{NET}/status").json()["last_outcome"]["reason"] == "not confirmed in time"


def test_console_and_service_share_the_state(api: TestClient[Any], netns: str, node: OpenedNode) -> None:
    # `debvisor net` from appliance.cli uses DATA/netconfig, as the service does
    import subprocess
    import sys

    path = node.datadir.root.parent / "net.json"
    path.write_text(json.dumps(config(netns)))
    argv = [sys.executable, "-m", "appliance", "net", "apply", str(path), "--confirm-within", "0"]
    argv += ["--data-dir", str(node.datadir.root), "--netns", netns]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert "ip link add dvbr0 type bridge" in result.stdout
    status = api.get(f"{NET}/status").json()
    assert status["applied"]["bridges"][0]["name"] == "dvbr0"
    assert api.post(f"{NET}/apply", json={}).status_code == 200  # the applied one, again: no change
    confirm = subprocess.run(
        [sys.executable, "-m", "appliance", "net", "confirm", "--data-dir", str(node.datadir.root), "--netns", netns],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert confirm.returncode == 0, confirm.stderr
    assert api.get(f"{NET}/status").json()["last_outcome"]["result"] == "confirmed"
