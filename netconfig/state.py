"""What netconfig keeps on disk, in a state directory the caller chooses.

    applied.json   the last configuration applied and confirmed: it says which links
                   DebVisor manages, so a link dropped from the next configuration is
                   deleted rather than forgotten
    pending.json   a commit-confirmed change in its window: the new configuration, the
                   snapshot to return to, the deadline (wall-clock seconds, so it survives
                   a restart of the service)
    outcome.json   how the last pending change ended (confirmed / rolled back, and why), so
                   a CLI waiting on it in another shell learns the result
    lock           flock(2) held while a change is being applied, confirmed or rolled back

Every file is written atomically (temporary file, fsync, rename, fsync of the directory), so
a crash leaves the old or the new version, never half of one. Left out: history of older
configurations (the audit log records changes), and locking across machines.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Literal, TypeVar

import msgspec

from netconfig.model import NetworkConfig

APPLIED = "applied.json"
PENDING = "pending.json"
OUTCOME = "outcome.json"
LOCK = "lock"

_T = TypeVar("_T")


class Pending(msgspec.Struct, frozen=True, kw_only=True):
    """A change applied but not yet confirmed."""

    id: str  # random, to tell one pending change from the next
    desired: NetworkConfig
    snapshot: NetworkConfig  # the managed links as they were before the change
    previous: NetworkConfig | None  # applied.json before the change
    started: float  # wall-clock seconds
    deadline: float  # wall-clock seconds; rolled back after this unless confirmed
    check: str | None = None  # address that had to answer after the change


class Outcome(msgspec.Struct, frozen=True, kw_only=True):
    """How a pending change ended."""

    id: str
    result: Literal["confirmed", "rolled-back"]
    reason: str = ""


class StateDir:
    """The files of one state directory (created with mode 0700 on first write)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def applied(self) -> NetworkConfig | None:
        """The last confirmed configuration, or None if there has been none."""
        return self._read(APPLIED, NetworkConfig)

    def pending(self) -> Pending | None:
        """The change in its confirm window, if any."""
        return self._read(PENDING, Pending)

    def outcome(self) -> Outcome | None:
        """How the last pending change ended."""
        return self._read(OUTCOME, Outcome)

    def write_applied(self, config: NetworkConfig) -> None:
        self._write(APPLIED, msgspec.json.encode(config))

    def write_pending(self, pending: Pending) -> None:
        self._write(PENDING, msgspec.json.encode(pending))

    def finish_pending(self, outcome: Outcome) -> None:
        """Record how the pending change ended and remove it (in that order)."""
        self._write(OUTCOME, msgspec.json.encode(outcome))
        with contextlib.suppress(FileNotFoundError):
            (self.path / PENDING).unlink()
        self._sync_dir()

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the directory's lock (blocking) for the duration."""
        self._ensure()
        fd = os.open(self.path / LOCK, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def _ensure(self) -> None:
        self.path.mkdir(mode=0o700, parents=True, exist_ok=True)

    def _read(self, name: str, kind: type[_T]) -> _T | None:
        try:
            data = (self.path / name).read_bytes()
        except FileNotFoundError:
            return None
        try:
            return msgspec.json.decode(data, type=kind)
        except msgspec.DecodeError as exc:
            raise StateError(f"{self.path / name} is damaged: {exc}") from None

    def _write(self, name: str, data: bytes) -> None:
        self._ensure()
        target = self.path / name
        temporary = self.path / f".{name}.tmp"
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, target)
        self._sync_dir()

    def _sync_dir(self) -> None:
        fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class StateError(RuntimeError):
    """A state file cannot be read."""
