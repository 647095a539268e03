"""The firmware step of a PXE boot, against the real dnsmasq with the argv our code renders.

QEMU's NIC ROMs are iPXE already (test_pxe.py), so what plain PXE firmware is told (a BIOS
UNDI ROM: `undionly.kpxe`; x86-64 UEFI: `ipxe.efi`; both from the node by TFTP) is never seen
in a QEMU boot. Here a client in its own namespace speaks as firmware does (`tests.dhcpclient`):
DISCOVER, REQUEST and, after a proxy-DHCP offer, the boot-server request to port 4011; then it
fetches the offered file by TFTP (curl, as test_pxe.py) and compares it byte for byte with
Debian's. An iPXE client (user class "iPXE") must be handed the HTTP script URL instead.

Lab: a bridge, the boot server on host 0, the client on the last host; in proxy mode a plain
dnsmasq on host 1 is the site's DHCP server. The client's Lab address is removed, as a booting
machine has none, and the leased one is added once it has it, as firmware does. Nothing is
sent from the root namespace, which holds the Lab's `unreachable` route.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pxe.dnsmasq import BIOS_LOADER, EFI_LOADER, Mode, render_argv
from pxe.service import IPXE_DIR, PxeSettings, dnsmasq_settings
from tests.dhcpclient import (
    ACK,
    ARCH_BIOS,
    ARCH_EFI_BC,
    ARCH_EFI_X64,
    DISCOVER,
    OFFER,
    OPT_REQUESTED_IP,
    OPT_SERVER_ID,
    OPT_VENDOR,
    PXE_PORT,
    REQUEST,
    DhcpClient,
    DhcpMessage,
    Firmware,
    boot_item,
    build,
    new_xid,
)
from tests.kit.daemon import Daemon
from tests.kit.need import require, require_available, require_tool
from tests.kit.procs import assert_not_root
from tests.netns import Host, Lab, available

pytestmark = [pytest.mark.integration, pytest.mark.privileged]

SUBNET = "10.93.0.0/24"
HTTP_URL = "http://10.93.0.10:8080"
SCRIPT_URL = f"{HTTP_URL}/pxe/boot.ipxe"
REPLY_SECONDS = 5.0  # dnsmasq answers in milliseconds; its ping check of a new address takes up to ~3 s
START_SECONDS = 10.0


@dataclass(frozen=True)
class Kind:
    """One kind of booting machine and what it must be offered."""

    name: str
    arch: int
    user_class: str | None
    expect: str  # the boot file name, or the script URL
    mac: str


KINDS = [
    Kind("bios", ARCH_BIOS, None, BIOS_LOADER, "52:54:00:93:00:01"),
    Kind("uefi-x64", ARCH_EFI_X64, None, EFI_LOADER, "52:54:00:93:00:02"),
    Kind("uefi-bc", ARCH_EFI_BC, None, EFI_LOADER, "52:54:00:93:00:03"),
    Kind("ipxe", ARCH_BIOS, "iPXE", SCRIPT_URL, "52:54:00:93:00:04"),
    Kind("ipxe-efi", ARCH_EFI_X64, "iPXE", SCRIPT_URL, "52:54:00:93:00:05"),
]


@pytest.fixture(autouse=True)
def _requirements() -> None:
    require_available(available())
    require_tool("dnsmasq", "curl")
    for loader in (BIOS_LOADER, EFI_LOADER):
        require((IPXE_DIR / loader).exists(), f"Debian's ipxe package is missing ({IPXE_DIR / loader})")


def _start_dnsmasq(host: Host, argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    """Start dnsmasq in `host`; return once it serves TFTP (its last start-up line)."""
    daemon = Daemon(argv, log, name="dnsmasq", spawn=host.popen).start()
    daemon.wait_for_log("TFTP root is", START_SECONDS)
    assert daemon.proc is not None
    return daemon.proc


def _boot_server_argv(server: Host, mode: Mode, tmp_path: Path) -> list[str]:
    """The argv a node renders for these settings (the same path PUT /api/v1/nodes/N/pxe takes)."""
    if mode is Mode.FULL:
        config = PxeSettings(
            enabled=True,
            interface=server.ifname,
            mode=mode,
            range_start="10.93.0.100",
            range_end="10.93.0.150",
            http_url=HTTP_URL,
        )
    else:
        config = PxeSettings(enabled=True, interface=server.ifname, mode=mode, network=SUBNET, http_url=HTTP_URL)
    return render_argv(dnsmasq_settings(config, tmp_path / "pxe.leases"))


@pytest.fixture
def lab() -> Iterator[Lab]:
    with Lab(3, SUBNET) as lab:
        client = lab.host(2)
        # A booting machine has no address: it must not answer with the Lab's.
        client.run(["ip", "addr", "flush", "dev", client.ifname], check=True)
        yield lab


def _take(client: Host, offer: DhcpMessage) -> None:
    """Configure the leased address, as firmware does before it talks unicast (4011, TFTP)."""
    client.run(["ip", "addr", "replace", f"{offer.yiaddr}/24", "dev", client.ifname], check=True)


def _tftp(client: Host, server: str, name: str, into: Path) -> bytes:
    fetched = client.run(["curl", "-sS", "--max-time", "10", "-o", str(into), f"tftp://{server}/{name}"], timeout=20.0)
    assert fetched.returncode == 0, fetched.stderr
    return into.read_bytes()


def _check_boot_file(client: Host, kind: Kind, answer: DhcpMessage, server: str, tmp_path: Path) -> None:
    assert answer.bootfile == kind.expect, answer
    if kind.user_class is not None:
        return  # iPXE fetches the script over HTTP (tested in test_pxe.py)
    assert answer.next_server == server, answer
    served = _tftp(client, answer.next_server, answer.bootfile, tmp_path / f"{kind.name}.bin")
    assert served == (IPXE_DIR / kind.expect).read_bytes()


@pytest.mark.parametrize("kind", KINDS, ids=[k.name for k in KINDS])
def test_full_dhcp_offers_each_firmware_its_loader(lab: Lab, kind: Kind, tmp_path: Path) -> None:
    server, client = lab.host(0), lab.host(2)
    proc = _start_dnsmasq(server, _boot_server_argv(server, Mode.FULL, tmp_path), tmp_path / "dnsmasq.log")
    assert_not_root(proc.pid)  # `ip netns exec` execs dnsmasq: this is dnsmasq itself, past its drop of root
    firmware = Firmware(kind.mac, kind.arch, kind.user_class)
    with DhcpClient(client.netns, client.ifname) as dhcp:
        xid = new_xid()
        offer = dhcp.exchange(build(firmware, DISCOVER, xid), xid, seconds=REPLY_SECONDS)
        assert offer.message_type == OFFER
        assert offer.server_id == server.address
        assert offer.yiaddr.startswith("10.93.0.1")
        assert offer.bootfile == kind.expect
        ack = dhcp.exchange(_request(firmware, xid, offer.yiaddr, server.address), xid, seconds=REPLY_SECONDS)
    assert ack.message_type == ACK, ack
    assert ack.yiaddr == offer.yiaddr
    # The lease is written after the drop of root, through the file opened before it.
    assert f" {kind.mac} {ack.yiaddr} " in (tmp_path / "pxe.leases").read_text()
    _take(client, ack)
    _check_boot_file(client, kind, ack, server.address, tmp_path)
    server.kill_process(proc, 15, wait=5.0)


@pytest.mark.parametrize("kind", KINDS, ids=[k.name for k in KINDS])
def test_proxy_dhcp_beside_the_sites_server_offers_each_firmware_its_loader(
    lab: Lab, kind: Kind, tmp_path: Path
) -> None:
    server, site, client = lab.hosts
    site_dhcp = _start_dnsmasq(
        site,
        [
            "dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--log-facility=-", "--port=0",
            f"--interface={site.ifname}", "--bind-interfaces", "--user=root", "--no-ping",
            f"--dhcp-leasefile={tmp_path / 'site.leases'}", "--dhcp-range=10.93.0.200,10.93.0.220,1h",
            # The site's server knows nothing of PXE; TFTP on only so the start-up wait has its line.
            "--enable-tftp", f"--tftp-root={tmp_path}",
        ],
        tmp_path / "site.log",
    )  # fmt: skip
    proc = _start_dnsmasq(server, _boot_server_argv(server, Mode.PROXY, tmp_path), tmp_path / "dnsmasq.log")
    assert_not_root(proc.pid)
    firmware = Firmware(kind.mac, kind.arch, kind.user_class)
    with DhcpClient(client.netns, client.ifname) as dhcp:
        xid = new_xid()
        dhcp.send(build(firmware, DISCOVER, xid))
        offers = {sender: message for message, sender in dhcp.replies(xid, REPLY_SECONDS, want=2)}
        assert set(offers) == {server.address, site.address}, offers
        lease, proxy = offers[site.address], offers[server.address]
        # The proxy offer leases nothing and says it is a PXE server (RFC 4578, PXE 2.1).
        assert proxy.message_type == OFFER
        assert proxy.yiaddr == "0.0.0.0"
        assert proxy.vendor_class == "PXEClient"
        assert lease.yiaddr.startswith("10.93.0.2")
        ack = dhcp.exchange(_request(firmware, xid, lease.yiaddr, site.address), xid, seconds=REPLY_SECONDS)
        assert ack.message_type == ACK, ack
        assert ack.yiaddr == lease.yiaddr
        _take(client, ack)
        answer = _boot_server_request(dhcp, firmware, proxy, ack.yiaddr, server.address)
    _check_boot_file(client, kind, answer, server.address, tmp_path)
    assert "DHCPACK" not in (tmp_path / "dnsmasq.log").read_text()  # addresses come from the site's server
    server.kill_process(proc, 15, wait=5.0)
    site.kill_process(site_dhcp, 15, wait=5.0)


def _boot_server_request(
    dhcp: DhcpClient, firmware: Firmware, proxy: DhcpMessage, address: str, server: str
) -> DhcpMessage:
    """What firmware does with a proxy offer (PXE 2.1; EDK2's PxeBcDhcp4.c): the answer naming the file.

    An offer that names a file is used as is. One with a boot menu (option 43.9) makes the
    client ask the server on port 4011 for the first item (the prompt's timeout is 0). One
    with neither ("BINL", what dnsmasq sends UEFI clients, whose firmware ignores menus)
    makes it ask port 4011 without an item.
    """
    if proxy.bootfile:
        return proxy
    menu = proxy.boot_menu()
    extra = []
    if menu:
        kind, text = menu[0]
        assert text == "DebVisor", menu
        extra = [(OPT_VENDOR, boot_item(kind))]
    xid = new_xid()
    request = build(firmware, REQUEST, xid, ciaddr=address, extra=extra)
    answer = dhcp.exchange(request, xid, seconds=REPLY_SECONDS, to=server, port=PXE_PORT)
    assert answer.message_type == ACK, answer
    return answer


def _request(firmware: Firmware, xid: int, address: str, server_id: str) -> bytes:
    """The DHCPREQUEST that takes `address` from the server `server_id` offered it."""
    return build(
        firmware,
        REQUEST,
        xid,
        extra=[(OPT_REQUESTED_IP, _packed(address)), (OPT_SERVER_ID, _packed(server_id))],
    )


def _packed(address: str) -> bytes:
    return bytes(int(part) for part in address.split("."))
