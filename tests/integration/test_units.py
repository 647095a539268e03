"""Units over D-Bus against real systemd as PID 1: a systemd-nspawn container (tests/kit/nspawn.py)
managed from outside by node n0 of a two-node cluster in network namespaces
(`serve --system-bus` its bus socket, `--host-root` its root). n1 has no system bus: it
forwards unit requests to n0, serves everything else, and answers 503 for its own units.

The test writes its own units into the container (/etc/systemd/system, and one under
/usr/lib/systemd/system, since `mask` refuses to overwrite a unit file in /etc) and reloads.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.clusterlab import ClusterLab, ClusterNode, bootstrap_admin_token, join_token
from tests.integration.test_events import collect, connect, user_token
from tests.integration.test_openapi_fuzz import CHECKS, MAX_EXAMPLES, SCHEMATHESIS, SEED, UNITS_TAG
from tests.kit.need import require
from tests.kit.nspawn import Container, debian_root, require_nspawn
from tests.kit.wait import wait_until
from tests.netns import Lab, available

pytestmark = [pytest.mark.integration, pytest.mark.privileged, pytest.mark.systemd]

UNITS = {
    "etc/systemd/system/dvt-web.service": (
        "[Unit]\nDescription=DebVisor test web\n[Service]\nExecStart=/bin/sleep infinity\n"
        "MemoryAccounting=yes\nTasksAccounting=yes\nCPUAccounting=yes\n[Install]\nWantedBy=multi-user.target\n"
    ),
    "etc/systemd/system/dvt-fail.service": "[Service]\nType=oneshot\nExecStart=/bin/false\n",
    "etc/systemd/system/dvt-slow.service": "[Service]\nType=oneshot\nTimeoutStartSec=1\nExecStart=/bin/sleep 30\n",
    "etc/systemd/system/dvt-jobslow.service": (
        "[Unit]\nJobTimeoutSec=1\n[Service]\nType=oneshot\nTimeoutStartSec=30\nExecStart=/bin/sleep 30\n"
    ),
    "etc/systemd/system/dvt-tpl@.service": (
        "[Service]\nExecStart=/bin/sleep infinity\n[Install]\nWantedBy=multi-user.target\nDefaultInstance=one\n"
    ),
    "etc/systemd/system/dvt-tick.timer": "[Timer]\nOnCalendar=*-*-* 04:00:00\nUnit=dvt-web.service\n",
    "usr/lib/systemd/system/dvt-lib.service": (
        "[Unit]\nDescription=masked by the test\n[Service]\nExecStart=/bin/sleep infinity\n"
    ),
}


class Units:
    """The container and the two nodes."""

    def __init__(self, box: Container, cluster: ClusterLab) -> None:
        self.box = box
        self.cluster = cluster
        self.n0, self.n1 = cluster.nodes

    def act(self, node: ClusterNode, unit: str, action: str, body: dict[str, Any] | None = None) -> Any:
        """POST an action for n0's unit through `node`."""
        return node.client().post(f"/api/v1/nodes/n0/units/{unit}/{action}", json=body)


@pytest.fixture(scope="module")
def units(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Units]:
    require_nspawn()
    reason = available()
    require(reason is None, reason or "")
    work = tmp_path_factory.mktemp("units")
    with Container(debian_root(), work) as box:
        for path, text in UNITS.items():
            target = box.path(path)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
        box.run(["systemctl", "daemon-reload"])
        box.run(["systemctl", "start", "dvt-tick.timer"])
        with Lab(2) as lab:
            cluster = ClusterLab(lab, work, 2)
            n0, n1 = cluster.nodes
            try:
                n0.start(extra=["--system-bus", box.bus_address(), "--host-root", str(box.path("/"))])
                n0.wait_ready()
                token = bootstrap_admin_token(n0)
                n1.token = token
                n1.start(join=join_token(n0), extra=["--system-bus", f"unix:path={work}/no-bus"])
                n1.wait_ready()
                cluster.wait_all_see({"n0": "alive", "n1": "alive"}, timeout=30)
                yield Units(box, cluster)
            finally:
                cluster.stop()


def test_n0_reports_systemd_ready_and_n1_without_a_bus_is_ready_but_degraded(units: Units) -> None:
    ready = units.n0.client().get("/readyz").json()["checks"]["units"]
    assert ready["ready"] is True
    assert ready["detail"].startswith("systemd 25")
    answer = units.n1.client().get("/readyz")
    assert answer.status_code == 200
    assert answer.json()["checks"]["units"]["ready"] is False
    assert "no system bus" in answer.json()["checks"]["units"]["detail"]
    own = units.n1.client().get("/api/v1/nodes/n1/units")
    assert own.status_code == 503
    assert own.headers["content-type"].startswith("application/problem+json")
    assert "no system bus" in own.json()["detail"]


def test_list_filters_and_details_through_another_node(units: Units) -> None:
    client = units.n1.client()
    listed = client.get("/api/v1/nodes/n0/units", params={"type": "service", "pattern": "dbus*"})
    assert listed.status_code == 200, listed.text
    assert [u["name"] for u in listed.json()] == ["dbus.service"]
    assert listed.json()[0]["active_state"] == "active"
    running = client.get("/api/v1/nodes/n0/units", params={"active": "active", "sub": "running"}).json()
    assert running
    assert all(u["sub_state"] == "running" for u in running)
    files = client.get("/api/v1/nodes/n0/unit-files", params={"pattern": "dvt-*"}).json()
    assert {f["name"]: f["state"] for f in files}["dvt-web.service"] == "disabled"
    assert {f["name"] for f in files} >= {"dvt-lib.service", "dvt-fail.service", "dvt-tick.timer"}
    timers = {t["name"]: t for t in client.get("/api/v1/nodes/n0/timers").json()}
    assert timers["dvt-tick.timer"]["unit"] == "dvt-web.service"
    assert timers["dvt-tick.timer"]["next"] > time.time()
    assert timers["dvt-tick.timer"]["last"] is None
    dbus = client.get("/api/v1/nodes/n0/units/dbus.service").json()
    assert dbus["main_pid"] > 0
    assert dbus["protected"] is True
    assert "dbus.socket" in dbus["requires"]
    assert dbus["fragment_path"].endswith("/dbus.service")
    assert dbus["since"] > 0


def test_start_restart_stop_wait_for_their_jobs(units: Units) -> None:
    started = units.act(units.n1, "dvt-web.service", "start")
    assert started.status_code == 200, started.text
    assert (started.json()["job_result"], started.json()["active_state"]) == ("done", "active")
    details = units.n1.client().get("/api/v1/nodes/n0/units/dvt-web.service").json()
    assert details["main_pid"] > 0
    assert details["tasks"] is None or details["tasks"] >= 1  # None where the container's cgroups do not count
    assert details["restarts"] == 0
    pid = details["main_pid"]
    restarted = units.act(units.n1, "dvt-web.service", "restart").json()
    assert (restarted["job_result"], restarted["sub_state"]) == ("done", "running")
    assert units.n1.client().get("/api/v1/nodes/n0/units/dvt-web.service").json()["main_pid"] != pid
    killed = units.act(units.n0, "dvt-web.service", "kill", {"signal": "SIGKILL"})
    assert killed.status_code == 200, killed.text
    assert killed.json()["job_result"] == ""
    wait_until(lambda: units.box.run(["systemctl", "is-active", "dvt-web.service"], check=False).stdout.strip()
               != "active", 10)  # fmt: skip
    reload = units.act(units.n1, "dvt-web.service", "reload")  # no ExecReload=: systemd refuses
    assert reload.status_code == 409
    assert "reload" in reload.json()["detail"]
    stopped = units.act(units.n1, "dvt-web.service", "stop").json()
    assert stopped["job_result"] == "done"
    assert stopped["active_state"] in ("inactive", "failed")
    units.act(units.n1, "dvt-web.service", "reset-failed")
    assert units.box.run(["systemctl", "is-active", "dvt-web.service"], check=False).stdout.strip() == "inactive"
    untouched = units.act(units.n1, "dvt-web.service", "try-restart").json()  # not running: nothing to restart
    assert (untouched["job_result"], untouched["active_state"]) == ("done", "inactive")


def test_enable_disable_mask_unmask_change_the_links_and_reload(units: Units) -> None:
    wants = units.box.path("/etc/systemd/system/multi-user.target.wants/dvt-web.service")
    enabled = units.act(units.n1, "dvt-web.service", "enable").json()
    assert enabled["unit_file_state"] == "enabled"
    assert [c["type"] for c in enabled["changes"]] == ["symlink"]
    assert wants.is_symlink()
    disabled = units.act(units.n1, "dvt-web.service", "disable").json()
    assert disabled["unit_file_state"] == "disabled"
    assert not wants.exists()
    preset = units.act(units.n1, "dvt-web.service", "preset").json()  # Debian's preset: enable everything
    assert preset["unit_file_state"] == "enabled"
    assert wants.is_symlink()
    assert units.act(units.n1, "dvt-web.service", "disable").json()["unit_file_state"] == "disabled"
    masked = units.act(units.n1, "dvt-lib.service", "mask")
    assert masked.status_code == 200, masked.text
    assert masked.json()["unit_file_state"] == "masked"
    assert os.readlink(units.box.path("/etc/systemd/system/dvt-lib.service")) == "/dev/null"
    refused = units.act(units.n1, "dvt-lib.service", "start")
    assert refused.status_code == 409
    assert "masked" in refused.json()["detail"]
    assert units.act(units.n1, "dvt-lib.service", "unmask").json()["unit_file_state"] in ("static", "disabled")
    assert units.act(units.n1, "dvt-lib.service", "start").json()["job_result"] == "done"
    # a template is enabled as a whole (its default instance); it has no unit object of its own
    template = units.act(units.n1, "dvt-tpl@.service", "enable")
    assert template.status_code == 200, template.text
    assert [c["file"].rsplit("/", 1)[-1] for c in template.json()["changes"]] == ["dvt-tpl@one.service"]
    assert units.act(units.n1, "dvt-tpl@.service", "start").status_code == 422  # but cannot be started
    # a unit file in /etc: systemd will not overwrite it with a mask link
    assert units.act(units.n1, "dvt-web.service", "mask").status_code == 409


def test_a_failing_unit_surfaces_failed_with_its_result(units: Units) -> None:
    answer = units.act(units.n1, "dvt-fail.service", "start").json()
    assert (answer["job_result"], answer["active_state"], answer["result"]) == ("failed", "failed", "exit-code")
    failed = units.n1.client().get("/api/v1/nodes/n0/units", params={"active": "failed"}).json()
    assert "dvt-fail.service" in [u["name"] for u in failed]
    assert units.act(units.n1, "dvt-fail.service", "reset-failed").json()["active_state"] == "inactive"


def test_jobs_that_time_out_say_so(units: Units) -> None:
    slow = units.act(units.n1, "dvt-slow.service", "start").json()  # TimeoutStartSec=1: the service fails
    assert (slow["job_result"], slow["result"], slow["active_state"]) == ("failed", "timeout", "failed")
    job = units.act(units.n1, "dvt-jobslow.service", "start").json()  # JobTimeoutSec=1: the job times out
    assert job["job_result"] == "timeout"
    assert 0.9 < job["seconds"] < 3.5


def test_protected_units_refuse_without_an_admin_s_force(units: Units) -> None:
    operator = user_token(units.n1, "unit-operator", "operator")
    for unit, action in [("dbus.service", "stop"), ("dbus.socket", "mask"), ("systemd-journald.service", "kill"),
                         ("debvisor.service", "disable")]:  # fmt: skip
        refused = units.act(units.n1, unit, action)
        assert refused.status_code == 409, refused.text
        assert "protected" in refused.json()["detail"]
    with _client_as(units.n1, operator) as client:
        forced = client.post("/api/v1/nodes/n0/units/dbus.service/stop", json={"force": True})
        assert forced.status_code == 403
        # restarting stays allowed (not D-Bus itself here: that would drop the node's own connection)
        restarted = client.post("/api/v1/nodes/n0/units/systemd-journald.service/restart")
        assert restarted.json()["job_result"] == "done"
    # an admin's force passes the protection: the container has no debvisor.service, so systemd says 404
    assert units.act(units.n1, "debvisor.service", "stop", {"force": True}).status_code == 404
    assert units.box.run(["systemctl", "is-active", "dbus.service"], check=False).stdout.strip() == "active"


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/api/v1/nodes/n0/units/not a unit", 422),
        ("GET", "/api/v1/nodes/n0/units/x.notatype", 422),
        ("POST", "/api/v1/nodes/n0/units/x@.service/start", 422),
        ("POST", "/api/v1/nodes/n0/units/dvt-web.service/explode", 422),
        ("GET", "/api/v1/nodes/n0/units?type=bogus", 422),
        ("GET", "/api/v1/nodes/n0/units/nope.service", 404),
        ("POST", "/api/v1/nodes/n0/units/nope.service/start", 404),
        ("POST", "/api/v1/nodes/n0/units/nope.service/enable", 404),
    ],
)
def test_bad_names_and_unknown_units_are_refused(units: Units, method: str, path: str, status: int) -> None:
    answer = units.n1.client().call(lambda c: c.request(method, path))
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")


ROUTES: list[tuple[str, str, dict[str, Any] | None]] = [
    ("GET", "/api/v1/nodes/n0/units", None),
    ("GET", "/api/v1/nodes/n0/units/dbus.service", None),
    ("GET", "/api/v1/nodes/n0/unit-files", None),
    ("GET", "/api/v1/nodes/n0/timers", None),
    ("POST", "/api/v1/nodes/n0/units/dvt-lib.service/restart", {}),
]


def test_the_role_matrix_holds_for_every_unit_route(units: Units) -> None:
    tokens = {role: user_token(units.n0, f"units-{role}", role) for role in ("viewer", "operator", "developer")}
    expected = {
        "viewer": [200, 200, 200, 200, 403],
        "operator": [200, 200, 200, 200, 200],
        "developer": [403, 403, 403, 403, 403],
    }
    for role, token in tokens.items():
        with _client_as(units.n1, token) as client:
            got = [client.call(lambda c, m=m, p=p, b=b: c.request(m, p, json=b)).status_code for m, p, b in ROUTES]
        assert got == expected[role], role


def test_actions_are_audited_on_the_receiving_and_the_acting_node(units: Units) -> None:
    assert units.act(units.n1, "dvt-lib.service", "reload-or-restart").status_code == 200
    for node in ("n1", "n0"):
        entries = units.n1.client().get("/api/v1/audit", params={"node": node, "action": "units.action"}).json()
        mine = [e for e in entries["entries"] if "dvt-lib.service" in e["target"] + e["detail"]]
        assert mine, (node, entries)
        assert mine[-1]["outcome"] == "success"
    acted = units.n1.client().get("/api/v1/audit", params={"node": "n0", "action": "units.action"}).json()["entries"]
    last = [e for e in acted if e["target"] == "node n0 unit dvt-lib.service"][-1]
    assert last["forwarded_by"] == "n1"
    assert "reload-or-restart: job done" in last["detail"]


def test_unit_events_reach_a_client_of_another_node(units: Units) -> None:
    ws = connect(units.n1, "/api/v1/events?type=unit&node=n0", units.n1.token)
    try:
        time.sleep(1.5)  # n1 opens its link to n0 once it has a client
        assert units.act(units.n0, "dvt-web.service", "start").json()["job_result"] == "done"

        def started(seen: list[dict[str, Any]]) -> bool:
            return any(m.get("unit") == "dvt-web.service" and m.get("active_state") == "active" for m in seen)

        seen = collect(ws, started)
        event = next(m for m in seen if m.get("unit") == "dvt-web.service" and m.get("active_state") == "active")
        assert event["type"] == "unit"
        assert event["node"] == "n0"
        assert event["sub_state"] == "running"
        assert event["permission"] == "units:read"
        units.box.run(["systemctl", "stop", "dvt-web.service"])  # a change made outside the API arrives too
        collect(ws, lambda s: any(m.get("unit") == "dvt-web.service" and m.get("active_state") == "inactive"
                                  for m in s))  # fmt: skip
    finally:
        ws.close()


def test_the_cli_lists_shows_and_acts_through_another_node(units: Units) -> None:
    n1 = units.n1
    base = [sys.executable, "-m", "appliance", "unit"]
    conn = ["--url", n1.url, "--ca", str(n1.data_dir / "pki" / "ca.crt"), "--token", str(n1.token)]

    def cli(*args: str) -> Any:
        return n1.host.run([*base, *args, *conn], timeout=60)

    listed = cli("list", "--node", "n0", "--type", "service", "--pattern", "dbus*")
    assert listed.returncode == 0, listed.stderr
    assert "dbus.service" in listed.stdout
    started = cli("start", "dvt-web.service", "--node", "n0")
    assert started.returncode == 0, started.stderr
    assert "start dvt-web.service on n0: done; now active (running)" in started.stdout
    shown = cli("show", "dvt-web.service", "--node", "n0", "--json")
    assert json.loads(shown.stdout)["active_state"] == "active"
    assert cli("stop", "dvt-web.service", "--node", "n0").returncode == 0
    failed = cli("start", "dvt-fail.service", "--node", "n0")
    assert failed.returncode == 1
    assert "job failed, unit result exit-code" in failed.stdout
    refused = cli("stop", "dbus.service", "--node", "n0")
    assert refused.returncode == 1
    assert refused.stderr.startswith("debvisor: 409: dbus.service is protected")
    assert len(refused.stderr.strip().splitlines()) == 1
    bad = cli("show", "bad name", "--node", "n0")
    assert bad.returncode == 1
    assert bad.stderr.startswith("debvisor: 422:")


def _client_as(node: ClusterNode, token: str) -> Any:
    from tests.nsclient import NamespaceClient

    return NamespaceClient(node.host.netns, node.url, node.data_dir / "pki" / "ca.crt", token)


def test_the_unit_list_follows_changes_made_outside_the_api(units: Units) -> None:
    """Lists are answered from the last one until a signal says something changed."""
    client = units.n0.client()

    def web_state() -> str:
        found = client.get("/api/v1/nodes/n0/units", params={"pattern": "dvt-web.service"}).json()
        return str(found[0]["active_state"]) if found else "unloaded"

    before = web_state()
    assert web_state() == before  # answered from memory: nothing changed
    action, after = ("stop", ("inactive", "unloaded")) if before == "active" else ("start", ("active",))
    units.box.run(["systemctl", action, "dvt-web.service"])
    wait_until(lambda: web_state() in after, 2, interval=0.02, what=f"the list to show dvt-web {after}")


def test_fuzzing_the_unit_routes_finds_no_server_error_and_nothing_undocumented(units: Units, tmp_path: Path) -> None:
    """The schema-driven fuzzer of tests/integration/test_openapi_fuzz.py, on the unit routes of
    the node that manages real systemd (last in this module: it may change the container)."""
    require(SCHEMATHESIS is not None, "schemathesis is not installed (pip install -e .[dev])")
    assert SCHEMATHESIS is not None
    n0 = units.n0
    # every generated request names n0 (a random node name is a 404 before any unit code runs)
    (tmp_path / "schemathesis.toml").write_text('[parameters]\n"path.name" = "n0"\n')
    run = n0.host.run(
        [
            *("env", "-C", str(tmp_path)), SCHEMATHESIS, "run", f"{n0.url}/api/v1/openapi.json",
            "--tls-verify", str(n0.data_dir / "pki" / "ca.crt"), "--header", f"Authorization: Bearer {n0.token}",
            "--checks", CHECKS, "--phases", "examples,coverage,fuzzing", "--max-examples", str(MAX_EXAMPLES),
            "--seed", str(SEED), "--workers", "1", "--no-shrink", "--include-tag", UNITS_TAG,
        ],
        timeout=180,
    )  # fmt: skip
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-8000:]
    assert "Tested: 5" in output
    assert "repeatedly returned 404" not in output
    assert units.box.state() in ("running", "degraded")
