"""Keep dnsmasq running: start it as a child, restart it with back-off when it dies, stop it cleanly.

dnsmasq runs in the foreground (`--keep-in-foreground`, log to stderr), so it stays this
process's child: its lines go to our log (and to an optional callback, e.g. enlistment or a
test watching TFTP transfers), and it cannot outlive a clean stop. A restart waits
`initial_backoff`, doubling per failure up to `max_backoff`; a run that lasted
`stable_seconds` resets the back-off. Deliberately left out: rendering the argv (`pxe.dnsmasq`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence

log = logging.getLogger(__name__)


class Supervisor:
    """One supervised child process, started by `start()` and ended by `stop()`."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        on_line: Callable[[str], None] | None = None,
        initial_backoff: float = 0.5,
        max_backoff: float = 30.0,
        stable_seconds: float = 10.0,
        stop_timeout: float = 5.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.argv = list(argv)
        self.on_line = on_line
        self.initial_backoff = initial_backoff
        self.max_backoff = max_backoff
        self.stable_seconds = stable_seconds
        self.stop_timeout = stop_timeout
        self._monotonic = monotonic
        self._proc: asyncio.subprocess.Process | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self.starts = 0  # how many times the child was started
        self.last_exit: int | None = None

    @property
    def pid(self) -> int | None:
        """The running child's PID, or None between runs."""
        proc = self._proc
        return proc.pid if proc is not None and proc.returncode is None else None

    def start(self) -> None:
        """Start supervising (in the running loop)."""
        if self._task is None:
            self._stopping.clear()
            self._task = asyncio.create_task(self._run(), name=f"supervise {self.argv[0]}")

    async def stop(self) -> None:
        """SIGTERM the child, SIGKILL it after `stop_timeout`, and wait for it."""
        self._stopping.set()
        proc = self._proc
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), self.stop_timeout)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        backoff = self.initial_backoff
        while not self._stopping.is_set():
            started = self._monotonic()
            try:
                code = await self._run_once()
            except OSError as exc:  # not found, not executable
                log.error("cannot start %s: %s", self.argv[0], exc)
                code = None
            self.last_exit = code
            if self._stopping.is_set():
                return
            if self._monotonic() - started >= self.stable_seconds:
                backoff = self.initial_backoff
            log.warning("%s exited (%s); restarting in %.1f s", self.argv[0], code, backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self.max_backoff)

    async def _run_once(self) -> int:
        proc = await asyncio.create_subprocess_exec(
            *self.argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        self._proc = proc
        self.starts += 1
        log.info("started %s (pid %d)", self.argv[0], proc.pid)
        try:
            assert proc.stdout is not None
            async for raw in proc.stdout:
                line = raw.decode(errors="replace").rstrip()
                log.info("%s: %s", self.argv[0], line)
                if self.on_line is not None:
                    self.on_line(line)
            return await proc.wait()
        except asyncio.CancelledError:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
            raise
