"""The appliance's PXE routes: settings stored per node and audited, roles, and the boot files
answered only by the plain-HTTP app (never by the API), only while PXE is enabled."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from litestar.testing import TestClient

from appliance.app import Appliance, create_app
from appliance.audit.log import AuditQuery
from appliance.auth.permissions import Role
from appliance.bootstrap import OpenedNode
from appliance.settings import AuthSettings, HostPort
from pxe.listen import ListenerError
from pxe.service import BootServerOptions, PxeSettings, save_settings
from tests.kit.clock import FakeClock
from tests.unit.appliance.conftest import BASE, FakeHost, admin_token

PXE = "/api/v1/nodes/n1/pxe"
CONFIG = {
    "enabled": True,
    "interface": "eth1",
    "mode": "full",
    "range_start": "10.9.0.100",
    "range_end": "10.9.0.150",
    "ipv6_prefix": "fd00:9::/64",
    "http_url": "http://10.9.0.1:8080",
    "machines": {"52-54-00-AA-BB-01": {"name": "rack1-n1", "extra": ["quiet"]}},
}


@pytest.fixture
def app(node: OpenedNode, clock: FakeClock, tmp_path: Path) -> Appliance:
    files = tmp_path / "files"
    files.mkdir()
    (files / "vmlinuz").write_bytes(b"kernel")
    pxe = BootServerOptions(boot_files=files, run_dnsmasq=False, http_listener="10.9.0.1:8080")
    return create_app(node, host=FakeHost(), auth=AuthSettings(rate_limit=0), pxe=pxe, clock=clock, monotonic=clock)


@pytest.fixture
def api(app: Appliance) -> Iterator[TestClient[Any]]:
    with TestClient(app.asgi, base_url=BASE) as test_client:
        test_client.headers["Authorization"] = f"Bearer {admin_token(app)}"
        yield test_client


def token_for(app: Appliance, role: Role) -> dict[str, str]:
    _, secret = app.accounts.create_token(owner="admin", name=f"{role}", role=role, expires_at=None)
    return {"Authorization": f"Bearer {secret}"}


def test_pxe_starts_disabled_and_put_stores_normalized_settings(
    api: TestClient[Any], app: Appliance, node: OpenedNode
) -> None:
    assert api.get(PXE).json()["enabled"] is False
    answer = api.put(PXE, json=CONFIG)
    assert answer.status_code == 200, answer.text
    assert list(answer.json()["machines"]) == ["52:54:00:aa:bb:01"]
    assert api.get(PXE).json() == answer.json()
    stored = node.datadir.root / "pxe" / "config.json"
    assert json.loads(stored.read_text())["machines"]["52:54:00:aa:bb:01"]["extra"] == ["quiet"]
    assert stored.stat().st_mode & 0o077 == 0
    assert api.put(PXE, json=api.get(PXE).json()).status_code == 200  # what GET answers goes back as is
    argv = app.pxe.argv()
    assert argv is not None
    assert "--interface=eth1" in argv
    assert "--dhcp-boot=tag:ipxe,http://10.9.0.1:8080/pxe/boot.ipxe" in argv


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"interface": None}, "needs interface"),
        ({"range_end": "10.9.0.1"}, "below"),
        ({"machines": {"xx": {}}}, "MAC"),
        ({"machines": {"52:54:00:aa:bb:01": {"join": "dvj_x"}}}, "join"),  # no join tokens in settings
        ({"machines": {"52:54:00:aa:bb:01": {"extra": ["debvisor.join=dvj_x"]}}}, "TLS"),
        ({"approve_macs": ["nope"]}, "MAC"),
        ({"approve_serials": [""]}, "approve_serials"),
    ],
)
def test_unusable_settings_are_refused_and_nothing_changes(
    api: TestClient[Any], change: dict[str, object], message: str
) -> None:
    answer = api.put(PXE, json=CONFIG | change)
    assert answer.status_code == 422, answer.text
    assert message in answer.text
    assert api.get(PXE).json()["enabled"] is False


def test_only_pxe_managers_read_or_change_the_settings(api: TestClient[Any], app: Appliance) -> None:
    viewer = token_for(app, Role.VIEWER)
    assert api.get(PXE, headers=viewer).status_code == 403  # the site's approval policy
    assert api.put(PXE, headers=viewer, json=CONFIG).status_code == 403
    assert api.get(f"{PXE}/machines", headers=viewer).status_code == 200
    operator = token_for(app, Role.OPERATOR)
    assert api.put(PXE, headers=operator, json=CONFIG).status_code == 200
    assert api.get(PXE, headers=operator).status_code == 200
    entries = app.audit.query(AuditQuery(action="pxe."), 100)
    assert [(e.action, e.outcome, e.target) for e in entries] == [  # reads are audited too
        ("pxe.config.read", "denied", "/api/v1/nodes/n1/pxe"),
        ("pxe.config.put", "denied", "/api/v1/nodes/n1/pxe"),
        ("pxe.config.put", "success", "node n1"),
        ("pxe.config.read", "success", "node n1"),
    ]


def test_boot_files_only_on_the_plain_http_app_and_only_when_enabled(api: TestClient[Any], app: Appliance) -> None:
    with TestClient(app.pxe_asgi, base_url="http://10.9.0.1:8080") as boot:
        assert boot.get("/pxe/boot.ipxe").status_code == 404
        api.put(PXE, json=CONFIG)
        assert boot.get("/pxe/vmlinuz").content == b"kernel"
        script = boot.get("/pxe/boot.ipxe", params={"mac": "52:54:00:aa:bb:01"})
        assert "debvisor.name=rack1-n1" in script.text
        assert boot.get("/api/v1/nodes").status_code == 404  # never the API
    assert api.get("/pxe/vmlinuz").status_code == 404  # the API does not serve boot files
    [machine] = api.get(f"{PXE}/machines").json()
    assert (machine["mac"], machine["name"]) == ("52:54:00:aa:bb:01", "rack1-n1")


def test_pxe_cannot_be_enabled_without_a_plain_http_listener(node: OpenedNode, clock: FakeClock) -> None:
    app = create_app(node, host=FakeHost(), pxe=BootServerOptions(run_dnsmasq=False), clock=clock, monotonic=clock)
    with TestClient(app.asgi, base_url=BASE) as api:
        api.headers["Authorization"] = f"Bearer {admin_token(app)}"
        answer = api.put(PXE, json=CONFIG)
        assert answer.status_code == 422
        assert "--pxe-http" in answer.text
        assert api.put(PXE, json=CONFIG | {"enabled": False}).status_code == 200  # settings prepared ahead


def test_another_nodes_pxe_is_forwarded(api: TestClient[Any]) -> None:
    # No such member: the forwarder answers, the local settings are not touched.
    answer = api.get("/api/v1/nodes/n2/pxe")
    assert answer.status_code in (404, 502, 503), answer.text


class FakeListener:
    """Records where the service opens and closes the boot-file listener; `refuse` makes opening fail."""

    def __init__(self) -> None:
        self.address: HostPort | None = None
        self.events: list[str] = []
        self.refuse: set[str] = set()

    async def start(self, listen: HostPort) -> None:
        if str(listen) in self.refuse:
            raise ListenerError(98, f"cannot listen on {listen}: Address already in use")
        self.address = listen
        self.events.append(f"start {listen}")

    async def stop(self) -> None:
        if self.address is not None:
            self.events.append(f"stop {self.address}")
        self.address = None


def _app_with_listener(
    node: OpenedNode, clock: FakeClock, listener: FakeListener, http_listener: str | None = None
) -> Appliance:
    pxe = BootServerOptions(run_dnsmasq=False, listener=lambda _app: listener, http_listener=http_listener)
    return create_app(node, host=FakeHost(), pxe=pxe, clock=clock, monotonic=clock)


# eth0 is FakeHost's interface with the IPv4 address 192.0.2.10; no http_url: the default.
ON_ETH0 = {"enabled": True, "interface": "eth0", "mode": "proxy", "network": "192.0.2.0/24"}


def test_the_listener_opens_on_the_interfaces_address_while_enabled_and_is_the_default_url(
    node: OpenedNode, clock: FakeClock
) -> None:
    listener = FakeListener()
    app = _app_with_listener(node, clock, listener)
    with TestClient(app.asgi, base_url=BASE) as api:
        api.headers["Authorization"] = f"Bearer {admin_token(app)}"
        assert listener.events == []  # disabled: no plain-HTTP port
        answer = api.put(PXE, json=ON_ETH0)
        assert answer.status_code == 200, answer.text
        assert answer.json()["http_url"] is None  # stored as given; the default is derived
        assert listener.events == ["start 192.0.2.10:8080"]
        assert app.pxe.http_url() == "http://192.0.2.10:8080"
        argv = app.pxe.argv()
        assert argv is not None
        assert "--pxe-service=tag:ipxe,x86PC,DebVisor,http://192.0.2.10:8080/pxe/boot.ipxe" in argv
        assert api.put(PXE, json=ON_ETH0 | {"only_known": True}).status_code == 200
        assert listener.events == ["start 192.0.2.10:8080"]  # unchanged address: left open
        assert api.put(PXE, json=ON_ETH0 | {"enabled": False}).status_code == 200
        assert listener.events == ["start 192.0.2.10:8080", "stop 192.0.2.10:8080"]
        assert app.pxe.http_url() is None
        assert api.put(PXE, json=ON_ETH0 | {"http_url": "http://boot.example:8080"}).status_code == 200
        assert app.pxe.http_url() == "http://boot.example:8080"  # a URL given wins (e.g. through NAT)
    assert listener.events[-1] == "stop 192.0.2.10:8080"  # closed with the node


def test_an_explicit_listener_address_wins_and_a_wildcard_advertises_the_interface(
    node: OpenedNode, clock: FakeClock
) -> None:
    listener = FakeListener()
    app = _app_with_listener(node, clock, listener, http_listener="0.0.0.0:8081")
    with TestClient(app.asgi, base_url=BASE) as api:
        api.headers["Authorization"] = f"Bearer {admin_token(app)}"
        assert api.put(PXE, json=ON_ETH0).status_code == 200
        assert listener.events == ["start 0.0.0.0:8081"]
        assert app.pxe.http_url() == "http://192.0.2.10:8081"


def test_enabling_fails_with_a_problem_when_the_listener_cannot_open(node: OpenedNode, clock: FakeClock) -> None:
    listener = FakeListener()
    app = _app_with_listener(node, clock, listener)
    with TestClient(app.asgi, base_url=BASE) as api:
        api.headers["Authorization"] = f"Bearer {admin_token(app)}"
        no_ipv4 = api.put(PXE, json=ON_ETH0 | {"interface": "eth9"})
        assert no_ipv4.status_code == 422
        assert no_ipv4.headers["content-type"].startswith("application/problem+json")
        assert "eth9 has no IPv4 address" in no_ipv4.json()["detail"]
        listener.refuse = {"192.0.2.10:8080"}
        busy = api.put(PXE, json=ON_ETH0)
        assert busy.status_code == 422
        assert "Address already in use" in busy.json()["detail"]
        assert api.get(PXE).json()["enabled"] is False  # nothing stored
        assert listener.address is None


def test_a_stored_enabled_config_opens_the_listener_when_the_node_starts(node: OpenedNode, clock: FakeClock) -> None:
    save_settings(node.datadir.root / "pxe" / "config.json", msgspec.convert(ON_ETH0, PxeSettings))
    listener = FakeListener()
    app = _app_with_listener(node, clock, listener)
    with TestClient(app.asgi, base_url=BASE):
        assert listener.events == ["start 192.0.2.10:8080"]
    assert listener.events == ["start 192.0.2.10:8080", "stop 192.0.2.10:8080"]


UNKNOWN = "52:54:00:aa:bb:09"
REPORT = {"mac": UNKNOWN, "name": "whatever", "cpu_count": 8, "memory_bytes": 1 << 34, "version": "0.1.0"}


def test_an_unknown_machine_is_listed_reports_and_is_named_by_an_operator(api: TestClient[Any], app: Appliance) -> None:
    api.put(PXE, json=CONFIG)
    with TestClient(app.pxe_asgi, base_url="http://10.9.0.1:8080") as boot:
        assert "debvisor.name=" not in boot.get("/pxe/boot.ipxe", params={"mac": UNKNOWN}).text
        [listed] = api.get(f"{PXE}/machines").json()
        assert (listed["mac"], listed["state"], listed["name"], listed["boots"]) == (UNKNOWN, "unknown", None, 1)
        assert boot.post("/pxe/enlist", json=REPORT).status_code == 204
        detail = api.get(f"{PXE}/machines/{UNKNOWN.replace(':', '-').upper()}").json()
        assert (detail["state"], detail["inventory"]["cpu_count"], detail["hardware"]["memory_bytes"]) == (
            "enlisted",
            8,
            1 << 34,
        )
        assert "inventory" not in api.get(f"{PXE}/machines").json()[0]  # the list shows the summary

        named = api.put(f"{PXE}/machines/{UNKNOWN}", json={"name": "rack1-n9"})
        assert named.status_code == 200, named.text
        assert named.json() == {"mac": UNKNOWN, "name": "rack1-n9", "extra": [], "ip": None}
        script = boot.get("/pxe/boot.ipxe", params={"mac": UNKNOWN}).text
        assert "debvisor.name=rack1-n9 debvisor.enrol=dve_" in script
        assert "dvj_" not in script
    detail = api.get(f"{PXE}/machines/{UNKNOWN}").json()
    assert (detail["name"], detail["booted_name"], detail["boots"], detail["state"]) == (
        "rack1-n9",
        "rack1-n9",
        2,
        "enlisted",
    )
    entries = app.audit.query(AuditQuery(action="pxe."), 100)
    assert [(e.action, e.outcome, e.target) for e in entries] == [
        ("pxe.config.put", "success", "node n1"),
        ("pxe.enlist", "success", f"machine {UNKNOWN}"),
        ("pxe.machine.put", "success", f"node n1 machine {UNKNOWN}"),
    ]
    assert entries[1].user == f"machine:{UNKNOWN}"
    assert entries[2].detail == "name rack1-n9"
    assert all("secret" not in e.detail for e in app.audit.query(AuditQuery(), 1000))


def test_a_machine_named_after_a_member_is_joined(api: TestClient[Any], app: Appliance) -> None:
    api.put(PXE, json=CONFIG)
    with TestClient(app.pxe_asgi, base_url="http://10.9.0.1:8080") as boot:
        boot.get("/pxe/boot.ipxe", params={"mac": UNKNOWN})
    assert api.put(f"{PXE}/machines/{UNKNOWN}", json={"name": "n1"}).status_code == 200  # this node's own name
    assert api.get(f"{PXE}/machines/{UNKNOWN}").json()["state"] == "joined"


def test_naming_validates_like_the_settings_and_forgetting_removes_record_and_settings(
    api: TestClient[Any], app: Appliance
) -> None:
    api.put(PXE, json=CONFIG)
    with TestClient(app.pxe_asgi, base_url="http://10.9.0.1:8080") as boot:
        boot.get("/pxe/boot.ipxe", params={"mac": UNKNOWN})
    for body, fragment in [
        ({"name": "Bad_Name"}, "node name"),
        ({"name": "ok", "join": "dvj_x"}, "join"),
        ({"name": "ok", "ip": "not-an-ip"}, "not-an-ip"),
        ({"extra": []}, "name"),
        ({"name": "ok", "colour": "red"}, "colour"),
    ]:
        answer = api.put(f"{PXE}/machines/{UNKNOWN}", json=body)
        assert answer.status_code == 422, (body, answer.text)
        assert fragment in answer.text
    assert api.put(f"{PXE}/machines/not-a-mac", json={"name": "ok"}).status_code == 422
    assert list(api.get(PXE).json()["machines"]) == ["52:54:00:aa:bb:01"]  # nothing changed

    assert api.put(f"{PXE}/machines/{UNKNOWN}", json={"name": "rack1-n9"}).status_code == 200
    assert api.delete(f"{PXE}/machines/{UNKNOWN}").status_code == 204
    assert api.get(f"{PXE}/machines/{UNKNOWN}").status_code == 404
    assert UNKNOWN not in api.get(PXE).json()["machines"]
    assert api.delete(f"{PXE}/machines/{UNKNOWN}").status_code == 404
    # A MAC that only has settings (never booted) is forgotten too.
    assert api.delete(f"{PXE}/machines/52:54:00:aa:bb:01").status_code == 204
    assert api.get(PXE).json()["machines"] == {}


def test_viewers_see_machines_but_cannot_name_or_forget_them(api: TestClient[Any], app: Appliance) -> None:
    viewer = token_for(app, Role.VIEWER)
    api.put(PXE, json=CONFIG)
    with TestClient(app.pxe_asgi, base_url="http://10.9.0.1:8080") as boot:
        boot.get("/pxe/boot.ipxe", params={"mac": UNKNOWN})
    assert api.get(f"{PXE}/machines/{UNKNOWN}", headers=viewer).status_code == 200
    assert api.put(f"{PXE}/machines/{UNKNOWN}", headers=viewer, json={"name": "x"}).status_code == 403
    assert api.delete(f"{PXE}/machines/{UNKNOWN}", headers=viewer).status_code == 403
    denied = app.audit.query(AuditQuery(action="pxe.machine."), 100)
    assert [(e.action, e.outcome) for e in denied] == [("pxe.machine.put", "denied"), ("pxe.machine.delete", "denied")]


def test_another_nodes_machines_are_forwarded(api: TestClient[Any]) -> None:
    for method in ("GET", "PUT", "DELETE"):
        answer = api.request(method, f"/api/v1/nodes/n2/pxe/machines/{UNKNOWN}", json={"name": "x"})
        assert answer.status_code in (404, 502, 503), answer.text
        assert "no member" in answer.text or "n2" in answer.text


def test_patch_changes_only_the_fields_given_and_null_clears_one(api: TestClient[Any], app: Appliance) -> None:
    api.put(PXE, json=CONFIG)
    url = f"{PXE}/machines/52-54-00-AA-BB-01"
    api.put(url, json={"name": "rack1-n1", "extra": ["quiet"], "ip": "10.9.0.120"})
    # A rescue boot: only `extra` changes; the name and the fixed address stay (a PUT would drop them).
    answer = api.patch(url, json={"extra": ["systemd.unit=rescue.target"]})
    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "mac": "52:54:00:aa:bb:01",
        "name": "rack1-n1",
        "extra": ["systemd.unit=rescue.target"],
        "ip": "10.9.0.120",
    }
    assert api.patch(url, json={"ip": None, "extra": None}).json() == {
        "mac": "52:54:00:aa:bb:01",
        "name": "rack1-n1",
        "extra": [],
        "ip": None,
    }
    assert api.get(PXE).json()["machines"]["52:54:00:aa:bb:01"] == {"name": "rack1-n1", "extra": [], "ip": None}
    # A machine without settings yet starts from none.
    assert api.patch(f"{PXE}/machines/{UNKNOWN}", json={"name": "rack1-n9"}).json()["name"] == "rack1-n9"
    audited = app.audit.query(AuditQuery(action="pxe.machine.patch"), 10)
    assert sorted((e.outcome, e.target, e.detail) for e in audited) == [
        ("success", "node n1 machine 52:54:00:aa:bb:01", "changed extra, ip; name rack1-n1"),
        ("success", "node n1 machine 52:54:00:aa:bb:01", "changed extra; name rack1-n1"),
        ("success", f"node n1 machine {UNKNOWN}", "changed name; name rack1-n9"),
    ]


def test_patch_validates_like_put_and_changes_nothing_when_refused(api: TestClient[Any], app: Appliance) -> None:
    api.put(PXE, json=CONFIG)
    url = f"{PXE}/machines/52:54:00:aa:bb:01"
    for body, fragment in [
        ({"name": "Bad_Name"}, "node name"),
        ({"join": "dvj_x"}, "join"),
        ({"ip": "not-an-ip"}, "not-an-ip"),
        ({"extra": ["debvisor.join=dvj_x"]}, "TLS"),
        ({"extra": "quiet"}, "extra"),
    ]:
        answer = api.patch(url, json=body)
        assert answer.status_code in (400, 422), (body, answer.text)
        assert fragment in answer.text, (body, answer.text)
    assert api.patch(f"{PXE}/machines/not-a-mac", json={"name": "ok"}).status_code == 422
    assert api.get(PXE).json()["machines"] == {
        "52:54:00:aa:bb:01": {"name": "rack1-n1", "extra": ["quiet"], "ip": None}
    }
    viewer = token_for(app, Role.VIEWER)
    assert api.patch(url, headers=viewer, json={"name": "x"}).status_code == 403
    assert api.request("PATCH", f"/api/v1/nodes/n2/pxe/machines/{UNKNOWN}", json={"name": "x"}).status_code in (
        404,
        502,
        503,
    )
