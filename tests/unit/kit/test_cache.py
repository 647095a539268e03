"""tests/kit/cache.py: the build lock makes a second worker wait for the first, and the cache
directory follows its environment variable."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.kit.cache import cache_dir, locked

REPO = Path(__file__).resolve().parents[3]
HOLD = 0.5
HOLDER = """
import sys, time
from pathlib import Path
from tests.kit.cache import locked
with locked(Path(sys.argv[1])):
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def test_a_second_worker_waits_for_the_lock_the_first_holds(tmp_path: Path) -> None:
    lock = tmp_path / "root.lock"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(lock), str(HOLD)],
        cwd=REPO,
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == b"held\n"
        started = time.monotonic()
        with locked(lock):
            waited = time.monotonic() - started
        assert waited > HOLD / 2  # it could not take the lock while the other process held it
    finally:
        holder.wait(10)
        if holder.stdout:
            holder.stdout.close()
    assert holder.returncode == 0


def test_the_cache_directory_follows_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("DEBVISOR_TEST_CACHE", raising=False)
    monkeypatch.delenv("DEBVISOR_GUEST_CACHE", raising=False)
    assert cache_dir() == Path("/var/cache/debvisor-tests")
    monkeypatch.setenv("DEBVISOR_GUEST_CACHE", str(tmp_path / "old"))
    assert cache_dir() == tmp_path / "old"
    monkeypatch.setenv("DEBVISOR_TEST_CACHE", str(tmp_path / "new"))
    assert cache_dir() == tmp_path / "new"
