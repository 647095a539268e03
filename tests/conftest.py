"""Suite-wide rules: tests leave no processes behind, CI never skips a real component, and a
failed test shows the logs of the daemons it ran.

The helpers live in tests/kit (docs/development.md, "The test kit").
"""

from __future__ import annotations

from collections.abc import Generator, Iterator

import pytest

from tests.kit.daemon import WATCHED
from tests.kit.need import require
from tests.kit.procs import LONG_LIVED, children, cmdline

# The kit's, re-exported for tests written before it; new tests import them from tests.kit.
__all__ = ["LONG_LIVED", "require"]


@pytest.fixture(autouse=True)
def _no_leaked_processes() -> Iterator[None]:
    """Fail a test that leaves a child process running."""
    before = set(children())
    yield
    leaked = set(children()) - before - LONG_LIVED
    if leaked:
        names = [f"{pid}:{cmdline(pid)[:80]}" for pid in sorted(leaked)]
        pytest.fail(f"test leaked child processes: {', '.join(names)}", pytrace=False)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Attach the log of every daemon this test ran (and of those still running) to its failure."""
    report = yield
    if report.failed:
        for daemon in WATCHED:
            report.sections.append((f"daemon log: {daemon.name}", daemon.report()))
    if call.when == "teardown":
        WATCHED[:] = [d for d in WATCHED if d.running]
    return report
