"""tests/kit/daemon.py: a daemon's log is kept, shown when a wait fails, and attached to a failed test."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.kit.daemon import Daemon, DaemonExited
from tests.kit.wait import WaitTimeout

REPO = Path(__file__).resolve().parents[3]


def test_a_daemon_that_dies_fails_the_wait_at_once_with_its_log(tmp_path: Path) -> None:
    daemon = Daemon(["sh", "-c", "echo 'bind: address in use' >&2; exit 3"], tmp_path / "d.log", name="broken")
    daemon.start()
    with pytest.raises(DaemonExited) as raised:
        daemon.wait_ready(lambda: False, timeout=30.0, what="the socket")
    assert "broken exited with 3 before the socket" in str(raised.value)
    assert "bind: address in use" in str(raised.value)
    assert daemon.stop() == 3
    assert daemon.text() == "bind: address in use\n"  # kept after the stop


def test_a_wait_that_times_out_names_the_daemon_and_shows_its_log_and_stop_reaps_it(tmp_path: Path) -> None:
    daemon = Daemon(["sh", "-c", "echo starting; echo out-only >&1; exec sleep 30"], tmp_path / "d.log", name="slow")
    with daemon:
        assert daemon.wait_for_log("starting", timeout=10.0) < 10.0
        with pytest.raises(WaitTimeout) as raised:
            daemon.wait_ready(lambda: False, timeout=0.2, what="a port")
        assert str(raised.value).startswith("slow: timed out after 0.2 s waiting for a port")
        assert "starting" in str(raised.value)
        assert daemon.running
    assert not daemon.running
    assert daemon.returncode == -15  # SIGTERM


def test_stdout_can_go_to_its_own_file(tmp_path: Path) -> None:
    daemon = Daemon(
        ["sh", "-c", "echo to-out; echo to-err >&2; exec sleep 30"], tmp_path / "err", stdout_log=tmp_path / "out"
    )
    daemon.start()
    daemon.wait_ready(lambda: "to-err" in daemon.text() and "to-out" in daemon.stdout(), 10.0)
    daemon.stop()
    assert daemon.stdout() == "to-out\n"
    assert daemon.text() == "to-err\n"


def test_a_failed_test_report_carries_the_logs_of_the_daemons_it_ran(tmp_path: Path) -> None:
    inner = tmp_path / "test_inner.py"
    inner.write_text(
        textwrap.dedent(
            """
            from pathlib import Path
            from tests.kit.daemon import Daemon

            def test_fails(tmp_path: Path) -> None:
                argv = ["sh", "-c", "echo the-daemon-said-this; exec sleep 30"]
                with Daemon(argv, tmp_path / "x.log", name="chatty") as d:
                    d.wait_for_log("the-daemon-said-this", 10.0)
                    assert False, "the test's own assertion"

            def test_passes(tmp_path: Path) -> None:
                with Daemon(["sh", "-c", "echo quiet-one; exec sleep 30"], tmp_path / "y.log", name="quiet") as d:
                    d.wait_for_log("quiet-one", 10.0)
            """
        )
    )
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "tests.conftest", "-p", "no:cacheprovider", "-q", str(inner)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 1, run.stdout + run.stderr
    assert "1 failed, 1 passed" in run.stdout
    assert "daemon log: chatty" in run.stdout
    assert "the-daemon-said-this" in run.stdout
    assert "exited -15" in run.stdout  # stopped by the with block before the report was made
    assert "quiet-one" not in run.stdout  # a passing test's daemon is not shown
