"""One sample of the machine's load, read from /proc: CPU busy, memory, network and disk I/O.

`read_counters` reads the kernel's cumulative counters (`/proc/stat`, `/proc/meminfo`,
`/proc/net/dev`, `/proc/diskstats`) and `rates` turns two readings into one sample: the
columns of `COLUMNS`, rates per second over the time between the readings. The parsers are
plain functions of the files' text, so the arithmetic is tested without a machine.

What is counted:
- CPU: the share of all CPUs' time not idle and not waiting for I/O, in percent.
- memory: used (MemTotal - MemAvailable) and available, in bytes.
- network: received and sent bytes per second summed over the links of the node's network
  namespace, except loopback and links enslaved to a bridge or bond (their traffic is counted
  once, at the master). Encapsulated overlay traffic appears on the VXLAN's bridge and again
  on the physical link that carries it.
- disk: bytes read and written per second on whole disks: the block devices with a device
  behind them (`/sys/block/*/device`), so partitions, loop, device-mapper and md devices,
  which would count the same I/O twice, are left out.

A counter that went backwards (a link or disk that was replaced, a counter that wrapped) is
left out of that sample rather than read as a huge rate; the first reading has no rates (NaN).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

COLUMNS = ("cpu", "mem_used", "mem_available", "net_rx", "net_tx", "disk_read", "disk_write")
# The metric names of the API, and the columns each one is.
METRICS: dict[str, tuple[str, ...]] = {
    "cpu": ("cpu",),
    "memory": ("mem_used", "mem_available"),
    "net": ("net_rx", "net_tx"),
    "disk": ("disk_read", "disk_write"),
}
SECTOR = 512  # /proc/diskstats counts 512-byte sectors whatever the device's own size


@dataclass(frozen=True)
class Counters:
    """The kernel's cumulative counters at one moment (`at`: monotonic seconds)."""

    at: float
    cpu_busy: int  # jiffies, all CPUs
    cpu_total: int
    mem_used: int
    mem_available: int
    net: dict[str, tuple[int, int]] = field(default_factory=dict)  # link: (rx bytes, tx bytes)
    disk: dict[str, tuple[int, int]] = field(default_factory=dict)  # disk: (read bytes, written bytes)


def parse_stat(text: str) -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs from /proc/stat's `cpu` line."""
    for line in text.splitlines():
        if line.startswith("cpu "):
            fields = [int(v) for v in line.split()[1:]]
            # user nice system idle iowait irq softirq steal (guest and guest_nice are in user/nice)
            total = sum(fields[:8])
            idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
            return total - idle, total
    raise ValueError("no cpu line in /proc/stat")


def parse_meminfo(text: str) -> tuple[int, int]:
    """(used, available) bytes from /proc/meminfo."""
    values: dict[str, int] = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        if key in ("MemTotal", "MemAvailable"):
            values[key] = int(rest.split()[0]) * 1024
    if len(values) != 2:
        raise ValueError("MemTotal or MemAvailable missing from /proc/meminfo")
    return values["MemTotal"] - values["MemAvailable"], values["MemAvailable"]


def parse_net_dev(text: str, skip: set[str]) -> dict[str, tuple[int, int]]:
    """(rx, tx) bytes per link from /proc/net/dev, without loopback and the links in `skip`."""
    links: dict[str, tuple[int, int]] = {}
    for line in text.splitlines()[2:]:
        name, sep, rest = line.partition(":")
        name = name.strip()
        if not sep or name == "lo" or name in skip:
            continue
        fields = rest.split()
        links[name] = (int(fields[0]), int(fields[8]))
    return links


def parse_diskstats(text: str, disks: set[str]) -> dict[str, tuple[int, int]]:
    """(read, written) bytes of each of `disks` from /proc/diskstats."""
    found: dict[str, tuple[int, int]] = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 10 and fields[2] in disks:
            found[fields[2]] = (int(fields[5]) * SECTOR, int(fields[9]) * SECTOR)
    return found


Pairs = dict[str, tuple[int, int]]


def _delta_sum(before: Pairs, after: Pairs, seconds: float) -> tuple[float, float]:
    """Per-second growth of the two counters summed over what both readings have."""
    first = second = 0
    for name, (a, b) in after.items():
        old = before.get(name)
        if old is None or a < old[0] or b < old[1]:
            continue
        first += a - old[0]
        second += b - old[1]
    return first / seconds, second / seconds


def rates(before: Counters | None, after: Counters) -> tuple[float, ...]:
    """One sample in `COLUMNS` order: rates over the time from `before` to `after` (NaN without one)."""
    nan = math.nan
    memory = (float(after.mem_used), float(after.mem_available))
    seconds = after.at - before.at if before is not None else 0.0
    if before is None or seconds <= 0:
        return (nan, *memory, nan, nan, nan, nan)
    total = after.cpu_total - before.cpu_total
    busy = after.cpu_busy - before.cpu_busy
    cpu = min(100.0, max(0.0, 100.0 * busy / total)) if total > 0 else nan
    return (cpu, *memory, *_delta_sum(before.net, after.net, seconds), *_delta_sum(before.disk, after.disk, seconds))


class CounterSource(Protocol):
    """What the sampler reads its counters from (`Sources`; tests script their own)."""

    def read(self, at: float) -> Counters: ...


class Sources:
    """Where the counters are read: /proc and /sys by default (a test may point elsewhere)."""

    def __init__(self, proc: Path = Path("/proc"), sys: Path = Path("/sys")) -> None:
        self.proc = proc
        self.sys = sys

    def enslaved_links(self) -> set[str]:
        """Links with a master (bridge or bond ports): their traffic is counted at the master."""
        net = self.sys / "class" / "net"
        try:
            return {name for name in os.listdir(net) if os.path.lexists(net / name / "master")}
        except OSError:
            return set()

    def whole_disks(self) -> set[str]:
        """Block devices with a device behind them (no partitions, loop, dm or md)."""
        block = self.sys / "block"
        try:
            return {name for name in os.listdir(block) if os.path.exists(block / name / "device")}
        except OSError:
            return set()

    def read(self, at: float) -> Counters:
        """The counters now (`at`: the monotonic time of the reading). OSError/ValueError if unreadable."""
        busy, total = parse_stat((self.proc / "stat").read_text())
        used, available = parse_meminfo((self.proc / "meminfo").read_text())
        net = parse_net_dev((self.proc / "net" / "dev").read_text(), self.enslaved_links())
        disk = parse_diskstats((self.proc / "diskstats").read_text(), self.whole_disks())
        return Counters(at, busy, total, used, available, net, disk)
