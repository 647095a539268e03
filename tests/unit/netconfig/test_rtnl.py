"""netconfig.rtnl against pyroute2 itself: the requests it sends are the bytes pyroute2 would
send for the same call, its decoding of answers gives the values pyroute2's does, and every
answer is matched to its request (errors to the request that caused them)."""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from pyroute2 import IPBatch
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl import RTM_NEWADDR, RTM_NEWLINK, RTM_NEWNEIGH, RTM_NEWROUTE
from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
from pyroute2.netlink.rtnl.marshal import MarshalRtnl
from pyroute2.netlink.rtnl.ndmsg import ndmsg
from pyroute2.netlink.rtnl.rtmsg import rtmsg

from netconfig.rtnl import BOND_DATA, BRIDGE_DATA, VLAN_DATA, VXLAN_DATA, Rtnl, _message

HEADER = struct.Struct("=LHHLL")


class FakeSocket:
    """Records what is sent; answers each request with what `answer(seq, data)` returns."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.queue: list[bytes] = []
        self.answer: Callable[[int, bytes], list[bytes]] = lambda seq, data: [ack(seq)]

    def send(self, data: bytes) -> int:
        self.sent.append(bytes(data))
        seq = HEADER.unpack_from(data)[3]
        self.queue += self.answer(seq, data)
        return len(data)

    def recvmsg(self, size: int) -> tuple[bytes, list[Any], int, Any]:
        if not self.queue:
            raise AssertionError("read with nothing queued")
        return self.queue.pop(0), [], 0, None


def ack(seq: int, code: int = 0, msg_type: int = 2, flags: int = 0) -> bytes:
    return HEADER.pack(36, msg_type, flags, seq, 0) + struct.pack("=i", code) + bytes(16)


@pytest.fixture
def batch() -> Iterator[Any]:
    ipb = IPBatch()
    try:
        yield ipb
    finally:
        ipb.close()


def normalised(data: bytes) -> bytes:
    """`data` (one message) with the sequence number and port id zeroed."""
    return data[:8] + bytes(8) + data[16:]


CALLS: list[tuple[str, str, dict[str, Any]]] = [
    ("link", "add", {"ifname": "br0", "kind": "bridge", "br_stp_state": 0}),
    ("link", "add", {"ifname": "br1", "kind": "bridge", "br_stp_state": 1, "br_vlan_filtering": 1}),
    (
        "link",
        "add",
        {
            "ifname": "vx0",
            "kind": "vxlan",
            "vxlan_id": 1000,
            "vxlan_port": 4789,
            "vxlan_learning": 0,
            "vxlan_local": "10.93.0.1",
            "vxlan_link": 3,
        },
    ),
    (
        "link",
        "add",
        {
            "ifname": "vx6",
            "kind": "vxlan",
            "vxlan_id": 7,
            "vxlan_port": 8472,
            "vxlan_learning": 1,
            "vxlan_local6": "fd00::1",
            "vxlan_group6": "ff05::7",
        },
    ),
    (
        "link",
        "add",
        {
            "ifname": "bond0",
            "kind": "bond",
            "bond_mode": 4,
            "bond_miimon": 100,
            "bond_ad_lacp_rate": 1,
            "bond_xmit_hash_policy": 1,
        },
    ),
    ("link", "add", {"ifname": "mgmt0", "kind": "vlan", "link": 3, "vlan_id": 10}),
    ("link", "set", {"index": 4, "mtu": 9000}),
    ("link", "set", {"index": 4, "state": "up"}),
    ("link", "set", {"index": 4, "state": "down"}),
    ("link", "set", {"index": 4, "master": 7}),
    ("link", "set", {"index": 4, "master": 0}),
    ("link", "set", {"index": 4, "ifname": "lan0"}),
    ("link", "set", {"index": 7, "kind": "bridge", "br_stp_state": 1}),
    ("link", "set", {"index": 2, "kind": "bond", "bond_miimon": 200, "bond_primary": 1}),
    ("link", "del", {"index": 9}),
    ("addr", "add", {"index": 4, "address": "10.93.0.1", "prefixlen": 24}),
    ("addr", "add", {"index": 4, "address": "fd00:93::1", "prefixlen": 64}),
    ("addr", "del", {"index": 4, "address": "10.93.0.1", "prefixlen": 24}),
    (
        "route",
        "add",
        {
            "proto": 4,
            "oif": 4,
            "table": 254,
            "priority": None,
            "dst": "10.93.16.0",
            "dst_len": 20,
            "family": socket.AF_INET,
            "gateway": "10.93.0.254",
        },
    ),
    (
        "route",
        "add",
        {
            "proto": 4,
            "oif": 4,
            "table": 254,
            "priority": 100,
            "dst_len": 0,
            "family": socket.AF_INET6,
            "gateway": "fd00:93::fe",
        },
    ),
    ("route", "add", {"proto": 4, "oif": 4, "table": 254, "priority": None, "dst_len": 0, "family": socket.AF_INET}),
    (
        "route",
        "del",
        {
            "oif": 4,
            "table": 254,
            "priority": 100,
            "dst": "fd00:93:100::",
            "dst_len": 48,
            "family": socket.AF_INET6,
            "gateway": "fd00:93::fe",
        },
    ),
    ("fdb", "append", {"ifindex": 5, "lladdr": "00:00:00:00:00:00", "dst": "10.93.0.2"}),
    ("fdb", "append", {"ifindex": 5, "lladdr": "00:00:00:00:00:00", "dst": "fd00:93::2"}),
    ("fdb", "del", {"ifindex": 5, "lladdr": "00:00:00:00:00:00", "dst": "10.93.0.2"}),
]


@pytest.mark.parametrize(
    ("method", "command", "kwargs"), CALLS, ids=[f"{m}-{c}-{i}" for i, (m, c, _) in enumerate(CALLS)]
)
def test_requests_are_the_bytes_pyroute2_sends(batch: Any, method: str, command: str, kwargs: dict[str, Any]) -> None:
    batch.reset()
    getattr(batch, method)(command, **dict(kwargs))
    expected = bytes(batch.asyncore.batch)
    channel = Rtnl(batch)
    fake = FakeSocket()
    batch.asyncore.local.socket = fake  # the calling thread's socket, as pyroute2 keeps it
    getattr(channel, method)(command, **dict(kwargs))
    assert len(fake.sent) == 1
    assert normalised(fake.sent[0]) == normalised(expected)


def _encoded(message: Any, msg_type: int) -> bytes:
    message["header"]["type"] = msg_type
    message.encode()
    return bytes(message.data)


def _both(data: bytes) -> tuple[Any, Any]:
    theirs = next(iter(MarshalRtnl().parse(data)))
    ours = _message(HEADER.unpack_from(data)[1], data, 0, len(data))
    assert ours is not None
    return theirs, ours


LINK_KINDS: list[tuple[str, list[tuple[str, Any]], dict[int, tuple[str, Any]]]] = [
    ("bridge", [("IFLA_BR_STP_STATE", 1), ("IFLA_BR_VLAN_FILTERING", 1)], BRIDGE_DATA),
    (
        "bond",
        [
            ("IFLA_BOND_MODE", 4),
            ("IFLA_BOND_MIIMON", 100),
            ("IFLA_BOND_PRIMARY", 3),
            ("IFLA_BOND_XMIT_HASH_POLICY", 2),
            ("IFLA_BOND_AD_LACP_RATE", 1),
        ],
        BOND_DATA,
    ),
    ("vlan", [("IFLA_VLAN_ID", 10)], VLAN_DATA),
    (
        "vxlan",
        [
            ("IFLA_VXLAN_ID", 1000),
            ("IFLA_VXLAN_GROUP", "239.1.1.1"),
            ("IFLA_VXLAN_LINK", 3),
            ("IFLA_VXLAN_LOCAL", "10.93.0.1"),
            ("IFLA_VXLAN_LEARNING", 0),
            ("IFLA_VXLAN_PORT", 4789),
            ("IFLA_VXLAN_GROUP6", "ff05::7"),
            ("IFLA_VXLAN_LOCAL6", "fd00:93::1"),
        ],
        VXLAN_DATA,
    ),
]


@pytest.mark.parametrize(("kind", "data", "table"), LINK_KINDS, ids=[k for k, _, _ in LINK_KINDS])
def test_link_messages_decode_as_pyroute2_decodes_them(kind: str, data: list[tuple[str, Any]], table: Any) -> None:
    message = ifinfmsg()
    message["index"] = 5
    message["flags"] = 0x1043
    message["attrs"] = [
        ("IFLA_IFNAME", "x0"),
        ("IFLA_ADDRESS", "02:AB:00:00:00:01"),
        ("IFLA_MTU", 1450),
        ("IFLA_LINK", 3),
        ("IFLA_MASTER", 7),
        ("IFLA_PERM_ADDRESS", "02:ab:00:00:00:99"),
        ("IFLA_LINKINFO", {"attrs": [("IFLA_INFO_KIND", kind), ("IFLA_INFO_DATA", {"attrs": data})]}),
    ]
    theirs, ours = _both(_encoded(message, RTM_NEWLINK))
    for field in ("index", "flags"):
        assert ours[field] == theirs[field]
    for name in ("IFLA_IFNAME", "IFLA_ADDRESS", "IFLA_MTU", "IFLA_LINK", "IFLA_MASTER", "IFLA_PERM_ADDRESS"):
        assert ours.get(name) == theirs.get(name), name
    info, their_info = ours.get("IFLA_LINKINFO"), theirs.get("IFLA_LINKINFO")
    assert info.get("IFLA_INFO_KIND") == their_info.get("IFLA_INFO_KIND") == kind
    names = [name for name, _ in table.values()]
    assert sorted(names) == sorted(name for name, _ in data)  # every attribute the adapter reads is covered
    for name in names:
        assert info.get("IFLA_INFO_DATA").get(name) == their_info.get("IFLA_INFO_DATA").get(name), name
    assert ours.get("IFLA_OPERSTATE") is None  # not decoded: the adapter does not read it


def test_bond_member_and_bridge_vlan_attributes_decode_as_pyroute2_decodes_them() -> None:
    message = ifinfmsg()
    message["index"] = 4
    message["family"] = 7  # AF_BRIDGE: what a VLAN dump answers
    message["attrs"] = [
        ("IFLA_IFNAME", "eth1"),
        (
            "IFLA_LINKINFO",
            {
                "attrs": [
                    ("IFLA_INFO_SLAVE_KIND", "bond"),
                    ("IFLA_INFO_SLAVE_DATA", {"attrs": [("IFLA_BOND_SLAVE_PERM_HWADDR", "02:00:00:00:00:aa")]}),
                ]
            },
        ),
        (
            "IFLA_AF_SPEC",
            {
                "attrs": [
                    ("IFLA_BRIDGE_FLAGS", 0),
                    ("IFLA_BRIDGE_VLAN_INFO", {"flags": 6, "vid": 1}),
                    ("IFLA_BRIDGE_VLAN_INFO", {"flags": 0, "vid": 20}),
                ]
            },
        ),
    ]
    theirs, ours = _both(_encoded(message, RTM_NEWLINK))
    slave, their_slave = ours.get("IFLA_LINKINFO"), theirs.get("IFLA_LINKINFO")
    assert slave.get("IFLA_INFO_SLAVE_KIND") == their_slave.get("IFLA_INFO_SLAVE_KIND") == "bond"
    name = "IFLA_BOND_SLAVE_PERM_HWADDR"
    assert slave.get("IFLA_INFO_SLAVE_DATA").get(name) == their_slave.get("IFLA_INFO_SLAVE_DATA").get(name)
    vlans = [
        {"vid": x["vid"], "flags": x["flags"]} for x in theirs.get("IFLA_AF_SPEC").get_attrs("IFLA_BRIDGE_VLAN_INFO")
    ]
    assert (
        ours.get("IFLA_AF_SPEC").get_attrs("IFLA_BRIDGE_VLAN_INFO")
        == vlans
        == [
            {"vid": 1, "flags": 6},
            {"vid": 20, "flags": 0},
        ]
    )


@pytest.mark.parametrize("family", [socket.AF_INET, socket.AF_INET6])
def test_address_route_and_fdb_messages_decode_as_pyroute2_decodes_them(family: int) -> None:
    six = family == socket.AF_INET6
    address = ifaddrmsg()
    address.update({"family": family, "prefixlen": 64 if six else 24, "index": 4})
    address["attrs"] = [
        ("IFA_ADDRESS", "fd00:93::1" if six else "10.93.0.1"),
        ("IFA_LOCAL", "fd00:93::1" if six else "10.93.0.1"),
    ]
    route = rtmsg()
    route.update({"family": family, "dst_len": 48 if six else 20, "table": 254, "proto": 4, "type": 1})
    route["attrs"] = [
        ("RTA_DST", "fd00:93:100::" if six else "10.93.16.0"),
        ("RTA_OIF", 4),
        ("RTA_GATEWAY", "fd00:93::fe" if six else "10.93.0.254"),
        ("RTA_PRIORITY", 100),
        ("RTA_TABLE", 254),
    ]
    peer = ndmsg()
    peer.update({"family": 7, "ifindex": 5, "state": 0xC0, "flags": 2})
    peer["attrs"] = [("NDA_DST", "fd00:93::2" if six else "10.93.0.2"), ("NDA_LLADDR", "00:00:00:00:00:00")]
    checks = [
        (address, RTM_NEWADDR, ("family", "prefixlen", "index"), ("IFA_ADDRESS", "IFA_LOCAL")),
        (
            route,
            RTM_NEWROUTE,
            ("family", "dst_len", "table", "proto", "type"),
            ("RTA_DST", "RTA_OIF", "RTA_GATEWAY", "RTA_PRIORITY", "RTA_TABLE"),
        ),
        (peer, RTM_NEWNEIGH, ("family", "ifindex", "state"), ("NDA_DST", "NDA_LLADDR")),
    ]
    for message, msg_type, fields, names in checks:
        theirs, ours = _both(_encoded(message, msg_type))
        for field in fields:
            assert ours[field] == theirs[field], field
        for name in names:
            assert ours.get(name) == theirs.get(name) is not None, name


def test_an_error_belongs_to_its_own_request_and_stale_answers_are_skipped(batch: Any) -> None:
    channel = Rtnl(batch)
    fake = FakeSocket()
    batch.asyncore.local.socket = fake  # the calling thread's socket, as pyroute2 keeps it
    fake.answer = lambda seq, data: [ack(seq - 1, -17) + ack(seq + 5, -1), ack(seq, -19)]  # stale first
    with pytest.raises(NetlinkError) as failed:
        channel.link("set", index=4, mtu=9000)
    assert failed.value.code == 19
    assert fake.queue == []
    fake.answer = lambda seq, data: [ack(seq)]
    channel.link("set", index=4, mtu=9000)  # the next request is not confused by the last one's error


def test_a_dump_reads_every_part_and_is_taken_again_when_interrupted(batch: Any) -> None:
    channel = Rtnl(batch)
    fake = FakeSocket()
    batch.asyncore.local.socket = fake  # the calling thread's socket, as pyroute2 keeps it
    attempts: list[int] = []

    def link(seq: int, index: int, flags: int = 0) -> bytes:
        message = ifinfmsg()
        message["index"] = index
        message["attrs"] = [("IFLA_IFNAME", f"l{index}")]
        message["header"].update({"type": RTM_NEWLINK, "sequence_number": seq, "flags": flags})
        message.encode()
        return bytes(message.data)

    def answer(seq: int, data: bytes) -> list[bytes]:
        attempts.append(seq)
        interrupted = 0x10 if len(attempts) == 1 else 0
        return [link(seq, 1) + link(seq, 2), link(seq, 3, interrupted) + ack(seq, msg_type=3)]

    fake.answer = answer
    assert [m.get("IFLA_IFNAME") for m in channel.get_links()] == ["l1", "l2", "l3"]
    assert len(attempts) == 2
    assert struct.unpack_from("=I", fake.sent[0], HEADER.size + 20)[0] == 1 << 3  # statistics left out
