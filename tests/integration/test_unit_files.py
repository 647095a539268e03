"""Unit files and transient units against real systemd as PID 1 (tests/kit/nspawn.Container).

A real node runs on the host and manages the container from outside (`--system-bus` = the
container's bus, `--host-root` = its root through /proc/LEADER/root), as a node manages its
own machine: it writes the files there, verifies them with the host's `systemd-analyze` (the
same systemd 252 as inside) and reloads the container's systemd over its bus. The test
checks each result from inside the container (`systemctl`, `journalctl`, the files).
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from appliance.units.bus import SystemBus
from appliance.units.unitfiles import UnitFileError, UnitFiles
from tests.kit.nspawn import Container, debian_root
from tests.kit.wait import wait_until
from tests.nodeproc import DEBVISOR, NodeProcess

pytestmark = [pytest.mark.integration, pytest.mark.privileged, pytest.mark.systemd]

NODE = "n1"
UNITS = f"/api/v1/nodes/{NODE}/units"
HELLO = """\
[Unit]
Description=debvisor test hello

[Service]
Type=oneshot
Environment=GREETING=hello API_TOKEN=s3cret-value
ExecStart=/bin/sh -c 'echo "$GREETING from a unit file"'

[Install]
WantedBy=multi-user.target
"""


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Container]:
    with Container(debian_root(), tmp_path_factory.mktemp("box")) as container:
        yield container


@pytest.fixture(scope="module")
def node(box: Container, tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    data = tmp_path_factory.mktemp("node") / "data"
    args = ["--system-bus", box.bus_address(), "--host-root", str(box.path("/"))]
    process = NodeProcess(data, name=NODE, extra_args=args).start()
    try:
        process.wait_ready()
        yield process
    finally:
        process.stop()


@pytest.fixture
def api(node: NodeProcess) -> Iterator[httpx.Client]:
    with node.admin_client(timeout=60.0) as client:
        yield client


def _show(box: Container, unit: str, prop: str) -> str:
    return box.run(["systemctl", "show", "-P", prop, unit]).stdout.strip()


def _audit(api: httpx.Client, action: str) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = api.get("/api/v1/audit", params={"action": action}).json()["entries"]
    return entries


def test_a_service_is_created_verified_read_and_reverted(box: Container, api: httpx.Client) -> None:
    unit = "dvt-hello.service"
    created = api.put(f"{UNITS}/{unit}/file", json={"content": HELLO})
    assert created.status_code == 200, created.text
    assert created.json() | {"diff": ""} == {
        "unit": unit,
        "path": f"/etc/systemd/system/{unit}",
        "action": "created",
        "diff": "",
        "load_state": "loaded",
    }
    assert box.run(["cat", f"/etc/systemd/system/{unit}"]).stdout == HELLO
    assert _show(box, unit, "Description") == "debvisor test hello"  # systemd reloaded it
    box.run(["systemctl", "start", unit])
    assert "hello from a unit file" in box.run(["journalctl", "-u", unit, "-o", "cat"]).stdout

    # The diff answered and audited names the variables but never a secret value.
    diff = created.json()["diff"]
    assert "+Environment=GREETING=<redacted> API_TOKEN=<redacted>" in diff
    [entry] = _audit(api, "unitfile.write")
    assert (entry["outcome"], entry["target"]) == ("success", f"node {NODE} unit {unit}")
    assert entry["detail"].startswith(f"created /etc/systemd/system/{unit}\n--- /dev/null")
    assert "s3cret" not in str(_audit(api, "unitfile."))
    assert "s3cret" not in diff

    read = api.get(f"{UNITS}/{unit}/file")
    assert read.status_code == 200
    assert (read.json()["content"], read.json()["shipped"], read.json()["dropins"]) == (HELLO, False, [])

    same = api.put(f"{UNITS}/{unit}/file", json={"content": HELLO})
    assert same.json()["action"] == "unchanged"
    replaced = api.put(f"{UNITS}/{unit}/file", json={"content": HELLO.replace("test hello", "test hi")})
    assert replaced.json()["action"] == "replaced"
    assert "-Description=debvisor test hello\n+Description=debvisor test hi\n" in replaced.json()["diff"]
    assert _show(box, unit, "Description") == "debvisor test hi"

    reverted = api.delete(f"{UNITS}/{unit}/file")
    assert (reverted.status_code, reverted.json()["action"]) == (200, "removed"), reverted.text
    assert box.run(["test", "-e", f"/etc/systemd/system/{unit}"], check=False).returncode == 1
    assert _show(box, unit, "LoadState") == "not-found"
    assert api.delete(f"{UNITS}/{unit}/file").status_code == 404
    assert api.get(f"{UNITS}/{unit}/file").status_code == 404


@pytest.mark.parametrize(
    ("content", "says"),
    [
        ("[Unit]\nDescription=x\n[Service]\nExecStart=/nonexistent/program\n", "is not an executable file"),
        ("[Unit]\nDescription=x\n[Service]\nExecStart=/usr/bin/nonexistent\n", "is not an executable file"),
        ("[Unit]\nDescription=x\n[Service]\nExecStart=/bin/true\nExecStrat=/bin/true\n", "Unknown key"),
        ("[Service]\nType=sometimes\nExecStart=/bin/true\n", "Failed to parse service type"),
        ("ExecStart=/bin/true\n", "line 1: a setting before any [Section]"),
        ("[Service]\nthis is not a setting\n", "line 2: expected Key=value"),
        ("[Timer]\nOnCalendar=daily\n", "section [Timer] is not one of a service's"),
    ],
)
def test_content_systemd_refuses_is_never_written(box: Container, api: httpx.Client, content: str, says: str) -> None:
    refused = api.put(f"{UNITS}/dvt-broken.service/file", json={"content": content})
    assert (refused.status_code, refused.headers["content-type"]) == (422, "application/problem+json"), refused.text
    errors = refused.json()["errors"]
    assert {e["path"] for e in errors} == {"$.content"}
    assert any(says in e["message"] for e in errors), errors
    assert "/run/debvisor" not in refused.text  # messages name the file's real path, not the staged copy
    assert box.run(["test", "-e", "/etc/systemd/system/dvt-broken.service"], check=False).returncode == 1
    assert box.run(["ls", "-A", "/run/debvisor/verify"], check=False).stdout == ""  # staging cleaned


def test_systemds_advice_does_not_refuse_a_file(box: Container, api: httpx.Client) -> None:
    content = "[Service]\nType=oneshot\nUser=nobody\nExecStart=/bin/true\n"  # "not safe", says verify
    answer = api.put(f"{UNITS}/dvt-nobody.service/file", json={"content": content})
    assert answer.status_code == 200, answer.text
    assert api.delete(f"{UNITS}/dvt-nobody.service/file").status_code == 200


def test_a_timer_is_verified_too(box: Container, api: httpx.Client) -> None:
    bad = api.put(f"{UNITS}/dvt-tick.timer/file", json={"content": "[Timer]\nOnCalendar=someday\n"})
    assert bad.status_code == 422
    assert any("calendar" in e["message"] for e in bad.json()["errors"]), bad.json()
    good = api.put(f"{UNITS}/dvt-tick.timer/file", json={"content": "[Timer]\nOnCalendar=daily\n"})
    assert good.status_code == 200, good.text
    assert _show(box, "dvt-tick.timer", "LoadState") == "loaded"
    assert api.delete(f"{UNITS}/dvt-tick.timer/file").status_code == 200


def test_a_shipped_unit_is_edited_with_a_drop_in_and_reverted(box: Container, api: httpx.Client) -> None:
    unit = "dvt-shipped.service"
    box.run(
        ["sh", "-c", f"printf '[Unit]\\nDescription=as shipped\\n[Service]\\nExecStart=/bin/true\\n' "
         f"> /usr/lib/systemd/system/{unit} && systemctl daemon-reload"]
    )  # fmt: skip
    whole = api.put(f"{UNITS}/{unit}/file", json={"content": "[Service]\nExecStart=/bin/false\n"})
    assert (whole.status_code, whole.headers["content-type"]) == (409, "application/problem+json")
    assert "drop-in" in whole.json()["detail"]
    assert box.run(["test", "-e", f"/etc/systemd/system/{unit}"], check=False).returncode == 1

    override = api.put(
        f"{UNITS}/{unit}/file", json={"content": "[Unit]\nDescription=overridden\n", "dropin": "50-debvisor"}
    )
    assert override.status_code == 200, override.text
    dropin = f"/etc/systemd/system/{unit}.d/50-debvisor.conf"
    assert override.json()["path"] == dropin
    assert _show(box, unit, "Description") == "overridden"
    view = api.get(f"{UNITS}/{unit}/file").json()
    assert (view["path"], view["shipped"], view["content"]) == (
        f"/usr/lib/systemd/system/{unit}",
        True,
        "[Unit]\nDescription=as shipped\n[Service]\nExecStart=/bin/true\n",
    )
    assert [(d["name"], d["path"]) for d in view["dropins"]] == [("50-debvisor.conf", dropin)]

    bad_name = api.put(f"{UNITS}/{unit}/file", json={"content": "[Unit]\n", "dropin": "../../evil"})
    assert (bad_name.status_code, bad_name.json()["errors"][0]["path"]) == (422, "$.dropin")

    assert api.delete(f"{UNITS}/{unit}/file").json()["path"] == dropin  # the default drop-in
    assert _show(box, unit, "Description") == "as shipped"
    assert box.run(["test", "-e", f"/etc/systemd/system/{unit}.d"], check=False).returncode == 1


def test_a_template_and_an_instance_override(box: Container, api: httpx.Client) -> None:
    template = "[Unit]\nDescription=worker %i\n[Service]\nType=oneshot\nExecStart=/bin/echo %i\n"
    assert api.put(f"{UNITS}/dvt-worker@.service/file", json={"content": template}).status_code == 200
    assert _show(box, "dvt-worker@one.service", "Description") == "worker one"
    override = {"content": "[Unit]\nDescription=the first worker\n", "dropin": "50-debvisor"}
    answer = api.put(f"{UNITS}/dvt-worker@one.service/file", json=override)
    assert (answer.status_code, answer.json()["load_state"]) == (200, "loaded"), answer.text
    assert _show(box, "dvt-worker@one.service", "Description") == "the first worker"
    assert _show(box, "dvt-worker@two.service", "Description") == "worker two"
    view = api.get(f"{UNITS}/dvt-worker@one.service/file").json()
    assert view["path"] == "/etc/systemd/system/dvt-worker@.service"
    assert api.delete(f"{UNITS}/dvt-worker@one.service/file").status_code == 200
    assert api.delete(f"{UNITS}/dvt-worker@.service/file").status_code == 200
    assert _show(box, "dvt-worker@one.service", "LoadState") == "not-found"


def test_names_and_unknown_units_are_refused(api: httpx.Client) -> None:
    for name, status in (("bad name.service", 422), ("dvt.socket", 422), ("dvt@.timer", 404)):
        answer = api.get(f"{UNITS}/{name}/file")
        assert answer.status_code == status, (name, answer.text)
    answer = api.put(f"{UNITS}/dvt-nothing.service/file", json={"content": "[Unit]\n", "dropin": "x"})
    assert answer.status_code == 404  # a drop-in needs a unit to override
    assert api.get(f"{UNITS}/dvt-nothing.service/file").status_code == 404


def test_a_change_systemd_will_not_load_is_put_back(box: Container) -> None:
    """The reload guard itself, against real systemd: with verification switched off (a
    verifier that passes everything), content systemd refuses at load is written, the unit
    shows a bad load state after the reload, and the previous file comes back."""

    class Accepting:
        async def verify(self, *_: object) -> list[str]:
            return []

    import asyncio

    unit = "dvt-guarded.service"
    good = "[Unit]\nDescription=good\n[Service]\nExecStart=/bin/true\n"
    broken = "[Unit]\nDescription=broken\n[Service]\nExecStart=relative/program\n"

    async def scenario() -> tuple[UnitFileError, UnitFileError]:
        bus = SystemBus(box.bus_address())
        files = UnitFiles(box.path("/"), bus, verifier=Accepting())  # type: ignore[arg-type]
        try:
            await files.write(unit, good)
            with pytest.raises(UnitFileError) as replaced:
                await files.write(unit, broken)
            with pytest.raises(UnitFileError) as created:
                await files.write("dvt-guarded-new.service", broken)
            return replaced.value, created.value
        finally:
            await bus.close()

    replaced, created = asyncio.run(scenario())
    assert replaced.status == 422
    assert "bad-setting" in str(replaced)
    assert "put back" in str(replaced)
    assert box.run(["cat", f"/etc/systemd/system/{unit}"]).stdout == good
    assert (_show(box, unit, "LoadState"), _show(box, unit, "Description")) == ("loaded", "good")
    assert created.status == 422
    assert box.run(["test", "-e", "/etc/systemd/system/dvt-guarded-new.service"], check=False).returncode == 1
    assert _show(box, "dvt-guarded-new.service", "LoadState") == "not-found"
    box.run(["sh", "-c", f"rm /etc/systemd/system/{unit} && systemctl daemon-reload"])


def test_a_transient_command_runs_and_its_result_is_reported(box: Container, api: httpx.Client) -> None:
    ran = api.post(f"{UNITS}/transient", json={"name": "greet", "command": ["/bin/sh", "-c", "echo transient says hi"]})
    assert ran.status_code == 200, ran.text
    assert ran.json() | {"active_state": None} == {
        "unit": "debvisor-run-greet.service",
        "job": "done",
        "result": "success",
        "exit_status": 0,
        "active_state": None,
        "timer": None,
    }
    logged = box.run(["journalctl", "-u", "debvisor-run-greet.service", "-o", "cat"]).stdout
    assert "transient says hi" in logged

    failed = api.post(f"{UNITS}/transient", json={"name": "fail", "command": ["/bin/sh", "-c", "exit 3"]})
    assert failed.status_code == 200, failed.text
    assert (failed.json()["job"], failed.json()["result"], failed.json()["exit_status"]) == ("failed", "exit-code", 3)
    assert _show(box, "debvisor-run-fail.service", "ActiveState") == "failed"
    again = api.post(f"{UNITS}/transient", json={"name": "fail", "command": ["/bin/true"]})  # failed one reset
    assert (again.status_code, again.json()["job"]) == (200, "done"), again.text

    slow = api.post(f"{UNITS}/transient", json={"name": "slow", "command": ["/bin/sleep", "30"], "wait_seconds": 0.5})
    assert (slow.status_code, slow.json()["job"]) == (200, "running"), slow.text
    busy = api.post(f"{UNITS}/transient", json={"name": "slow", "command": ["/bin/true"]})
    assert (busy.status_code, busy.headers["content-type"]) == (409, "application/problem+json"), busy.text
    box.run(["systemctl", "stop", "debvisor-run-slow.service"])

    timed = api.post(
        f"{UNITS}/transient",
        json={"name": "later", "command": ["/bin/sh", "-c", "echo timer fired"], "on_active_sec": 1},
    )
    assert timed.status_code == 200, timed.text
    assert (timed.json()["job"], timed.json()["timer"]) == ("scheduled", "debvisor-run-later.timer")
    try:
        wait_until(
            lambda: "timer fired" in box.run(["journalctl", "-u", "debvisor-run-later.service", "-o", "cat"]).stdout,
            timeout=15,
            what="the transient timer to run its service",
            ignore=(),
        )
    except Exception:
        print(
            box.run(
                ["systemctl", "status", "debvisor-run-later.timer", "debvisor-run-later.service"], check=False
            ).stdout
        )
        print(box.run(["journalctl", "-n", "40", "--no-pager", "-o", "short-monotonic"], check=False).stdout)
        raise

    for body, path in (
        ({"name": "Bad Name", "command": ["/bin/true"]}, "$.name"),
        ({"name": "rel", "command": ["true"]}, "$.command"),
        ({"name": "cal", "command": ["/bin/true"], "on_calendar": "someday"}, None),
    ):
        refused = api.post(f"{UNITS}/transient", json=body)
        assert (refused.status_code, refused.headers["content-type"]) == (422, "application/problem+json"), body
        if path is not None:
            assert refused.json()["errors"][0]["path"] == path
    [entry, *_] = _audit(api, "unit.run")
    assert entry["target"].startswith(f"node {NODE} run ")


def test_only_admins_edit_unit_files_or_run_commands(box: Container, node: NodeProcess, api: httpx.Client) -> None:
    user = {"name": "ops", "role": "operator", "password": "operating things"}
    assert api.post("/api/v1/users", json=user).status_code == 201
    with node.client() as operator:
        login = operator.post("/api/v1/auth/login", json={"username": "ops", "password": "operating things"})
        operator.headers["X-CSRF-Token"] = login.json()["csrf_token"]
        answers = [
            operator.get(f"{UNITS}/dvt-op.service/file"),
            operator.put(f"{UNITS}/dvt-op.service/file", json={"content": "[Service]\nExecStart=/bin/true\n"}),
            operator.delete(f"{UNITS}/dvt-op.service/file"),
            operator.post(f"{UNITS}/transient", json={"name": "op", "command": ["/bin/touch", "/root/op-ran"]}),
        ]
    assert [(a.status_code, a.headers["content-type"]) for a in answers] == [(403, "application/problem+json")] * 4
    assert box.run(["test", "-e", "/etc/systemd/system/dvt-op.service"], check=False).returncode == 1
    time.sleep(0.2)
    assert box.run(["test", "-e", "/root/op-ran"], check=False).returncode == 1
    denied = [e for e in _audit(api, "unit*") if e["user"] == "ops"]
    assert {e["outcome"] for e in denied} == {"denied"}
    assert len(denied) >= 3


def test_the_cli_creates_edits_cats_reverts_and_runs(box: Container, node: NodeProcess) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEBVISOR_")}
    env |= {"DEBVISOR_URL": node.url, "DEBVISOR_CA": str(node.data_dir / "pki" / "ca.crt")}
    env["DEBVISOR_TOKEN"] = node.admin_token()

    def cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*DEBVISOR, "unit", *args], input=stdin, capture_output=True, text=True, env=env, timeout=60, check=False
        )

    unit = "dvt-cli.service"
    created = cli("create", unit, "--node", NODE, "--file", "-", stdin="[Service]\nType=oneshot\nExecStart=/bin/true\n")
    assert created.returncode == 0, created.stderr
    assert created.stdout.startswith(f"created /etc/systemd/system/{unit} (load state loaded)\n--- /dev/null\n")
    edited = cli("edit", unit, "--node", NODE, "--file", "-", stdin="[Unit]\nDescription=from the cli\n")
    assert edited.returncode == 0, edited.stderr
    assert _show(box, unit, "Description") == "from the cli"
    cat = cli("cat", unit, "--node", NODE)
    assert cat.stdout == (
        f"# /etc/systemd/system/{unit}\n[Service]\nType=oneshot\nExecStart=/bin/true\n\n"
        f"# /etc/systemd/system/{unit}.d/50-debvisor.conf\n[Unit]\nDescription=from the cli\n"
    )
    broken = cli("edit", unit, "--node", NODE, "--file", "-", stdin="[Service]\nType=sometimes\n")
    assert broken.returncode == 1
    assert broken.stderr.startswith("debvisor: 422: systemd-analyze verify refused"), broken.stderr
    assert len(broken.stderr.strip().splitlines()) == 1
    assert cli("revert", unit, "--node", NODE).stdout.startswith(
        f"removed /etc/systemd/system/{unit}.d/50-debvisor.conf"
    )
    assert cli("revert", unit, "--node", NODE).stdout.startswith(f"removed /etc/systemd/system/{unit}\n")

    ok = cli("run", "--node", NODE, "cli-ok", "--", "/bin/sh", "-c", "echo from the cli run")
    assert (ok.returncode, ok.stdout) == (0, "debvisor-run-cli-ok.service: done (success, exit status 0)\n")
    failed = cli("run", "--node", NODE, "cli-fail", "--", "/bin/false")
    assert failed.returncode == 1
    assert failed.stdout == "debvisor-run-cli-fail.service: failed (exit-code, exit status 1)\n"


def test_through_another_node_the_change_is_made_at_the_target_and_audited_at_both(
    box: Container, node: NodeProcess, api: httpx.Client, tmp_path: Path
) -> None:
    api.get("/api/v1/nodes")  # the admin token exists before the second node joins: it receives it
    token = subprocess.run(
        [*DEBVISOR, "token", "create", "--data-dir", str(node.data_dir)],
        capture_output=True, text=True, check=True, timeout=30,
    ).stdout.strip()  # fmt: skip
    with NodeProcess(tmp_path / "n2", name="n2", extra_args=["--join", token]) as other:
        other.wait_ready()
        client = httpx.Client(base_url=other.url, verify=node.ssl_context(), timeout=60.0)
        client.headers["Authorization"] = f"Bearer {node.admin_token()}"
        with client:
            wait_until(lambda: client.get(f"/api/v1/nodes/{NODE}").status_code == 200, timeout=30, what="n2 to see n1")
            unit = "dvt-remote.service"
            content = "[Unit]\nDescription=written through n2\n[Service]\nExecStart=/bin/true\n"
            written = client.put(f"{UNITS}/{unit}/file", json={"content": content})
            assert written.status_code == 200, written.text
            assert box.run(["cat", f"/etc/systemd/system/{unit}"]).stdout == content
            ran = client.post(f"{UNITS}/transient", json={"name": "remote", "command": ["/bin/true"]})
            assert (ran.status_code, ran.json()["job"]) == (200, "done"), ran.text
            assert client.delete(f"{UNITS}/{unit}/file").status_code == 200
            here = client.get("/api/v1/audit", params={"action": "unitfile.write", "node": "n2"}).json()["entries"]
        there = [e for e in _audit(api, "unitfile.write") if e["target"].endswith(unit)]
        assert [e["outcome"] for e in here] == ["success"]  # the receiving node's own entry
        assert [(e["outcome"], e["forwarded_by"]) for e in there] == [("success", "n2")]
        assert "+Description=written through n2" in there[0]["detail"]  # the target has the diff
