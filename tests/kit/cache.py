"""The cache of things tests build or download once per machine (guest kernels, container
roots), and the file lock under which one pytest worker builds while the others wait.

DEBVISOR_TEST_CACHE moves it (DEBVISOR_GUEST_CACHE, its older name, still works); default
/var/cache/debvisor-tests.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

DEFAULT = "/var/cache/debvisor-tests"


def cache_dir() -> Path:
    """Where cached builds live."""
    return Path(os.environ.get("DEBVISOR_TEST_CACHE") or os.environ.get("DEBVISOR_GUEST_CACHE") or DEFAULT)


@contextlib.contextmanager
def locked(lock: Path) -> Iterator[None]:
    """Hold an exclusive lock on the file `lock` (made if missing) for the `with` block.

    The lock goes when the file closes, also when the holding process dies, so a killed
    build never blocks the next run; the builder must check again, under the lock, whether
    another process finished the work meanwhile.
    """
    lock.parent.mkdir(parents=True, exist_ok=True)
    with lock.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield
