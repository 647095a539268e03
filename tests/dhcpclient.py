"""A DHCP client that speaks like PXE firmware, for tests of the boot server's first step.

Why it exists: QEMU's NIC ROMs are iPXE already, so a QEMU boot never shows what dnsmasq tells
plain firmware (a BIOS UNDI ROM or UEFI's PXE base code) before iPXE runs. This module sends
what such firmware sends (DHCPDISCOVER with vendor class "PXEClient:Arch:NNNNN:UNDI:002001",
client architecture (93), network interface id (94), machine GUID (97); the DHCPREQUEST; and,
after a proxy-DHCP offer, the boot-server request to port 4011 naming a boot item in option 43),
and parses the answers into typed messages.

Sockets are ordinary UDP sockets on port 68 with SO_BROADCAST and SO_BINDTODEVICE, opened by a
thread that has entered the client's network namespace (`tests.nsclient.enter_netns`), so no
packet ever leaves from the root namespace. Every request sets the broadcast flag, as firmware
does, so answers reach a client that has no address yet.

Deliberately left out: retransmission with back-off (a test sends once and waits a bounded
time), lease renewal, DHCPv6, and TFTP (tests fetch the offered file with curl, as
test_pxe.py does).
"""

from __future__ import annotations

import ipaddress
import secrets
import select
import socket
import struct
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from tests.nsclient import enter_netns

MAGIC = b"\x63\x82\x53\x63"
BOOTREQUEST, BOOTREPLY = 1, 2
DISCOVER, OFFER, REQUEST, DECLINE, ACK, NAK = 1, 2, 3, 4, 5, 6
BROADCAST_FLAG = 0x8000
CLIENT_PORT, SERVER_PORT, PXE_PORT = 68, 67, 4011

# Option numbers (RFC 2132, RFC 4578, iPXE).
OPT_SUBNET_MASK = 1
OPT_ROUTER = 3
OPT_VENDOR = 43  # vendor-encapsulated: the PXE options below when the vendor class is PXEClient
OPT_REQUESTED_IP = 50
OPT_MESSAGE_TYPE = 53
OPT_SERVER_ID = 54
OPT_PARAMETERS = 55
OPT_MAX_SIZE = 57
OPT_VENDOR_CLASS = 60
OPT_TFTP_SERVER = 66
OPT_BOOTFILE = 67
OPT_USER_CLASS = 77
OPT_CLIENT_ARCH = 93
OPT_CLIENT_NDI = 94
OPT_CLIENT_GUID = 97
OPT_IPXE = 175
OPT_END, OPT_PAD = 255, 0

# PXE options inside option 43 (PXE specification 2.1, table 2-1).
PXE_DISCOVERY_CONTROL = 6
PXE_BOOT_SERVERS = 8
PXE_BOOT_MENU = 9
PXE_MENU_PROMPT = 10
PXE_BOOT_ITEM = 71

ARCH_BIOS = 0  # "x86PC"
ARCH_EFI_BC = 7  # x86-64 UEFI (EFI byte code in RFC 4578, used by x86-64 firmware)
ARCH_EFI_X64 = 9


def vendor_class(arch: int) -> str:
    """Option 60 as PXE firmware of architecture `arch` sends it (UNDI 2.1)."""
    return f"PXEClient:Arch:{arch:05d}:UNDI:002001"


@dataclass(frozen=True)
class Firmware:
    """What a booting machine says about itself in every request."""

    mac: str
    arch: int = ARCH_BIOS
    user_class: str | None = None  # "iPXE" once iPXE runs
    guid: bytes = field(default_factory=lambda: secrets.token_bytes(16))

    @property
    def chaddr(self) -> bytes:
        return bytes.fromhex(self.mac.replace(":", ""))

    def options(self) -> list[tuple[int, bytes]]:
        """The options firmware adds to DISCOVER and REQUEST (after the message type)."""
        opts = [
            (OPT_MAX_SIZE, struct.pack("!H", 1464)),
            (OPT_PARAMETERS, bytes([1, 2, 3, 5, 6, 12, 13, 15, 17, 18, 22, 23, 28, 40, 41, 42, 43, 50, 51, 54])
             + bytes([58, 59, 60, 66, 67, 97, 128, 129, 130, 131, 132, 133, 134, 135, 175])),
            (OPT_CLIENT_ARCH, struct.pack("!H", self.arch)),
            (OPT_CLIENT_NDI, bytes([1, 2, 1])),  # UNDI 2.1
            (OPT_CLIENT_GUID, b"\x00" + self.guid),
            (OPT_VENDOR_CLASS, vendor_class(self.arch).encode()),
        ]  # fmt: skip
        if self.user_class is not None:
            name = self.user_class.encode()
            # RFC 3004 user class (a length-prefixed list), as iPXE sends it, plus iPXE's own option.
            opts.append((OPT_USER_CLASS, bytes([len(name)]) + name))
            opts.append((OPT_IPXE, bytes([19, 1, 1])))  # "iPXE features: HTTP"
        return opts


@dataclass(frozen=True)
class DhcpMessage:
    """A parsed BOOTP/DHCP message."""

    op: int
    xid: int
    flags: int
    ciaddr: str
    yiaddr: str
    siaddr: str  # "next server": where to fetch the boot file by TFTP
    chaddr: bytes
    sname: str
    file: str
    options: dict[int, bytes]

    @property
    def message_type(self) -> int | None:
        value = self.options.get(OPT_MESSAGE_TYPE)
        return value[0] if value else None

    @property
    def server_id(self) -> str | None:
        value = self.options.get(OPT_SERVER_ID)
        return str(ipaddress.IPv4Address(value)) if value and len(value) == 4 else None

    @property
    def vendor_class(self) -> str | None:
        value = self.options.get(OPT_VENDOR_CLASS)
        return value.decode(errors="replace") if value is not None else None

    @property
    def bootfile(self) -> str:
        """The boot file name: option 67 if sent, else the `file` field."""
        value = self.options.get(OPT_BOOTFILE)
        return value.rstrip(b"\0").decode(errors="replace") if value else self.file

    @property
    def next_server(self) -> str:
        """Where the boot file is: option 66 if sent, else `siaddr`."""
        value = self.options.get(OPT_TFTP_SERVER)
        return value.rstrip(b"\0").decode(errors="replace") if value else self.siaddr

    def pxe_options(self) -> dict[int, bytes]:
        """The PXE suboptions of option 43 (empty when there are none)."""
        return parse_tlv(self.options.get(OPT_VENDOR, b""))

    def boot_menu(self) -> list[tuple[int, str]]:
        """The PXE boot menu (option 43.9): (boot server type, description) per item."""
        data = self.pxe_options().get(PXE_BOOT_MENU, b"")
        items: list[tuple[int, str]] = []
        while len(data) >= 3:
            kind, size = struct.unpack("!HB", data[:3])
            items.append((kind, data[3 : 3 + size].decode(errors="replace")))
            data = data[3 + size :]
        return items


def parse_tlv(data: bytes) -> dict[int, bytes]:
    """Options as code -> value; repeated codes are concatenated (RFC 3396)."""
    options: dict[int, bytes] = {}
    i = 0
    while i < len(data):
        code = data[i]
        if code == OPT_END:
            break
        if code == OPT_PAD:
            i += 1
            continue
        if i + 1 >= len(data):
            raise ValueError("option truncated")
        size = data[i + 1]
        value = data[i + 2 : i + 2 + size]
        if len(value) != size:
            raise ValueError(f"option {code} truncated")
        options[code] = options.get(code, b"") + value
        i += 2 + size
    return options


def _tlv(options: list[tuple[int, bytes]]) -> bytes:
    out = bytearray()
    for code, value in options:
        if len(value) > 255:
            raise ValueError(f"option {code} longer than 255 bytes")
        out += bytes([code, len(value)]) + value
    return bytes(out)


def _cstr(data: bytes) -> str:
    return data.split(b"\0", 1)[0].decode(errors="replace")


def parse(data: bytes) -> DhcpMessage:
    """Parse a BOOTP/DHCP message (ValueError if it is not one)."""
    if len(data) < 240 or data[236:240] != MAGIC:
        raise ValueError("not a DHCP message")
    op, _htype, hlen, _hops, xid, _secs, flags = struct.unpack("!BBBBIHH", data[:12])
    ciaddr, yiaddr, siaddr, _giaddr = (str(ipaddress.IPv4Address(data[i : i + 4])) for i in range(12, 28, 4))
    return DhcpMessage(
        op=op,
        xid=xid,
        flags=flags,
        ciaddr=ciaddr,
        yiaddr=yiaddr,
        siaddr=siaddr,
        chaddr=data[28 : 28 + min(hlen, 16)],
        sname=_cstr(data[44:108]),
        file=_cstr(data[108:236]),
        options=parse_tlv(data[240:]),
    )


def build(
    firmware: Firmware,
    message_type: int,
    xid: int,
    *,
    ciaddr: str = "0.0.0.0",
    extra: list[tuple[int, bytes]] | None = None,
) -> bytes:
    """A BOOTREQUEST from `firmware` with the broadcast flag set."""
    header = struct.pack("!BBBBIHH", BOOTREQUEST, 1, 6, 0, xid, 0, BROADCAST_FLAG)
    header += ipaddress.IPv4Address(ciaddr).packed + bytes(12)  # ciaddr; yiaddr, siaddr, giaddr zero
    header += firmware.chaddr.ljust(16, b"\0") + bytes(64 + 128)  # chaddr, sname, file
    options = [(OPT_MESSAGE_TYPE, bytes([message_type])), *(extra or []), *firmware.options()]
    body = header + MAGIC + _tlv(options) + bytes([OPT_END])
    return body.ljust(300, b"\0")  # BOOTP's minimum; some servers drop shorter requests


def boot_item(kind: int, layer: int = 0) -> bytes:
    """Option 43 asking a PXE boot server for boot item `kind` (layer 0: the boot file)."""
    return _tlv([(PXE_BOOT_ITEM, struct.pack("!HH", kind, layer))]) + bytes([OPT_END])


class DhcpClient:
    """A UDP socket on port 68 bound to `ifname` inside network namespace `netns`."""

    def __init__(self, netns: str, ifname: str) -> None:
        with ThreadPoolExecutor(max_workers=1, initializer=enter_netns, initargs=(netns,)) as pool:
            self._sock = pool.submit(self._open, ifname).result()

    @staticmethod
    def _open(ifname: str) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, ifname.encode())
            sock.bind(("0.0.0.0", CLIENT_PORT))
        except OSError:
            sock.close()
            raise
        return sock

    def send(self, packet: bytes, to: str = "255.255.255.255", port: int = SERVER_PORT) -> None:
        self._sock.sendto(packet, (to, port))

    def replies(self, xid: int, seconds: float, *, want: int = 1) -> list[tuple[DhcpMessage, str]]:
        """BOOTREPLYs for `xid` and their senders, until `want` arrived or `seconds` passed."""
        found: list[tuple[DhcpMessage, str]] = []
        deadline = time.monotonic() + seconds
        while len(found) < want:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            readable, _, _ = select.select([self._sock], [], [], left)
            if not readable:
                break
            data, (sender, _port) = self._sock.recvfrom(4096)
            try:
                message = parse(data)
            except ValueError:
                continue
            if message.op == BOOTREPLY and message.xid == xid:
                found.append((message, sender))
        return found

    def exchange(
        self, packet: bytes, xid: int, *, seconds: float = 5.0, to: str = "255.255.255.255", port: int = SERVER_PORT
    ) -> DhcpMessage:
        """Send `packet` and return the first reply (AssertionError if none came in time)."""
        self.send(packet, to, port)
        got = self.replies(xid, seconds)
        assert got, f"no DHCP reply to xid {xid:#x} from {to}:{port} within {seconds} s"
        return got[0][0]

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> DhcpClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def new_xid() -> int:
    return secrets.randbits(32)
