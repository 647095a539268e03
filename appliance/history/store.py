"""The node's history archives and their file: loaded at start, saved now and then and at stop.

The archives (appliance/history/rrd.py) are written to `<data dir>/history/history.bin` as
one msgpack document holding the arrays' raw bytes: about as large as the arrays themselves,
read and written in milliseconds. A save writes a temporary file, fsyncs it and renames it
over the old one, so a crash leaves the previous file or the new one, never half of either.

A missing file starts empty; an unreadable one (corrupt, another version's layout, another
byte order) is moved aside as `history.bin.bad` and the history starts empty, with one log
line saying why: losing a history is better than refusing to start. An archive whose shape
changed (other step or length) starts empty by itself; the others are kept.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import msgspec

from appliance.history.rrd import ArchiveState, RoundRobin, Shape, Window

log = logging.getLogger(__name__)

FORMAT = 1
FILE_NAME = "history.bin"
SUBDIR = "history"

# 1 hour at 5 s, 1 day at 1 min, 1 week at 10 min (the ranges the API serves).
SHAPES = (Shape("1h", 5, 720), Shape("1d", 60, 1440), Shape("1w", 600, 1008))


class Saved(msgspec.Struct, frozen=True, kw_only=True):
    """The file's content."""

    format: int
    byteorder: str
    columns: list[str]
    archives: dict[str, ArchiveState]


_DECODER = msgspec.msgpack.Decoder(Saved)


class HistoryStore:
    """Round-robin archives of `columns`, persisted at `path`."""

    def __init__(self, path: Path, columns: Sequence[str], shapes: Sequence[Shape] = SHAPES) -> None:
        self.path = path
        self.rrd = RoundRobin(columns, shapes)
        self.changed = False  # something was added since the last `encode`

    @property
    def nbytes(self) -> int:
        return self.rrd.nbytes

    def add(self, t: float, values: Sequence[float]) -> None:
        self.rrd.add(t, values)
        self.changed = True

    def window(self, range_name: str, now: float, columns: Sequence[str]) -> Window:
        """The archive serving `range_name` over its whole span up to `now`, for `columns`."""
        indexes = [self.rrd.columns.index(c) for c in columns]
        return self.rrd.archives[range_name].window(now, indexes)

    def load(self) -> None:
        """Read the file if there is one (see the module docstring for what an unreadable one does)."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            log.info("no resource history at %s yet; starting empty", self.path)
            return
        except OSError as exc:
            log.warning("cannot read the resource history %s (%s); starting empty", self.path, exc)
            return
        try:
            saved = _DECODER.decode(raw)
            if saved.format != FORMAT or saved.byteorder != sys.byteorder:
                raise ValueError(f"format {saved.format}, {saved.byteorder}-endian")
            if tuple(saved.columns) != self.rrd.columns:
                raise ValueError(f"columns {saved.columns}")
        except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as exc:
            self._set_aside(f"unreadable ({exc})")
            return
        for name, archive in self.rrd.archives.items():
            state = saved.archives.get(name)
            if state is None:
                continue
            try:
                archive.restore(state)
            except ValueError as exc:
                archive.clear_all()
                log.warning("resource history %s: archive %s starts empty: %s", self.path, name, exc)
        log.info("resource history loaded from %s", self.path)

    def _set_aside(self, why: str) -> None:
        bad = self.path.with_name(self.path.name + ".bad")
        with contextlib.suppress(OSError):
            os.replace(self.path, bad)
        log.warning("resource history %s is %s; moved to %s, starting empty", self.path, why, bad.name)
        self.rrd.clear()

    def encode(self) -> bytes:
        """The archives as the file holds them (and from now on they count as unchanged)."""
        self.changed = False
        saved = Saved(
            format=FORMAT,
            byteorder=sys.byteorder,
            columns=list(self.rrd.columns),
            archives={name: a.state() for name, a in self.rrd.archives.items()},
        )
        return msgspec.msgpack.encode(saved)

    def save(self) -> None:
        """Write the archives atomically (`write` of `encode`) if anything was added since the
        last save; a failed write leaves them marked as changed."""
        if not self.changed:
            return
        try:
            self.write(self.encode())
        except OSError:
            self.changed = True
            raise

    def write(self, data: bytes) -> None:
        """Write encoded archives atomically (temporary file, fsync, rename, fsync of the
        directory); safe in a worker thread, as it touches no archive."""
        self.path.parent.mkdir(mode=0o700, exist_ok=True)
        temporary = self.path.with_name(self.path.name + ".tmp")
        with open(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, self.path)
        directory = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
