"""Filters of the list routes and conversions of systemd's answers (tuples, property dicts)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from appliance.units.listing import (
    U64_MAX,
    FilterError,
    UnitFilter,
    counter,
    details_from,
    timer_from,
    timestamp,
    unit_files_from,
    unit_name_of_path,
    units_from,
)
from appliance.units.types import Unit, UnitFile

ROWS = [
    ["ssh.service", "OpenBSD Secure Shell", "loaded", "active", "running", "", "/p/ssh", 0, "", "/"],
    ["apt-daily.timer", "Daily apt", "loaded", "active", "waiting", "", "/p/apt", 0, "", "/"],
    ["broken.service", "Broken", "loaded", "failed", "failed", "", "/p/broken", 0, "", "/"],
    ["gone.service", "gone.service", "not-found", "inactive", "dead", "", "/p/gone", 7, "start", "/j/7"],
]


def names(units: Sequence[Unit | UnitFile]) -> list[str]:
    return [u.name for u in units]


def test_no_filter_lists_every_unit_sorted() -> None:
    assert names(units_from(ROWS, UnitFilter())) == ["apt-daily.timer", "broken.service", "gone.service", "ssh.service"]


def test_filters_combine_and_their_values_are_alternatives() -> None:
    keep = UnitFilter.parse(types="service", active="active,failed")
    assert names(units_from(ROWS, keep)) == ["broken.service", "ssh.service"]
    assert names(units_from(ROWS, UnitFilter.parse(load="not-found"))) == ["gone.service"]
    assert names(units_from(ROWS, UnitFilter.parse(sub="waiting"))) == ["apt-daily.timer"]
    assert names(units_from(ROWS, UnitFilter.parse(pattern="*s*.service", active="active"))) == ["ssh.service"]


def test_a_queued_job_is_named_by_its_type() -> None:
    (gone,) = units_from(ROWS, UnitFilter.parse(pattern="gone.*"))
    assert gone.job == "start"
    assert units_from(ROWS, UnitFilter.parse(pattern="ssh.service"))[0].job == ""


@pytest.mark.parametrize(
    ("kwargs", "says"),
    [
        ({"types": "service,bogus"}, "unknown unit type bogus"),
        ({"active": "Active"}, "active:"),
        ({"sub": "run;ning"}, "sub:"),
        ({"pattern": ""}, "pattern:"),
        ({"pattern": "x" * 300}, "pattern:"),
    ],
)
def test_bad_filters_are_refused_with_the_reason(kwargs: dict[str, str], says: str) -> None:
    with pytest.raises(FilterError, match=says):
        UnitFilter.parse(**kwargs)


def test_unit_files_take_their_name_from_the_path_and_filter_by_state() -> None:
    rows = [("/etc/systemd/system/a.service", "enabled"), ("/lib/systemd/system/b.timer", "disabled")]
    files = unit_files_from(rows, UnitFilter.parse(states="enabled"))
    assert [(f.name, f.path, f.state) for f in files] == [("a.service", "/etc/systemd/system/a.service", "enabled")]
    assert names(unit_files_from(rows, UnitFilter.parse(types="timer"))) == ["b.timer"]


@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("/org/freedesktop/systemd1/unit/ssh_2eservice", "ssh.service"),
        ("/org/freedesktop/systemd1/unit/getty_40tty1_2eservice", "getty@tty1.service"),
        ("/org/freedesktop/systemd1/unit/etc_2dmachine_5cx2did_2emount", "etc-machine\\x2did.mount"),
        ("/org/freedesktop/systemd1/unit/_2d_2emount", "-.mount"),
        ("/org/freedesktop/systemd1/job/12", None),
        ("/org/freedesktop/systemd1/unit/", None),
    ],
)
def test_unit_object_paths_unescape_to_names(path: str, name: str | None) -> None:
    assert unit_name_of_path(path) == name


def test_sentinels_mean_not_tracked_or_never() -> None:
    assert counter(U64_MAX) is None
    assert counter(12) == 12
    assert counter("12") is None
    assert counter(True) is None
    assert timestamp(0) is None
    assert timestamp(U64_MAX) is None
    assert timestamp(1_500_000) == 1.5


def test_details_convert_units_and_sentinels() -> None:
    props = {
        "Id": "web.service",
        "Description": "Web",
        "LoadState": "loaded",
        "ActiveState": "active",
        "SubState": "running",
        "UnitFileState": "enabled",
        "UnitFilePreset": "enabled",
        "StateChangeTimestamp": 1_700_000_000_000_000,
        "MainPID": 42,
        "MemoryCurrent": 4096,
        "CPUUsageNSec": 2_500_000_000,
        "TasksCurrent": U64_MAX,
        "NRestarts": 3,
        "Result": "success",
        "FragmentPath": "/etc/systemd/system/web.service",
        "DropInPaths": ["/etc/systemd/system/web.service.d/override.conf"],
        "Requires": ["b.service", "a.service"],
        "WantedBy": ["multi-user.target"],
        "Job": [0, "/"],
    }
    details = details_from("web.service", props, protected=False)
    assert details.since == 1_700_000_000.0
    assert (details.main_pid, details.memory_bytes, details.cpu_seconds, details.tasks) == (42, 4096, 2.5, None)
    assert details.restarts == 3
    assert details.requires == ["a.service", "b.service"]
    assert details.wanted_by == ["multi-user.target"]
    assert details.wants == []
    assert details.job == ""
    idle = details_from("t.target", {"MainPID": 0, "Job": [5, "/j/5"]}, protected=True)
    assert idle.main_pid is None
    assert idle.job == "queued"
    assert idle.protected


def test_timers_take_the_earlier_elapse_and_convert_monotonic_ones() -> None:
    props = {
        "Unit": "backup.service",
        "ActiveState": "active",
        "SubState": "waiting",
        "LastTriggerUSec": 1_000_000_000_000_000,
        "NextElapseUSecRealtime": 2_000_000_000_000_000,
        "NextElapseUSecMonotonic": 50_000_000,  # 50 s after boot; now is 20 s after boot
        "Result": "success",
    }
    timer = timer_from("backup.timer", props, now=1_999_999_000.0, monotonic_now_usec=20_000_000)
    assert timer.unit == "backup.service"
    assert timer.last == 1_000_000_000.0
    assert timer.next == pytest.approx(1_999_999_030.0)
    only_realtime = timer_from("b.timer", {**props, "NextElapseUSecMonotonic": 0}, now=0.0, monotonic_now_usec=0)
    assert only_realtime.next == 2_000_000_000.0
    idle = timer_from("c.timer", {"NextElapseUSecRealtime": 0, "LastTriggerUSec": 0}, now=0.0, monotonic_now_usec=0)
    assert (idle.last, idle.next) == (None, None)
