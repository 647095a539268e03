"""PXE enlistment on a real `debvisor serve --pxe-http 127.0.0.1:PORT` process: a machine that
fetches its script is listed as unknown, reports its inventory over the plain-HTTP listener, is
named by an operator (its next script carries the name), survives a restart of the node, and is
forgotten. A second node started with the boot server's `debvisor.enlist=` and `BOOTIF=` on its
kernel command line reports its own, real inventory.

PXE is enabled on `lo` in proxy mode, so the supervised dnsmasq only ever listens on loopback
(if it cannot start, it is restarted with back-off and nothing here depends on it). All traffic
goes to 127.0.0.1. No machine boots: the HTTP requests a booting machine makes are made here.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.kit.wait import wait_until
from tests.nodeproc import DEBVISOR, NodeProcess, free_port

pytestmark = pytest.mark.integration

MAC = "52:54:00:7e:00:01"
REPORTER_MAC = "52:54:00:7e:00:02"


@pytest.fixture
def boot_files(tmp_path: Path) -> Path:
    files = tmp_path / "files"
    files.mkdir()
    (files / "vmlinuz").write_bytes(b"kernel")
    return files


@pytest.fixture
def pxe_port() -> int:
    return free_port()


def _node(data: Path, port: int, files: Path, name: str = "boot") -> NodeProcess:
    return NodeProcess(data, name=name, extra_args=["--pxe-http", f"127.0.0.1:{port}", "--pxe-files", str(files)])


@pytest.fixture
def server(tmp_path: Path, pxe_port: int, boot_files: Path) -> Iterator[NodeProcess]:
    node = _node(tmp_path / "boot", pxe_port, boot_files).start()
    try:
        node.wait_ready()
        yield node
    finally:
        node.stop()


def _api(node: NodeProcess) -> str:
    return f"/api/v1/nodes/{node.name}/pxe"


def _enable(node: NodeProcess, port: int) -> None:
    config = {
        "enabled": True,
        "interface": "lo",
        "network": "127.0.0.0/8",
        "http_url": f"http://127.0.0.1:{port}",
    }
    with node.admin_client() as api:
        answer = api.put(_api(node), json=config)
    assert answer.status_code == 200, answer.text


REPORT = {
    "mac": MAC,
    "name": "debian",
    "cpu_model": "Test CPU",
    "cpu_count": 16,
    "memory_bytes": 64 << 30,
    "disks": [{"name": "sda", "size_bytes": 1 << 40, "model": "Disk", "serial": "S1", "rotational": True}],
    "nics": [{"name": "eno1", "mac": MAC, "speed_mbps": 1000, "link": True}],
    "dmi": {"vendor": "ACME", "product": "R1", "serial": "SN1", "uuid": "u-1"},
    "version": "0.1.0",
}


def test_an_unknown_machine_enlists_is_named_survives_a_restart_and_is_forgotten(
    tmp_path: Path, server: NodeProcess, pxe_port: int, boot_files: Path
) -> None:
    _enable(server, pxe_port)
    boot = httpx.Client(base_url=f"http://127.0.0.1:{pxe_port}", timeout=5.0)
    machines = f"{_api(server)}/machines"
    with boot, server.admin_client() as api:
        script = boot.get("/pxe/boot.ipxe", params={"mac": MAC})
        assert script.status_code == 200, script.text
        assert f"debvisor.enlist=http://127.0.0.1:{pxe_port}/pxe/enlist" in script.text
        assert "BOOTIF=01-52-54-00-7e-00-01" in script.text
        assert "debvisor.name=" not in script.text
        [listed] = api.get(machines).json()
        assert (listed["mac"], listed["state"], listed["ip"], listed["boots"]) == (MAC, "unknown", "127.0.0.1", 1)

        unseen = boot.post("/pxe/enlist", json=REPORT | {"mac": "52:54:00:7e:00:99"})
        assert unseen.status_code == 404
        assert "has not fetched a boot script" in unseen.json()["detail"]
        bad = boot.post("/pxe/enlist", json=REPORT | {"dmi": {"vendor": "x", "bios": "1.0"}})
        assert (bad.status_code, bad.headers["content-type"]) == (422, "application/problem+json")
        assert [e["path"] for e in bad.json()["errors"]] == ["$.dmi.bios"]
        good = boot.post("/pxe/enlist", json=REPORT)
        assert good.status_code == 204, good.text

        detail = api.get(f"{machines}/{MAC}").json()
        assert (detail["state"], detail["inventory"]["dmi"]["vendor"], detail["hardware"]["disk_bytes"]) == (
            "enlisted",
            "ACME",
            1 << 40,
        )

        user = {"name": "watcher", "role": "viewer", "password": "only looking here"}
        assert api.post("/api/v1/users", json=user).status_code == 201
        with server.client() as viewer:
            login = viewer.post("/api/v1/auth/login", json={"username": "watcher", "password": "only looking here"})
            csrf = {"X-CSRF-Token": login.json()["csrf_token"]}
            assert viewer.get(machines).status_code == 200
            assert viewer.put(f"{machines}/{MAC}", headers=csrf, json={"name": "rack1-n7"}).status_code == 403
            assert viewer.delete(f"{machines}/{MAC}", headers=csrf).status_code == 403

        refused = api.put(f"{machines}/{MAC}", json={"name": "rack1-n7", "join": "dvj_not_a_real_token"})
        assert refused.status_code == 422  # settings hold no join token: machines enrol instead
        named = api.put(f"{machines}/{MAC}", json={"name": "rack1-n7"})
        assert named.status_code == 200, named.text
        named_script = boot.get("/pxe/boot.ipxe", params={"mac": MAC}).text
        assert "debvisor.name=rack1-n7 debvisor.enrol=dve_" in named_script

    assert server.stop() == 0
    restarted = _node(server.data_dir, pxe_port, boot_files).start()
    try:
        restarted.wait_ready()
        with restarted.admin_client() as api:
            [listed] = api.get(machines).json()
            assert (listed["mac"], listed["name"], listed["state"], listed["boots"]) == (MAC, "rack1-n7", "enlisted", 2)
            assert api.get(f"{machines}/{MAC}").json()["inventory"]["cpu_count"] == 16
            assert api.delete(f"{machines}/{MAC}").status_code == 204
            assert api.get(machines).json() == []
            assert api.get(f"{machines}/{MAC}").status_code == 404
            assert MAC not in api.get(_api(restarted)).json()["machines"]
            audit = api.get("/api/v1/audit", params={"action": "pxe."}).json()
    finally:
        restarted.stop()
    text = restarted.stderr() + restarted.stdout() + server.stderr()
    assert "not_a_real_token" not in text  # a join token is never logged
    assert "not_a_real_token" not in str(audit)


def test_a_node_booted_with_enlist_on_its_command_line_reports_its_real_inventory(
    tmp_path: Path, server: NodeProcess, pxe_port: int
) -> None:
    _enable(server, pxe_port)
    with httpx.Client(base_url=f"http://127.0.0.1:{pxe_port}", timeout=5.0) as boot:
        script = boot.get("/pxe/boot.ipxe", params={"mac": REPORTER_MAC}).text
    # The kernel command line the script renders, as the booted machine would see it in /proc/cmdline,
    # less its enrolment credential: this machine founds its own cluster and only reports
    # (enrolment: tests/integration/security/test_pxe_attacks.py).
    kernel_line = script.splitlines()[1].removeprefix("kernel ").split(" ", 1)[1]
    kernel_line = " ".join(a for a in kernel_line.split() if not a.startswith("debvisor.enrol="))
    cmdline = tmp_path / "cmdline"
    cmdline.write_text(kernel_line + "\n")
    reporter = NodeProcess(tmp_path / "reporter", name="reporter", extra_args=["--boot-params", str(cmdline)])
    with reporter, server.admin_client() as api:
        reporter.wait_ready()
        url = f"{_api(server)}/machines/{REPORTER_MAC}"
        wait_until(lambda: api.get(url).json()["state"] == "enlisted", 20.0, 0.2, what="the machine enlisted")
        # The machine logs its report once the server's answer is back: the server lists it as
        # enlisted before that, and reading the log then (or after stopping it) raced the line.
        wait_until(lambda: "reported this machine's inventory" in reporter.stderr(), 20.0, 0.2, what="its log line")
        inventory = api.get(url).json()["inventory"]
        with reporter.admin_client() as own:
            facts = own.get("/api/v1/node").json()
    assert (inventory["name"], inventory["version"]) == ("reporter", facts["version"])
    assert (inventory["cpu_count"], inventory["cpu_model"]) == (facts["cpu"]["count"], facts["cpu"]["model"])
    assert inventory["memory_bytes"] == facts["memory"]["total_bytes"]


def test_the_cli_sets_one_machine_field_and_keeps_the_others(server: NodeProcess, pxe_port: int) -> None:
    # docs/pxe.md: `debvisor pxe set NODE MAC --extra ...` boots a named machine into rescue and
    # keeps its name; `--clear extra` puts it back. Through the real CLI, against the real node.
    _enable(server, pxe_port)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEBVISOR_")}
    env |= {"DEBVISOR_URL": server.url, "DEBVISOR_CA": str(server.data_dir / "pki" / "ca.crt")}
    env["DEBVISOR_TOKEN"] = server.admin_token()

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*DEBVISOR, "pxe", "set", server.name, MAC, *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=30,
            check=False,
        )

    boot = httpx.Client(base_url=f"http://127.0.0.1:{pxe_port}", timeout=5.0)
    with boot, server.admin_client() as api:
        assert api.put(f"{_api(server)}/machines/{MAC}", json={"name": "rack1-n7"}).status_code == 200
        rescue = cli("--extra", "systemd.unit=rescue.target")
        assert rescue.returncode == 0, rescue.stderr
        assert rescue.stdout.strip() == f"{MAC}: name rack1-n7, ip -, extra systemd.unit=rescue.target"
        script = boot.get("/pxe/boot.ipxe", params={"mac": MAC}).text
        assert "debvisor.name=rack1-n7" in script
        assert "systemd.unit=rescue.target" in script
        bad = cli("--name", "Bad_Name")
        assert bad.returncode == 1
        assert "invalid machine settings" in bad.stderr
        assert len(bad.stderr.strip().splitlines()) == 1
        back = cli("--clear", "extra")
        assert back.returncode == 0, back.stderr
        script = boot.get("/pxe/boot.ipxe", params={"mac": MAC}).text
        assert "debvisor.name=rack1-n7" in script
        assert "systemd.unit=rescue.target" not in script
        audit = api.get("/api/v1/audit", params={"action": "pxe.machine.patch"}).json()["entries"]
    assert sorted((e["outcome"], e["detail"]) for e in audit) == [
        ("failed", ""),
        ("success", "changed extra; name rack1-n7"),
        ("success", "changed extra; name rack1-n7"),
    ]
