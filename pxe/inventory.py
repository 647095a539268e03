"""What a PXE-booted machine reports about itself: the wire types of `POST /pxe/enlist`.

The machine that sends this has no credentials (it has only just booted), so every field is
bounded (string and list lengths, number ranges), control characters are refused, and unknown
fields are an error that names them. Nothing in here is trusted for anything but display: no
decision (name, join token, boot settings) is ever taken from a reported value.

Shared by the receiving side (`pxe.http`, stored by `pxe.enlistment`) and the reporting side
(`appliance.node.inventory` collects it, `appliance.node.enlist` posts it). New fields get
defaults, so an older machine's report still decodes.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

MAX_BODY_BYTES = 64 * 1024
MAX_DISKS = 256
MAX_NICS = 64
MAC_PATTERN = r"^[0-9A-Fa-f]{2}([:-][0-9A-Fa-f]{2}){5}$"
_PRINTABLE = r"^[^\x00-\x1f\x7f]*$"  # no control characters (newlines, escapes) in what is displayed


def _text(max_length: int) -> msgspec.Meta:
    return msgspec.Meta(max_length=max_length, pattern=_PRINTABLE)


Text = Annotated[str, _text(128)]
Mac = Annotated[str, msgspec.Meta(pattern=MAC_PATTERN, description="aa:bb:cc:dd:ee:ff or aa-bb-cc-dd-ee-ff")]
Bytes = Annotated[int, msgspec.Meta(ge=0, le=2**62)]


class DiskInfo(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One block device (/sys/block/NAME), partitions and virtual devices left out."""

    name: Annotated[str, _text(32)]
    size_bytes: Bytes
    model: Text = ""
    serial: Text = ""
    rotational: bool | None = None  # None: the kernel did not say


class NicInfo(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One network interface with a hardware address (/sys/class/net/NAME)."""

    name: Annotated[str, _text(15)]
    mac: Mac
    speed_mbps: Annotated[int, msgspec.Meta(ge=0, le=10_000_000)] | None = None  # None: unknown (no link)
    link: bool | None = None  # carrier; None: the interface is down, so the kernel cannot tell


class DmiInfo(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The system's DMI/SMBIOS identity (/sys/class/dmi/id); empty where the firmware says nothing."""

    vendor: Text = ""
    product: Text = ""
    serial: Text = ""
    uuid: Text = ""


class Inventory(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A machine's hardware and software, as it reports it (display only)."""

    name: Annotated[str, _text(253)] = ""  # its host or node name, whatever it calls itself
    cpu_model: Annotated[str, _text(256)] = ""
    cpu_count: Annotated[int, msgspec.Meta(ge=0, le=65_536)] = 0
    memory_bytes: Bytes = 0
    disks: Annotated[list[DiskInfo], msgspec.Meta(max_length=MAX_DISKS)] = []
    nics: Annotated[list[NicInfo], msgspec.Meta(max_length=MAX_NICS)] = []
    dmi: DmiInfo = DmiInfo()
    version: Annotated[str, _text(64)] = ""  # the appliance's version


class EnlistPost(Inventory, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The body of `POST /pxe/enlist`: the inventory, and the MAC of the NIC the machine booted from."""

    mac: Mac


def inventory_of(post: EnlistPost) -> Inventory:
    """The inventory part of a report (the MAC is the record's key, not part of what it says)."""
    fields = msgspec.structs.asdict(post)
    del fields["mac"]
    return Inventory(**fields)
