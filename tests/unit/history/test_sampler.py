"""Reading /proc: the parsers on captured text, rates between two readings, counters going back."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from appliance.history.sampler import (
    COLUMNS,
    Counters,
    Sources,
    parse_diskstats,
    parse_meminfo,
    parse_net_dev,
    parse_stat,
    rates,
)

STAT = """cpu  100 5 50 800 40 3 2 0 0 0
cpu0 50 2 25 400 20 1 1 0 0 0
intr 12345
"""
MEMINFO = """MemTotal:        8000000 kB
MemFree:         1000000 kB
MemAvailable:    6000000 kB
Buffers:          100000 kB
"""
NET_DEV = """Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop ...  (two header lines)
    lo: 999999     10    0    0    0     0          0         0   999999      10    0    0    0     0       0          0
  eth0: 1000       10    0    0    0     0          0         0     2000      20    0    0    0     0       0          0
   br0: 500         5    0    0    0     0          0         0      700       7    0    0    0     0       0          0
  tap1: 300         3    0    0    0     0          0         0      400       4    0    0    0     0       0          0
"""
DISKSTATS = """   8       0 sda 100 0 2000 10 50 0 4000 20 0 30 30 0 0 0 0
   8       1 sda1 90 0 1800 9 45 0 3600 18 0 27 27 0 0 0 0
   7       0 loop0 5 0 40 1 0 0 0 0 0 1 1 0 0 0 0
 253       0 dm-0 80 0 1700 8 40 0 3000 15 0 20 20 0 0 0 0
"""


def test_cpu_busy_leaves_out_idle_and_iowait() -> None:
    assert parse_stat(STAT) == (100 + 5 + 50 + 3 + 2, 1000)
    with pytest.raises(ValueError, match="no cpu line"):
        parse_stat("intr 1\n")


def test_memory_used_is_total_minus_available() -> None:
    assert parse_meminfo(MEMINFO) == (2000000 * 1024, 6000000 * 1024)
    with pytest.raises(ValueError, match="MemAvailable"):
        parse_meminfo("MemTotal: 1 kB\n")


def test_links_without_loopback_and_enslaved_ports() -> None:
    assert parse_net_dev(NET_DEV, skip={"tap1"}) == {"eth0": (1000, 2000), "br0": (500, 700)}


def test_disks_are_the_whole_disks_named_in_sectors_of_512() -> None:
    assert parse_diskstats(DISKSTATS, {"sda"}) == {"sda": (2000 * 512, 4000 * 512)}


def counters(at: float, busy: int, total: int, net: int, disk: int) -> Counters:
    return Counters(at, busy, total, 100, 200, {"eth0": (net, net * 2)}, {"sda": (disk, disk * 3)})


def test_rates_over_the_time_between_readings() -> None:
    before = counters(10.0, 100, 1000, 1000, 5000)
    after = counters(15.0, 150, 1200, 6000, 10000)
    sample = dict(zip(COLUMNS, rates(before, after), strict=True))
    assert sample == {
        "cpu": pytest.approx(25.0),
        "mem_used": 100.0,
        "mem_available": 200.0,
        "net_rx": pytest.approx(1000.0),
        "net_tx": pytest.approx(2000.0),
        "disk_read": pytest.approx(1000.0),
        "disk_write": pytest.approx(3000.0),
    }


def test_the_first_reading_has_memory_but_no_rates() -> None:
    sample = rates(None, counters(10.0, 1, 2, 3, 4))
    assert [math.isnan(v) for v in sample] == [True, False, False, True, True, True, True]


def test_a_counter_that_went_back_is_left_out_not_a_huge_rate() -> None:
    before = Counters(0.0, 0, 0, 1, 1, {"eth0": (5000, 5000), "eth1": (100, 100)}, {})
    after = Counters(5.0, 0, 0, 1, 1, {"eth0": (10, 10), "eth1": (600, 1100), "new0": (9999, 9999)}, {})
    sample = dict(zip(COLUMNS, rates(before, after), strict=True))
    assert sample["net_rx"] == pytest.approx(100.0)  # only eth1, which both readings have
    assert sample["net_tx"] == pytest.approx(200.0)
    assert math.isnan(sample["cpu"])  # no CPU time passed: no share to give


def test_sources_read_a_proc_and_sys_tree(tmp_path: Path) -> None:
    proc, sys = tmp_path / "proc", tmp_path / "sys"
    (proc / "net").mkdir(parents=True)
    (proc / "stat").write_text(STAT)
    (proc / "meminfo").write_text(MEMINFO)
    (proc / "net" / "dev").write_text(NET_DEV)
    (proc / "diskstats").write_text(DISKSTATS)
    (sys / "class" / "net" / "tap1").mkdir(parents=True)
    (sys / "class" / "net" / "tap1" / "master").symlink_to(sys / "class" / "net" / "br0")
    (sys / "class" / "net" / "eth0").mkdir()
    for name in ("sda", "loop0", "dm-0"):
        (sys / "block" / name).mkdir(parents=True)
    (sys / "block" / "sda" / "device").mkdir()
    read = Sources(proc, sys).read(1.0)
    assert read.net == {"eth0": (1000, 2000), "br0": (500, 700)}  # tap1 counted at br0
    assert read.disk == {"sda": (2000 * 512, 4000 * 512)}
    assert (read.cpu_busy, read.cpu_total) == (160, 1000)


def test_the_real_proc_reads(tmp_path: Path) -> None:
    read = Sources().read(1.0)
    assert read.cpu_total > 0
    assert read.mem_used + read.mem_available > 0
