"""What a transient run is checked for before systemd sees it, and the properties it gets."""

from __future__ import annotations

import math

import pytest

from appliance.units.transient import (
    TransientError,
    TransientRun,
    check_run,
    service_properties,
    timer_properties,
    unit_names,
)


def test_names() -> None:
    assert unit_names("backup_db-1") == ("debvisor-run-backup_db-1.service", "debvisor-run-backup_db-1.timer")


@pytest.mark.parametrize(
    ("run", "path"),
    [
        (TransientRun(name="Upper", command=["/bin/true"]), "$.name"),
        (TransientRun(name="a.b", command=["/bin/true"]), "$.name"),
        (TransientRun(name="x" * 65, command=["/bin/true"]), "$.name"),
        (TransientRun(name="ok", command=[]), "$.command"),
        (TransientRun(name="ok", command=["true"]), "$.command"),
        (TransientRun(name="ok", command=["/bin/echo", "a\x00b"]), "$.command"),
        (TransientRun(name="ok", command=["/bin/true"], on_active_sec=0), "$.on_active_sec"),
        (TransientRun(name="ok", command=["/bin/true"], on_active_sec=math.nan), "$.on_active_sec"),
        (TransientRun(name="ok", command=["/bin/true"], on_active_sec=5, on_calendar="daily"), "$.on_calendar"),
        (TransientRun(name="ok", command=["/bin/true"], on_calendar=" "), "$.on_calendar"),
        (TransientRun(name="ok", command=["/bin/true"], wait_seconds=-1), "$.wait_seconds"),
        (TransientRun(name="ok", command=["/bin/true"], wait_seconds=math.inf), "$.wait_seconds"),
    ],
)
def test_bad_runs_are_refused_naming_the_field(run: TransientRun, path: str) -> None:
    with pytest.raises(TransientError) as refused:
        check_run(run)
    assert (refused.value.status, refused.value.path) == (422, path)


def test_properties_systemd_gets() -> None:
    run = TransientRun(name="later", command=["/usr/bin/env", "A=1", "true"], on_active_sec=2.5)
    check_run(run)
    service = dict(service_properties(run))
    assert service["Type"].value == "oneshot"
    assert service["ExecStart"].signature == "a(sasb)"
    assert service["ExecStart"].value == [["/usr/bin/env", ["/usr/bin/env", "A=1", "true"], False]]
    timer = dict(timer_properties(run))
    assert timer["OnActiveSec"].value == 2_500_000
    assert timer["AccuracySec"].value == 1_000_000
    assert timer["RemainAfterElapse"].value is False
    calendar = dict(timer_properties(TransientRun(name="c", command=["/bin/true"], on_calendar="*-*-* 03:00")))
    assert calendar["OnCalendar"].value == "*-*-* 03:00"
    assert "OnActiveSec" not in calendar
