"""The enlistment report: collected from a fake /proc and /sys tree, and posted with bounded retries."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import httpx
import msgspec
import pytest

from appliance.node.enlist import Enlister, EnlistTarget
from appliance.node.inventory import boot_nic, collect
from pxe.http import decode_report
from pxe.inventory import EnlistPost, Inventory, NicInfo

URL = "http://10.0.0.2:8080/pxe/enlist"


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A machine with two CPUs, 16 GiB, an NVMe and a spinning disk, a loop device, two NICs and a bridge."""
    _write(
        tmp_path / "proc/cpuinfo",
        "processor\t: 0\nmodel name\t: Xeon Test\n\nprocessor\t: 1\nmodel name\t: Xeon Test\n",
    )
    _write(tmp_path / "proc/meminfo", "MemTotal:       16777216 kB\nMemFree:        1 kB\n")
    block = tmp_path / "sys/block"
    _write(block / "nvme0n1/size", "2000409264\n")
    _write(block / "nvme0n1/device/model", "Fast NVMe  \n")
    _write(block / "nvme0n1/device/serial", "S1\x07N\n")  # a control character in firmware text
    _write(block / "nvme0n1/queue/rotational", "0\n")
    _write(block / "sda/size", "1000\n")
    _write(block / "sda/device/model", "Spinner\n")
    _write(block / "sda/queue/rotational", "1\n")
    _write(block / "loop0/size", "8\n")  # no device link: virtual
    net = tmp_path / "sys/class/net"
    _write(net / "eno1/address", "52:54:00:AA:BB:01\n")
    _write(net / "eno1/speed", "10000\n")
    _write(net / "eno1/carrier", "1\n")
    (net / "eno1/device").mkdir()
    _write(net / "eno2/address", "52:54:00:aa:bb:02\n")  # down: no speed or carrier to read
    (net / "eno2/device").mkdir()
    _write(net / "br0/address", "52:54:00:aa:bb:03\n")  # a bridge: no device
    _write(net / "lo/address", "00:00:00:00:00:00\n")
    dmi = tmp_path / "sys/class/dmi/id"
    _write(dmi / "sys_vendor", "ACME\n")
    _write(dmi / "product_name", "R1" + "x" * 300 + "\n")
    _write(dmi / "product_uuid", "4c4c4544-0000\n")  # no product_serial: unreadable or absent
    return tmp_path


def test_collect_reads_cpu_memory_disks_nics_and_dmi_from_the_tree(root: Path) -> None:
    inventory = collect(name="rack1-n1", version="0.1.0", root=root)
    assert (inventory.cpu_model, inventory.cpu_count, inventory.memory_bytes) == ("Xeon Test", 2, 16 << 30)
    assert [(d.name, d.size_bytes, d.model, d.serial, d.rotational) for d in inventory.disks] == [
        ("nvme0n1", 2000409264 * 512, "Fast NVMe", "S1N", False),
        ("sda", 1000 * 512, "Spinner", "", True),
    ]
    assert inventory.nics == [
        NicInfo(name="eno1", mac="52:54:00:aa:bb:01", speed_mbps=10000, link=True),
        NicInfo(name="eno2", mac="52:54:00:aa:bb:02", speed_mbps=None, link=None),
    ]
    assert (inventory.dmi.vendor, len(inventory.dmi.product), inventory.dmi.serial) == ("ACME", 128, "")
    assert (inventory.name, inventory.version) == ("rack1-n1", "0.1.0")


def test_what_is_collected_is_always_a_report_the_server_accepts(root: Path) -> None:
    inventory = collect(name="n" * 300, version="v", root=root)
    report = EnlistPost(mac="52:54:00:aa:bb:01", **msgspec.structs.asdict(inventory))
    assert decode_report(msgspec.json.encode(report)) == report


def test_an_empty_tree_gives_an_empty_but_valid_inventory(tmp_path: Path) -> None:
    inventory = collect(name="x", version="v", root=tmp_path)
    assert (inventory.memory_bytes, inventory.disks, inventory.nics) == (0, [], [])
    assert inventory.cpu_count >= 1  # no cpuinfo: the running system's count


def test_the_report_is_filed_under_bootif_else_a_linked_nic() -> None:
    nics = [NicInfo(name="a", mac="52:54:00:00:00:01"), NicInfo(name="b", mac="52:54:00:00:00:02", link=True)]
    assert boot_nic(Inventory(nics=nics), "52:54:00:00:00:09") == "52:54:00:00:00:09"
    assert boot_nic(Inventory(nics=nics), None) == "52:54:00:00:00:02"
    assert boot_nic(Inventory(nics=nics[:1]), None) == "52:54:00:00:00:01"
    assert boot_nic(Inventory(), None) is None


class Server:
    """A boot server that answers the given statuses in turn and keeps what it was sent."""

    def __init__(self, *statuses: int) -> None:
        self.statuses = list(statuses)
        self.bodies: list[dict[str, object]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        assert (request.method, str(request.url)) == ("POST", URL)
        self.bodies.append(json.loads(request.content))
        status = self.statuses.pop(0)
        if status == 0:
            raise httpx.ConnectError("connection refused", request=request)
        return httpx.Response(status, json={"detail": f"status {status}"} if status >= 400 else None)


def enlister(server: Server, sleeps: list[float], attempts: int = 4) -> Enlister:
    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    return Enlister(
        EnlistTarget(URL, "52:54:00:aa:bb:01"),
        lambda: Inventory(name="n1", cpu_count=2),
        transport=httpx.MockTransport(server),
        attempts=attempts,
        first_delay=2.0,
        max_delay=5.0,
        sleep=sleep,
    )


async def test_the_inventory_is_posted_once_under_the_boot_mac(caplog: pytest.LogCaptureFixture) -> None:
    server, sleeps = Server(204), list[float]()
    caplog.set_level(logging.INFO, "appliance.node.enlist")
    job = enlister(server, sleeps)
    await job.run()
    assert job.reported is True
    assert sleeps == []
    assert server.bodies[0]["mac"] == "52:54:00:aa:bb:01"
    assert server.bodies[0]["cpu_count"] == 2
    assert "reported this machine's inventory" in caplog.text


async def test_a_server_away_or_busy_is_retried_with_back_off() -> None:
    server, sleeps = Server(0, 503, 429, 204), list[float]()
    job = enlister(server, sleeps)
    await job.run()
    assert job.reported is True
    assert sleeps == [2.0, 4.0, 5.0]


async def test_retries_are_bounded(caplog: pytest.LogCaptureFixture) -> None:
    server, sleeps = Server(0, 0, 0), list[float]()
    job = enlister(server, sleeps, attempts=3)
    await job.run()
    assert job.reported is False
    assert len(server.bodies) == 3
    assert "gave up reporting" in caplog.text


async def test_a_refusal_ends_it_at_once(caplog: pytest.LogCaptureFixture) -> None:
    server, sleeps = Server(404, 204), list[float]()
    job = enlister(server, sleeps)
    await job.run()
    assert (job.reported, sleeps, len(server.bodies)) == (False, [], 1)
    assert "refused the report" in caplog.text
    assert "status 404" in caplog.text
