"""The public /pxe routes: scripts by MAC, boot files with byte ranges, nothing when disabled, and
the machines' hardware reports (bounded, typed, rate-limited, only from MACs that booted here)."""

from __future__ import annotations

from pathlib import Path

import pytest
from litestar import Litestar
from litestar.exceptions import HTTPException
from litestar.testing import TestClient

from appliance.api.problems import EXCEPTION_HANDLERS
from appliance.auth.throttle import RateLimiter
from pxe.dnsmasq import Mode
from pxe.http import decode_report, pxe_routes, standalone_problem
from pxe.service import PxeMachine, PxeService, PxeSettings

MAC = "52:54:00:aa:bb:01"


@pytest.fixture
def files(tmp_path: Path) -> Path:
    (tmp_path / "vmlinuz").write_bytes(b"K" * 10)
    (tmp_path / "initrd.img").write_bytes(bytes(range(100)))
    (tmp_path / "secret").write_bytes(b"no")
    return tmp_path


def client(
    files: Path, enabled: bool = True, limiter: RateLimiter | None = None, recorder: RateLimiter | None = None
) -> tuple[TestClient[Litestar], PxeService]:
    config = PxeSettings(
        enabled=enabled,
        interface="eth0",
        mode=Mode.FULL,
        range_start="10.9.0.100",
        range_end="10.9.0.200",
        http_url="http://10.9.0.1:8080",
        machines={"52-54-00-AA-BB-01": PxeMachine(name="rack1-n1")},
    )
    service = PxeService(config, boot_files=files, state_dir=files / "state", run_dnsmasq=False, clock=lambda: 100.0)
    app = Litestar(
        route_handlers=[
            pxe_routes(service, limiter=limiter or RateLimiter(0, 0), recorder=recorder or RateLimiter(0, 0))
        ],
        exception_handlers=EXCEPTION_HANDLERS,  # type: ignore[arg-type]
    )
    return TestClient(app, base_url="http://10.9.0.1:8080"), service


def test_the_first_script_chains_to_one_naming_the_mac(files: Path) -> None:
    test_client, _ = client(files)
    with test_client as c:
        answer = c.get("/pxe/boot.ipxe")
    assert answer.status_code == 200
    assert answer.text == "#!ipxe\nchain http://10.9.0.1:8080/pxe/boot.ipxe?mac=${netX/mac}\n"


def test_a_known_machine_gets_its_settings_and_is_listed(files: Path) -> None:
    test_client, service = client(files)
    with test_client as c:
        answer = c.get("/pxe/boot.ipxe", params={"mac": "52:54:00:AA:BB:01"})
    assert answer.status_code == 200
    assert "kernel http://10.9.0.1:8080/pxe/vmlinuz " in answer.text
    assert "fetch=http://10.9.0.1:8080/pxe/filesystem.squashfs" in answer.text
    assert "debvisor.name=rack1-n1 debvisor.enlist=" in answer.text
    assert "debvisor.join" not in answer.text
    assert "debvisor.enrol" not in answer.text  # no node behind it: no enrolment
    [seen] = service.seen()
    assert (seen.mac, seen.name, seen.last_seen, seen.state) == (MAC, "rack1-n1", 100.0, "known")


def test_a_bad_mac_gets_a_script_that_says_so(files: Path) -> None:
    test_client, service = client(files)
    with test_client as c:
        answer = c.get("/pxe/boot.ipxe", params={"mac": "${x}"})
    assert answer.status_code == 400
    assert answer.text.startswith("#!ipxe\necho DebVisor cannot boot this machine: ")
    assert "$" not in answer.text
    assert service.seen() == []


def test_boot_files_whole_and_by_range(files: Path) -> None:
    test_client, _ = client(files)
    with test_client as c:
        whole = c.get("/pxe/initrd.img")
        part = c.get("/pxe/initrd.img", headers={"range": "bytes=10-19"})
        last = c.get("/pxe/initrd.img", headers={"range": "bytes=-5"})
        open_ended = c.get("/pxe/initrd.img", headers={"range": "bytes=95-"})
        beyond = c.get("/pxe/initrd.img", headers={"range": "bytes=100-"})
    assert (whole.status_code, whole.content, whole.headers["accept-ranges"]) == (200, bytes(range(100)), "bytes")
    assert (part.status_code, part.content, part.headers["content-range"]) == (
        206,
        bytes(range(10, 20)),
        "bytes 10-19/100",
    )
    assert last.content == bytes(range(95, 100))
    assert open_ended.content == bytes(range(95, 100))
    assert (beyond.status_code, beyond.headers["content-range"]) == (416, "bytes */100")


def test_only_the_named_boot_files_are_served(files: Path) -> None:
    test_client, _ = client(files)
    with test_client as c:
        assert c.get("/pxe/secret").status_code == 404
        assert c.get("/pxe/..%2fsecret").status_code == 404
        assert c.get("/pxe/filesystem.squashfs").status_code == 404  # not built here


def test_nothing_is_served_when_pxe_is_disabled(files: Path) -> None:
    test_client, _ = client(files, enabled=False)
    with test_client as c:
        assert c.get("/pxe/boot.ipxe").status_code == 404
        assert c.get("/pxe/vmlinuz").status_code == 404


REPORT: dict[str, object] = {
    "mac": "52-54-00-AA-BB-01",
    "name": "rack1-n1",
    "cpu_model": "Test CPU",
    "cpu_count": 8,
    "memory_bytes": 32 << 30,
    "disks": [{"name": "nvme0n1", "size_bytes": 1 << 40, "model": "Fast", "serial": "S1", "rotational": False}],
    "nics": [{"name": "eno1", "mac": "52:54:00:aa:bb:01", "speed_mbps": 10000, "link": True}],
    "dmi": {"vendor": "ACME", "product": "R1", "serial": "SN1", "uuid": "u-1"},
    "version": "0.1.0",
}


def test_a_machine_that_booted_here_reports_its_inventory(files: Path) -> None:
    test_client, service = client(files)
    with test_client as c:
        c.get("/pxe/boot.ipxe", params={"mac": MAC})
        answer = c.post("/pxe/enlist", json=REPORT)
    assert answer.status_code == 204, answer.text
    [listed] = service.seen()
    assert (listed.state, listed.hardware and listed.hardware.disk_bytes) == ("enlisted", 1 << 40)
    detail = service.machine(MAC)
    assert detail is not None
    assert detail.inventory is not None
    assert (detail.inventory.dmi.vendor, detail.inventory.nics[0].speed_mbps) == ("ACME", 10000)


def test_a_mac_that_never_fetched_a_script_cannot_report(files: Path) -> None:
    test_client, service = client(files)
    with test_client as c:
        answer = c.post("/pxe/enlist", json=REPORT)
    assert answer.status_code == 404
    assert answer.headers["content-type"] == "application/problem+json"
    assert "has not fetched a boot script" in answer.json()["detail"]
    assert service.seen() == []


@pytest.mark.parametrize(
    ("change", "path"),
    [
        ({"owner": "x"}, "$.owner"),  # unknown field
        ({"dmi": {"vendor": "a", "colour": "red"}}, "$.dmi.colour"),
        ({"disks": [{"name": "sda", "size_bytes": 1, "secret": 1}]}, "$.disks[0].secret"),
        ({"mac": "not-a-mac"}, "$.mac"),
        ({"cpu_count": -1}, "$.cpu_count"),
        ({"cpu_model": "x" * 257}, "$.cpu_model"),
        ({"name": "evil\nline"}, "$.name"),  # control characters
        ({"nics": [{"name": "e", "mac": "52:54:00:aa:bb:01"}] * 65}, "$.nics"),  # too many
        ({"memory_bytes": "lots"}, "$.memory_bytes"),
    ],
)
def test_a_bad_report_is_refused_with_a_problem_naming_the_field(
    files: Path, change: dict[str, object], path: str
) -> None:
    test_client, service = client(files)
    with test_client as c:
        c.get("/pxe/boot.ipxe", params={"mac": MAC})
        answer = c.post("/pxe/enlist", json=REPORT | change)
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert [e["path"] for e in answer.json()["errors"]] == [path]
    assert service.seen()[0].state == "known"  # nothing stored


def test_a_report_that_is_not_json_or_too_big_is_refused(files: Path) -> None:
    test_client, _ = client(files)
    with test_client as c:
        c.get("/pxe/boot.ipxe", params={"mac": MAC})
        not_json = c.post("/pxe/enlist", content=b"{", headers={"content-type": "application/json"})
        too_big = c.post("/pxe/enlist", json=REPORT | {"padding": "x" * (64 * 1024)})
    assert (not_json.status_code, not_json.headers["content-type"]) == (400, "application/problem+json")
    assert too_big.status_code == 413


def test_reports_are_rate_limited_per_source_address(files: Path) -> None:
    now = [0.0]
    test_client, _ = client(files, limiter=RateLimiter(1 / 60, 2, lambda: now[0]))
    with test_client as c:
        c.get("/pxe/boot.ipxe", params={"mac": MAC})
        codes = [c.post("/pxe/enlist", json=REPORT).status_code for _ in range(3)]
        assert codes == [204, 204, 429]
        limited = c.post("/pxe/enlist", content=b"garbage")  # limited before the body is read
        assert (limited.status_code, int(limited.headers["retry-after"])) == (429, 60)
        now[0] += 60
        assert c.post("/pxe/enlist", json=REPORT).status_code == 204


def test_no_reports_while_pxe_is_disabled(files: Path) -> None:
    test_client, _ = client(files, enabled=False)
    with test_client as c:
        assert c.post("/pxe/enlist", json=REPORT).status_code == 404


def test_the_documented_report_is_one_the_server_accepts() -> None:
    example = Path(__file__).parents[3] / "docs" / "examples" / "pxe-enlist.json"
    report = decode_report(example.read_bytes())
    assert (report.mac, report.disks[0].rotational, report.nics[0].link) == ("52:54:00:98:00:50", False, True)
    assert example.read_text() in (example.parents[1] / "pxe.md").read_text()  # the page shows this very file


def test_a_host_making_up_macs_gets_only_a_few_boot_scripts_then_is_told_to_retry(files: Path) -> None:
    test_client, service = client(files, recorder=RateLimiter(1 / 60, 3, lambda: 0.0))
    with test_client as c:
        answers = [c.get("/pxe/boot.ipxe", params={"mac": f"52:54:00:00:00:{i:02x}"}) for i in range(6)]
    assert {a.status_code for a in answers} == {200}
    assert len(service.seen()) == 3
    assert ["kernel " in a.text for a in answers] == [True] * 3 + [False] * 3
    assert answers[5].text.endswith("sleep 30\nchain http://10.9.0.1:8080/pxe/boot.ipxe?mac=52:54:00:00:00:05\n")


def test_the_standalone_boot_server_refuses_with_the_same_problem_documents(files: Path) -> None:
    """`python -m pxe serve` has no node's handlers: its own renders the same problem+json."""
    _, service = client(files)
    app = Litestar(
        route_handlers=[pxe_routes(service, limiter=RateLimiter(0, 0), recorder=RateLimiter(0, 0))],
        exception_handlers={HTTPException: standalone_problem},
    )
    with TestClient(app, base_url="http://10.9.0.1:8080") as c:
        c.get("/pxe/boot.ipxe", params={"mac": MAC})
        answer = c.post("/pxe/enlist", json=REPORT | {"cpu_count": "many"})
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    problem = answer.json()
    assert (problem["type"], problem["title"], problem["status"]) == ("about:blank", "Unprocessable Entity", 422)
    assert [e["path"] for e in problem["errors"]] == ["$.cpu_count"]
    assert problem["instance"] == "/pxe/enlist"
