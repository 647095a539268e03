"""The boot-time network set-up: which unit lands in networkd's directory for which command line.

A fake `Links` stands in for the host's ports and a fake clock for time, so the port choice
(BOOTIF, first port with a link, first by name) is tested without root or real links.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from appliance.bootnet import UNIT_NAME, BootNet, Port, SysfsLinks, main
from appliance.bootparams import parse_cmdline
from tests.kit.clock import FakeClock

DEBIAN = "BOOT_IMAGE=/live/vmlinuz boot=live live-media-path=/live quiet console=ttyS0,115200n8"
MAC1 = "52:54:00:00:00:01"
MAC2 = "52:54:00:00:00:02"


class FakeLinks:
    """Ports whose links come up after a number of `ports()` calls (None: never)."""

    def __init__(self, *ports: tuple[str, str, int | None]) -> None:
        self.spec = ports
        self.calls = 0
        self.settled = False
        self.up: list[str] = []

    def settle(self) -> None:
        self.settled = True

    def ports(self) -> list[Port]:
        self.calls += 1
        return [Port(name, mac, after is not None and self.calls > after) for name, mac, after in self.spec]

    def set_up(self, name: str) -> None:
        self.up.append(name)


def boot(tmp_path: Path, cmdline: str, links: FakeLinks | None = None) -> tuple[str, str | None]:
    """Run the set-up on `cmdline`; its log line and the unit it left (None: no unit)."""
    (tmp_path / "cmdline").write_text(cmdline + "\n")
    clock = FakeClock(0.0)
    netdir = tmp_path / "run" / "systemd" / "network"
    bootnet = BootNet(netdir, links or FakeLinks(), carrier_wait=5.0, clock=clock, sleep=clock.sleep)
    line = bootnet.run(tmp_path / "cmdline")
    unit = netdir / UNIT_NAME
    return line, unit.read_text() if unit.exists() else None


def test_a_static_address_goes_to_the_port_bootif_names_without_probing(tmp_path: Path) -> None:
    links = FakeLinks(("eno1", MAC1, 0))
    line, unit = boot(tmp_path, f"{DEBIAN} BOOTIF=01-52-54-00-00-00-02 debvisor.ip=192.0.2.7/24,192.0.2.1", links)
    assert unit is not None
    assert f"MACAddress={MAC2}\n" in unit
    assert "Address=192.0.2.7/24\n" in unit
    assert "Gateway=192.0.2.1\n" in unit
    assert line == (
        f"debvisor.ip=192.0.2.7/24,192.0.2.1 on the port {MAC2} named by BOOTIF=; DHCP on the other Ethernet ports"
    )
    assert links.calls == 0
    assert not links.settled
    assert links.up == []


def test_without_bootif_the_first_port_with_a_link_wins(tmp_path: Path) -> None:
    # eno1 never gets a link; enp3s0 gets one on the third look: it is chosen, not eno1.
    links = FakeLinks(("enp3s0", MAC2, 2), ("eno1", MAC1, None))
    line, unit = boot(tmp_path, f"{DEBIAN} debvisor.ip=192.0.2.7/24", links)
    assert unit is not None
    assert f"MACAddress={MAC2}\n" in unit
    assert "Gateway" not in unit
    assert "port enp3s0 (52:54:00:00:00:02), the first with a link" in line
    assert links.settled
    assert links.up == ["eno1", "enp3s0"]


def test_of_several_ports_with_a_link_the_first_by_name_wins(tmp_path: Path) -> None:
    _, unit = boot(tmp_path, "debvisor.ip=192.0.2.7/24", FakeLinks(("eth1", MAC2, 0), ("eth0", MAC1, 0)))
    assert unit is not None
    assert f"MACAddress={MAC1}\n" in unit


def test_without_any_link_the_first_port_by_name_after_the_wait(tmp_path: Path) -> None:
    line, unit = boot(tmp_path, "debvisor.ip=192.0.2.7/24", FakeLinks(("eth1", MAC2, None), ("eth0", MAC1, None)))
    assert unit is not None
    assert f"MACAddress={MAC1}\n" in unit
    assert "port eth0 (52:54:00:00:00:01), the first by name: no port had a link within 5 s" in line


def test_without_any_port_nothing_is_written(tmp_path: Path) -> None:
    line, unit = boot(tmp_path, "debvisor.ip=192.0.2.7/24")
    assert unit is None
    assert line == "debvisor.ip=192.0.2.7/24: not applied, no Ethernet port found"


@pytest.mark.parametrize(
    ("cmdline", "expected"),
    [
        (DEBIAN, "no debvisor.ip= on the kernel command line: DHCP on every Ethernet port"),
        (f"{DEBIAN} debvisor.ip=dhcp BOOTIF=01-52-54-00-00-00-02", "debvisor.ip=dhcp: DHCP on every Ethernet port"),
        (
            f"{DEBIAN} debvisor.ip=192.0.2.7 BOOTIF=01-52-54-00-00-00-02",
            "debvisor.ip='192.0.2.7': use 'dhcp' or ADDRESS/PREFIX[,GATEWAY], "
            "e.g. 10.0.0.5/24,10.0.0.1; debvisor.ip= not applied, DHCP on every Ethernet port instead",
        ),
        (
            "debvisor.ip=192.0.2.7/24,192.0.2.300",
            "debvisor.ip='192.0.2.7/24,192.0.2.300': gateway '192.0.2.300' is not an IP "
            "address; debvisor.ip= not applied, DHCP on every Ethernet port instead",
        ),
        (
            # Another key is wrong: the appliance will refuse this command line, so none of it is applied.
            "debvisor.ip=192.0.2.7/24 debvisor.nmae=x BOOTIF=01-52-54-00-00-00-02",
            "kernel command line: unknown key debvisor.nmae "
            "(known: name, join, enrol, api, gossip, advertise, ip, data, pxe-http, enlist); "
            "debvisor.ip= not applied, DHCP on every Ethernet port instead",
        ),
    ],
)
def test_no_static_address_leaves_dhcp_and_removes_a_stale_unit(tmp_path: Path, cmdline: str, expected: str) -> None:
    stale = tmp_path / "run" / "systemd" / "network" / UNIT_NAME
    stale.parent.mkdir(parents=True)
    stale.write_text("[Match]\nType=ether\n")
    line, unit = boot(tmp_path, cmdline, FakeLinks(("eth0", MAC1, 0)))
    assert line == expected
    assert unit is None
    assert "\n" not in line


def test_an_unreadable_command_line_leaves_dhcp(tmp_path: Path) -> None:
    clock = FakeClock(0.0)
    line = BootNet(tmp_path, FakeLinks(), clock=clock, sleep=clock.sleep).run(tmp_path / "absent")
    assert line.startswith("cannot read the kernel command line from ")
    assert line.endswith("DHCP on every Ethernet port instead")
    assert not (tmp_path / UNIT_NAME).exists()


def test_the_unit_name_sorts_before_the_images_dhcp_fallback() -> None:
    fallback = Path(__file__).resolve().parents[3] / "image/rootfs/etc/systemd/network/90-debvisor-dhcp.network"
    assert fallback.exists()
    assert sorted([fallback.name, UNIT_NAME])[0] == UNIT_NAME


def test_main_writes_the_unit_and_prints_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "cmdline").write_text("debvisor.ip=fd00:5::7/64,fd00:5::1 BOOTIF=01-52-54-00-00-00-01\n")
    netdir = tmp_path / "network"
    assert main(["--networkd-dir", str(netdir), str(tmp_path / "cmdline")], links=FakeLinks()) == 0
    out = capsys.readouterr().out
    assert out == (
        "debvisor-bootnet: debvisor.ip=fd00:5::7/64,fd00:5::1 on the port 52:54:00:00:00:01 named by BOOTIF=; "
        "DHCP on the other Ethernet ports\n"
    )
    assert sorted(p.name for p in netdir.iterdir()) == [UNIT_NAME]  # no temporary file left
    assert (netdir / UNIT_NAME).stat().st_mode & 0o777 == 0o644


def test_main_fails_when_the_unit_cannot_be_written(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "cmdline").write_text("debvisor.ip=192.0.2.7/24 BOOTIF=01-52-54-00-00-00-01\n")
    (tmp_path / "file").write_text("")
    assert main(["--networkd-dir", str(tmp_path / "file"), str(tmp_path / "cmdline")], links=FakeLinks()) == 1
    assert "debvisor-bootnet: cannot write" in capsys.readouterr().err


def test_sysfs_links_lists_physical_ethernet_ports_only(tmp_path: Path) -> None:
    def link(name: str, *, kind: str = "1", device: bool = True, carrier: str | None = "1", extra: str = "") -> None:
        path = tmp_path / name
        path.mkdir()
        (path / "type").write_text(kind + "\n")
        (path / "address").write_text("52:54:00:AA:00:01\n")
        if device:
            (path / "device").mkdir()
        if carrier is not None:
            (path / "carrier").write_text(carrier + "\n")
        if extra:
            (path / extra).mkdir()

    link("eno1")
    link("eno2", carrier="0")
    link("enp4s0", carrier=None)  # down: reading carrier fails
    link("lo", kind="772", device=False)
    link("br0", device=False)
    link("veth0", device=False)
    link("wlp2s0", extra="phy80211")
    assert SysfsLinks(tmp_path).ports() == [
        Port("eno1", "52:54:00:aa:00:01", True),
        Port("eno2", "52:54:00:aa:00:01", False),
        Port("enp4s0", "52:54:00:aa:00:01", False),
    ]


def test_the_examples_in_docs_image_md_parse_as_documented() -> None:
    # docs/image.md shows debvisor.ip= examples and what the service prints; keep them true.
    doc = (Path(__file__).resolve().parents[3] / "docs" / "image.md").read_text()
    section = doc.split("### The management address: `debvisor.ip=`", 1)[1].split("\n## ", 1)[0]
    examples = [line.split()[0] for line in section.splitlines() if line.startswith("    debvisor.ip=")]
    assert len(examples) == 4
    for example in examples:
        assert parse_cmdline(example).ip is not None
    printed = [line.strip() for line in section.splitlines() if line.startswith("    debvisor-bootnet: ")]
    assert len(printed) == 2
    good, bad = printed
    assert good == "debvisor-bootnet: " + boot_line("BOOTIF=01-52-54-00-12-34-56 debvisor.ip=10.0.0.5/24,10.0.0.1")
    assert bad == "debvisor-bootnet: " + boot_line("debvisor.ip=10.0.0.5")


def boot_line(cmdline: str) -> str:
    with tempfile.TemporaryDirectory() as scratch:
        line, _ = boot(Path(scratch), cmdline)
    return line
