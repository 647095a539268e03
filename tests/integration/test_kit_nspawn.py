"""tests/kit/nspawn.py: the cached Debian root boots with systemd as PID 1, answers on its system
bus (from inside and from the host), runs commands, and stops cleanly without changing the cache.

The first run builds the root (about a minute, from the Debian mirror); later runs reuse it
and boot in about a second.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from tests.kit.nspawn import COMPLETE, Container, debian_root
from tests.kit.procs import children

pytestmark = [pytest.mark.integration, pytest.mark.privileged, pytest.mark.systemd]

MANAGER = ("org.freedesktop.systemd1", "/org/freedesktop/systemd1", "org.freedesktop.DBus.Properties", "Get")


def test_the_root_boots_to_running_and_systemd_answers_on_its_system_bus(tmp_path: Path) -> None:
    started = time.monotonic()
    root = debian_root()
    built = time.monotonic() - started
    assert (root / COMPLETE).exists()
    print(f"\nroot ready in {built:.1f} s ({(root / COMPLETE).read_text().strip()})")

    booting = time.monotonic()
    with Container(root, tmp_path) as box:
        print(f"booted to {box.state()} in {time.monotonic() - booting:.2f} s")
        assert box.state() == "running", box.run(["systemctl", "--failed", "--no-legend"], check=False).stdout
        assert box.run(["cat", "/proc/1/comm"]).stdout.strip() == "systemd"

        # busctl inside, over the container's own system bus
        version = box.run(["busctl", "call", *MANAGER, "ss", "org.freedesktop.systemd1.Manager", "Version"])
        assert version.stdout.startswith('v s "252'), version.stdout

        # and from the host, through the socket under /proc/LEADER/root (how tests reach units)
        state = subprocess.run(
            ["busctl", "--address", box.bus_address(), "call", *MANAGER, "ss", MANAGER[0] + ".Manager", "SystemState"],
            capture_output=True, text=True, timeout=10, check=True,
        )  # fmt: skip
        assert state.stdout.strip() == 'v s "running"'

        # a unit started through systemd runs, and what the container writes stays in it
        box.run(["systemd-run", "--unit", "kit-probe", "--wait", "sh", "-c", "echo hello > /root/probe"])
        assert box.run(["cat", "/root/probe"]).stdout == "hello\n"
        assert box.leader is not None
        assert box.leader in children(box.daemon.pid)  # PID 1 inside is nspawn's child outside

        stopping = time.monotonic()
    assert box.daemon.returncode == 0, box.daemon.tail()
    print(f"stopped in {time.monotonic() - stopping:.2f} s")
    assert time.monotonic() - stopping < 10
    assert not (root / "root" / "probe").exists()  # the overlay kept the cached root unchanged
    assert time.monotonic() - booting < 60
