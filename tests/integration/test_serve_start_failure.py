"""`debvisor serve` when a subsystem's start fails: one line, a non-zero exit, nothing left behind.

No subsystem fails to start on purpose, so the test runs the real command in a real process
with one start replaced (the PXE boot server's, the last of the node's own subsystems, so
every other one has started and must be unwound). The gossip and API ports are real; after
the exit the same data dir starts again cleanly, which it could not if the lock, the database
or a listening socket had been left behind.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.nodeproc import NodeProcess, free_port

pytestmark = pytest.mark.integration

BROKEN_START = textwrap.dedent(
    """
    import sys
    from pxe.service import PxeService

    async def start(self):
        raise OSError("the boot-file listener's device\\nis gone")

    PxeService.start = start
    from appliance.cli import main
    sys.exit(main(sys.argv[1:]))
    """
)


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def test_a_failed_start_exits_with_one_line_and_leaves_nothing_running(tmp_path: Path) -> None:
    data = tmp_path / "node"
    api, gossip = free_port(), free_port()
    result = subprocess.run(
        [sys.executable, "-c", BROKEN_START, "serve", "--data-dir", str(data), "--api", f"127.0.0.1:{api}",
         "--gossip", f"127.0.0.1:{gossip}", "--name", "n1", "--log-format", "text"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[-1] == "debvisor: pxe did not start: the boot-file listener's device is gone", result.stderr
    assert "Traceback" not in result.stderr
    assert _bindable(gossip)
    assert _bindable(api)
    with NodeProcess(data) as node:  # the lock, the database and the ports were all released
        node.wait_ready()
