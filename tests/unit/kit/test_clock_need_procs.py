"""tests/kit: the fake clock, the availability checks and the stop routine."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from tests.kit.clock import FakeClock
from tests.kit.need import kernel_has, require, require_kernel, require_tool
from tests.kit.procs import children, cmdline, stat, stop_process, uids


def test_the_fake_clock_moves_only_when_told() -> None:
    clock = FakeClock(100.0)
    assert clock() == 100.0
    clock.advance(2.5)
    clock.sleep(0.5)
    clock.now += 1
    assert clock() == 104.0
    assert FakeClock()() == 1_800_000_000.0


def test_require_skips_on_a_laptop_and_fails_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DEBVISOR_REQUIRE_INTEGRATION", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no such thing"):
        require(False, "no such thing")
    with pytest.raises(pytest.skip.Exception, match="definitely-not-a-program-x9 is missing"):
        require_tool("sh", "definitely-not-a-program-x9")
    monkeypatch.setenv("DEBVISOR_REQUIRE_INTEGRATION", "1")
    with pytest.raises(pytest.fail.Exception, match="required component missing: the kernel lacks no_such_module_x9"):
        require_kernel("no_such_module_x9")
    require(True, "never shown")
    require_tool("sh")


def test_kernel_features_are_read_without_changing_anything() -> None:
    assert kernel_has("netns") == os.path.exists("/proc/self/ns/net")
    assert kernel_has("no_such_module_x9") is False


def test_stop_process_terminates_then_kills_a_child_that_ignores_sigterm() -> None:
    polite = subprocess.Popen(["sleep", "30"], start_new_session=True)
    stubborn = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print(1, flush=True); time.sleep(30)",
        ],
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    assert stubborn.stdout is not None
    assert stubborn.stdout.readline() == b"1\n"  # the handler is set
    stubborn.stdout.close()
    assert stat(stubborn.pid).ppid == os.getpid()
    assert stubborn.pid in children()
    assert "SIG_IGN" in cmdline(stubborn.pid)
    assert uids(stubborn.pid)[1] == os.geteuid()
    assert stop_process(polite, timeout=5.0) == -signal.SIGTERM
    started = time.monotonic()
    assert stop_process(stubborn, timeout=0.3, kill=False) is None  # still running, not killed
    assert stop_process(stubborn, timeout=0.3) == -signal.SIGKILL
    assert time.monotonic() - started < 5.0
    assert stubborn.pid not in children()
    assert stop_process(stubborn) == -signal.SIGKILL  # a reaped child: nothing is signalled
