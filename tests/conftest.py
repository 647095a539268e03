"""Suite-wide rules: tests leave no processes behind, and CI never skips a real component.

`require(condition, reason)` is how a test states what it needs from the machine. On a
laptop a missing component is a skip with the reason; with DEBVISOR_REQUIRE_INTEGRATION=1
(as `.ci/run` sets) it is a failure, so CI cannot pass by skipping.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

REQUIRE_INTEGRATION = os.environ.get("DEBVISOR_REQUIRE_INTEGRATION") == "1"

# Children that outlive one test on purpose (nodes of a module-scoped cluster fixture, which
# stops them itself); the leak check below ignores them.
LONG_LIVED: set[int] = set()


def require(condition: bool, reason: str) -> None:
    """Skip (locally) or fail (in CI) the calling test unless `condition` holds."""
    if condition:
        return
    if REQUIRE_INTEGRATION:
        pytest.fail(f"required component missing: {reason}", pytrace=False)
    pytest.skip(reason)


def _children() -> set[int]:
    me = os.getpid()
    result: set[int] = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # Field 4 is the parent pid; the command name in field 2 may contain spaces.
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == me and fields[0] != "Z":
            result.add(int(entry.name))
    return result


@pytest.fixture(autouse=True)
def _no_leaked_processes() -> Iterator[None]:
    """Fail a test that leaves a child process running."""
    before = _children()
    yield
    leaked = _children() - before - LONG_LIVED
    if leaked:
        names = []
        for pid in sorted(leaked):
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                cmdline = "?"
            names.append(f"{pid}:{cmdline[:80]}")
        pytest.fail(f"test leaked child processes: {', '.join(names)}", pytrace=False)
