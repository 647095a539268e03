"""Collect this machine's hardware inventory for PXE enlistment, from /proc and /sys.

CPU and memory come from `LinuxHost` (the same reads `/api/v1/node` shows); disks from
/sys/block (devices backed by hardware only: loop, ram, dm and md devices have no `device`
link and are left out), NICs from /sys/class/net (likewise: bridges, veths and taps are left
out), the system's identity from /sys/class/dmi/id. Everything is read relative to a root
directory, so tests run it against a fake tree. A file that is missing or unreadable (a VM
without DMI, a NIC that is down and cannot tell its speed) leaves its field empty rather
than failing: the report is for display, and an incomplete one is better than none.

Values are cut to the limits of `pxe.inventory` and stripped of control characters, so what
this side collects is always a report the boot server accepts. Deliberately left out:
sending it (`appliance.node.enlist`).
"""

from __future__ import annotations

import re
from pathlib import Path

from appliance.node.host import LinuxHost
from pxe.inventory import MAX_DISKS, MAX_NICS, DiskInfo, DmiInfo, Inventory, NicInfo

SECTOR = 512  # /sys/block/*/size counts 512-byte sectors whatever the device's block size
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")


def _read(path: Path) -> str | None:
    """A sysfs attribute's text, stripped; None if it cannot be read."""
    try:
        return path.read_text(errors="replace").strip()
    except OSError:  # missing, or EINVAL (a down NIC's speed), or EACCES (DMI serials for non-root)
        return None


def _clean(text: str | None, limit: int = 128) -> str:
    return _CONTROL.sub("", text or "").strip()[:limit]


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def disks(block: Path) -> list[DiskInfo]:
    """Block devices backed by hardware, by name."""
    found: list[DiskInfo] = []
    for entry in sorted(block.iterdir()) if block.is_dir() else []:
        if not (entry / "device").exists():
            continue
        sectors = _int(_read(entry / "size")) or 0
        rotational = _read(entry / "queue" / "rotational")
        found.append(
            DiskInfo(
                name=_clean(entry.name, 32),
                size_bytes=max(0, sectors) * SECTOR,
                model=_clean(_read(entry / "device" / "model")),
                serial=_clean(_read(entry / "serial") or _read(entry / "device" / "serial")),
                rotational=None if rotational not in ("0", "1") else rotational == "1",
            )
        )
    return found[:MAX_DISKS]


def nics(net: Path) -> list[NicInfo]:
    """Network interfaces backed by hardware, with an Ethernet address, by name."""
    found: list[NicInfo] = []
    for entry in sorted(net.iterdir()) if net.is_dir() else []:
        mac = (_read(entry / "address") or "").lower()
        if not (entry / "device").exists() or not _MAC.match(mac) or mac == "00:00:00:00:00:00":
            continue
        speed = _int(_read(entry / "speed"))
        carrier = _read(entry / "carrier")
        found.append(
            NicInfo(
                name=_clean(entry.name, 15),
                mac=mac,
                speed_mbps=speed if speed is not None and 0 <= speed <= 10_000_000 else None,
                link=None if carrier not in ("0", "1") else carrier == "1",
            )
        )
    return found[:MAX_NICS]


def dmi(dmi_id: Path) -> DmiInfo:
    """The system's vendor, product, serial and UUID as its firmware states them."""
    return DmiInfo(
        vendor=_clean(_read(dmi_id / "sys_vendor")),
        product=_clean(_read(dmi_id / "product_name")),
        serial=_clean(_read(dmi_id / "product_serial")),
        uuid=_clean(_read(dmi_id / "product_uuid")),
    )


def collect(*, name: str, version: str, root: Path = Path("/")) -> Inventory:
    """This machine's inventory (blocking file reads: run it in a thread)."""
    host = LinuxHost(root)
    cpu = host.cpu()
    try:
        memory = host.memory().total_bytes
    except (OSError, ValueError):
        memory = 0
    return Inventory(
        name=_clean(name, 253),
        cpu_model=_clean(cpu.model, 256),
        cpu_count=min(cpu.count, 65_536),
        memory_bytes=min(memory, 2**62),
        disks=disks(root / "sys" / "block"),
        nics=nics(root / "sys" / "class" / "net"),
        dmi=dmi(root / "sys" / "class" / "dmi" / "id"),
        version=_clean(version, 64),
    )


def boot_nic(inventory: Inventory, boot_mac: str | None) -> str | None:
    """The MAC to file the report under: BOOTIF's if given, else the first NIC with a link, else the first."""
    if boot_mac is not None:
        return boot_mac
    linked = [n.mac for n in inventory.nics if n.link]
    return next(iter(linked or [n.mac for n in inventory.nics]), None)
