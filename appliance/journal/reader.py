"""Reading the journal by running journalctl and streaming its output.

A page starts journalctl reading in the direction it needs (forward after a cursor, backward
from a cursor or from the newest entry), takes entries from its pipe one line at a time until
it has `limit` (plus one, to know whether there are more), and then ends the process: the
rest of the journal is never read, so a page costs the same on a journal of a gigabyte as on
one of a kilobyte. A followed stream reads the same pipe for as long as its client stays,
handing each entry on before it reads the next: a slow client stops journalctl at a full pipe
instead of filling the node's memory. A line longer than `MAX_LINE` bytes (journalctl with
`--all` prints whole fields) is skipped, never buffered whole.

At most `MAX_PAGES` pages are read at once (a caller waits for a slot) and `MAX_FOLLOWERS`
streams are open at once (one more is refused with `JournalBusy`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import msgspec

from appliance.journal.entries import JournalEntry, parse_entry
from appliance.journal.query import JournalQuery, follow_args, page_args

MAX_LINE = 1024 * 1024
MAX_PAGES = 4
MAX_FOLLOWERS = 32
STDERR_KEEP = 2048
READ_CHUNK = 64 * 1024

log = logging.getLogger(__name__)


class JournalUnavailable(RuntimeError):
    """journalctl cannot be run here; the message says why."""


class JournalFailed(RuntimeError):
    """journalctl refused the query (a boot that is not in the journal...); its message."""


class JournalBusy(RuntimeError):
    """Too many followed streams are open on this node."""


class JournalPage(msgspec.Struct, frozen=True, kw_only=True):
    """Entries oldest first. `more`: further entries exist in the direction read (older ones for
    a page read backward, that is without `after`; newer ones for a page read after a cursor)."""

    entries: list[JournalEntry]
    more: bool


class _Lines:
    """Lines of a stream, each at most `MAX_LINE` bytes; longer ones are skipped as they pass."""

    def __init__(self, stream: asyncio.StreamReader) -> None:
        self._stream = stream

    async def next(self) -> bytes | None:
        """The next line (without its newline), or None at the end of the stream."""
        while True:
            try:
                line = await self._stream.readuntil(b"\n")
            except asyncio.IncompleteReadError as exc:
                return exc.partial or None
            except asyncio.LimitOverrunError as exc:
                await self._skip(exc.consumed)
                continue
            return line[:-1]

    async def _skip(self, consumed: int) -> None:
        """Drop the over-long line the stream is in, without holding it."""
        await self._stream.readexactly(consumed)
        while True:
            try:
                await self._stream.readuntil(b"\n")
                return
            except asyncio.LimitOverrunError as exc:
                await self._stream.readexactly(exc.consumed)
            except asyncio.IncompleteReadError:
                return
            log.debug("skipped a journal line longer than %d bytes", MAX_LINE)


class _Process:
    """A running journalctl: its lines, what it said on stderr, and its end."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        assert process.stdout is not None
        assert process.stderr is not None
        self.lines = _Lines(process.stdout)
        self._stderr = bytearray()
        self._drain = asyncio.create_task(self._read_stderr(process.stderr), name="journalctl-stderr")

    async def _read_stderr(self, stream: asyncio.StreamReader) -> None:
        while chunk := await stream.read(READ_CHUNK):
            if len(self._stderr) < STDERR_KEEP:
                self._stderr += chunk[: STDERR_KEEP - len(self._stderr)]

    async def entries(self) -> AsyncIterator[JournalEntry]:
        while (line := await self.lines.next()) is not None:
            entry = parse_entry(line)
            if entry is not None:
                yield entry

    async def finish(self) -> None:
        """Wait for the end; raise JournalFailed if journalctl failed. An exit status without a
        word on stderr is not a failure: journalctl --grep exits 1 when nothing matched."""
        await self.process.wait()
        with contextlib.suppress(asyncio.CancelledError):
            await self._drain
        said = self._stderr.decode("utf-8", errors="replace").strip().splitlines()
        if self.process.returncode != 0 and said:
            raise JournalFailed(said[0])

    async def end(self) -> None:
        """Stop it now (it may be blocked writing to a pipe nobody reads any more). What is left
        in the pipe is read and dropped: asyncio reports the exit only once the pipe is closed,
        and a full buffer would have paused its reading."""
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
        assert self.process.stdout is not None
        while await self.process.stdout.read(READ_CHUNK):
            pass
        await self.process.wait()
        self._drain.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._drain


class Journal:
    """The managed machine's journal (the one under `root`) read through `journalctl`."""

    def __init__(self, root: Path = Path("/"), journalctl: str = "journalctl") -> None:
        self.root = root
        self.journalctl = journalctl
        self._pages = asyncio.Semaphore(MAX_PAGES)
        self.followers = 0

    def _command(self) -> str:
        found = shutil.which(self.journalctl)
        if found is None:
            raise JournalUnavailable(f"{self.journalctl} is not installed on this node")
        return found

    async def _spawn(self, argv: Sequence[str]) -> _Process:
        try:
            process = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                limit=MAX_LINE,
                env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "SYSTEMD_COLORS": "0"},
            )
        except OSError as exc:
            raise JournalUnavailable(f"cannot run {argv[0]}: {exc}") from exc
        return _Process(process)

    async def page(self, query: JournalQuery) -> JournalPage:
        """One page of entries matching `query` (see the module docstring)."""
        argv = page_args(self._command(), self.root, query)
        forward = query.after is not None
        entries: list[JournalEntry] = []
        more = False
        async with self._pages:
            running = await self._spawn(argv)
            try:
                async for entry in running.entries():
                    if entry.cursor == query.before:
                        continue  # reading back from a cursor starts at its own entry
                    if len(entries) == query.limit:
                        more = True
                        break
                    entries.append(entry)
                if not more:
                    await running.finish()
            finally:
                await running.end()
        if not forward:
            entries.reverse()
        return JournalPage(entries=entries, more=more)

    @contextlib.asynccontextmanager
    async def follow(self, query: JournalQuery) -> AsyncIterator[AsyncIterator[JournalEntry]]:
        """Entries from `query.after` (or the last `query.limit`) on, as they are written, for as
        long as the `async with` lasts; journalctl is ended when it does."""
        argv = follow_args(self._command(), self.root, query)
        if self.followers >= MAX_FOLLOWERS:
            raise JournalBusy(f"{MAX_FOLLOWERS} journal streams are open on this node; try again later")
        self.followers += 1
        try:
            running = await self._spawn(argv)
            try:
                yield self._followed(running)
            finally:
                await running.end()
        finally:
            self.followers -= 1

    async def _followed(self, running: _Process) -> AsyncIterator[JournalEntry]:
        async for entry in running.entries():
            yield entry
        await running.finish()  # journalctl --follow ends only on an error
