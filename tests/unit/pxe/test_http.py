"""The public /pxe routes: scripts by MAC, boot files with byte ranges, nothing when disabled."""

from __future__ import annotations

from pathlib import Path

import pytest
from litestar import Litestar
from litestar.testing import TestClient

from pxe.dnsmasq import Mode
from pxe.http import pxe_routes
from pxe.service import PxeConfig, PxeMachine, PxeService

MAC = "52:54:00:aa:bb:01"


@pytest.fixture
def files(tmp_path: Path) -> Path:
    (tmp_path / "vmlinuz").write_bytes(b"K" * 10)
    (tmp_path / "initrd.img").write_bytes(bytes(range(100)))
    (tmp_path / "secret").write_bytes(b"no")
    return tmp_path


def client(files: Path, enabled: bool = True) -> tuple[TestClient[Litestar], PxeService]:
    config = PxeConfig(
        enabled=enabled,
        interface="eth0",
        mode=Mode.FULL,
        range_start="10.9.0.100",
        range_end="10.9.0.200",
        http_url="http://10.9.0.1:8080",
        machines={"52-54-00-AA-BB-01": PxeMachine(name="rack1-n1", join="dvj1.x_y")},
    )
    service = PxeService(config, boot_files=files, state_dir=files / "state", run_dnsmasq=False, clock=lambda: 100.0)
    app = Litestar(route_handlers=[pxe_routes(service)])
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
    assert "debvisor.name=rack1-n1 debvisor.join=dvj1.x_y" in answer.text
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
