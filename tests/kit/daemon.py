"""A long-running child process under test: started with its output in a log file, waited
for with a deadline, stopped with one routine, and its log attached to a failed test.

Every real component the suite starts (a node, dnsmasq, libvirtd, a container) is a
`Daemon`. What goes wrong with such tests is mostly in the daemon's log, not in the
assertion, so the kit keeps the log where a failure shows it: `wait_ready` puts the tail in
its error, and the suite's `pytest_runtest_makereport` hook (tests/conftest.py) adds the log
of every daemon started during a failed test (and of those still running) to its report.

Left out on purpose: restarts, health supervision, and output parsing; a test does that
with `wait_ready` and its own predicate.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from tests.kit.procs import LONG_LIVED, signal_process, stop_process
from tests.kit.wait import WaitTimeout, describe, wait_until

TAIL = 3000  # characters of log in an error message
REPORT_TAIL = 10000  # and in a failed test's report, per daemon

Spawn = Callable[..., "subprocess.Popen[Any]"]


# Daemons started and not yet reported on: the conftest hook attaches their logs to a failed
# test and forgets the stopped ones after each test.
WATCHED: list[Daemon] = []


class DaemonExited(RuntimeError):
    """The daemon ended while a test waited for it."""


class Daemon:
    """One child process whose output goes to `log` (stdout to `stdout_log` if given); other
    keyword arguments go to `subprocess.Popen` (`stdout=` there overrides the log)."""

    def __init__(
        self,
        argv: Sequence[str],
        log: Path,
        *,
        name: str | None = None,
        stdout_log: Path | None = None,
        spawn: Spawn | None = None,
        stop_signal: int = signal.SIGTERM,
        stop_timeout: float = 10.0,
        long_lived: bool = False,
        **popen: Any,
    ) -> None:
        self.argv = list(argv)
        self.log = log
        self.stdout_path = stdout_log
        self.name = name or Path(self.argv[0]).name
        self.stop_signal = stop_signal
        self.stop_timeout = stop_timeout
        self.long_lived = long_lived  # kept across tests by a module-scoped fixture
        self._spawn: Spawn = spawn or subprocess.Popen
        self._popen = popen
        self.proc: subprocess.Popen[Any] | None = None

    # -- life ---------------------------------------------------------------------------------

    def start(self) -> Daemon:
        """Start the process; output is appended to the log (a restart keeps the earlier run)."""
        if self.running:
            raise RuntimeError(f"{self.name} is already running")
        self.log.parent.mkdir(parents=True, exist_ok=True)
        kwargs: dict[str, Any] = {"stdin": subprocess.DEVNULL, "start_new_session": True, **self._popen}
        with contextlib.ExitStack() as files:
            err = files.enter_context(self.log.open("ab"))
            out = files.enter_context(self.stdout_path.open("ab")) if self.stdout_path else err
            kwargs.setdefault("stdout", out)
            kwargs.setdefault("stderr", err if self.stdout_path else subprocess.STDOUT)
            self.proc = self._spawn(self.argv, **kwargs)
        if self.long_lived:
            LONG_LIVED.add(self.proc.pid)
        if self not in WATCHED:
            WATCHED.append(self)
        return self

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise RuntimeError(f"{self.name} was never started")
        return self.proc.pid

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def wait_ready(
        self, predicate: Callable[[], object], timeout: float = 30.0, interval: float = 0.05, *, what: str = ""
    ) -> float:
        """Wait until `predicate()` holds; the seconds it took.

        Fails at once with `DaemonExited` when the process ends meanwhile, and with
        `WaitTimeout` at the deadline; both messages carry the log's tail.
        """
        what = what or describe(predicate)

        def ready() -> object:
            return not self.running or predicate()  # an exit ends the wait at once; told below

        try:
            took = wait_until(ready, timeout, interval, what=what)
        except WaitTimeout as timed_out:
            raise WaitTimeout(f"{self.name}: {timed_out}\n{self.tail()}") from None
        if not self.running:
            raise DaemonExited(f"{self.name} exited with {self.returncode} before {what}:\n{self.tail()}")
        return took

    def wait_for_log(self, text: str, timeout: float = 30.0) -> float:
        """Wait until `text` appears in the log."""
        return self.wait_ready(lambda: text in self.text(), timeout, what=f"{text!r} in {self.name}'s log")

    def signal(self, sig: int) -> None:
        """Send `sig` to the daemon (and its process group)."""
        if self.proc is not None:
            signal_process(self.proc, sig)

    def stop(self, timeout: float | None = None, sig: int | None = None) -> int | None:
        """Stop it: the stop signal, up to `timeout` s, SIGKILL, reap. Its exit code; None if never started."""
        if self.proc is None:
            return None
        code = stop_process(
            self.proc,
            self.stop_signal if sig is None else sig,
            timeout=self.stop_timeout if timeout is None else timeout,
        )
        LONG_LIVED.discard(self.proc.pid)
        return code

    def kill(self) -> int | None:
        """SIGKILL it at once (a crash, as tests of failure detection want) and reap."""
        return self.stop(timeout=0.0, sig=signal.SIGKILL)

    # -- its log --------------------------------------------------------------------------------

    def text(self) -> str:
        """Everything in the log so far."""
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def stdout(self) -> str:
        """What went to the separate stdout file (the log when there is none)."""
        if self.stdout_path is None:
            return self.text()
        try:
            return self.stdout_path.read_text(errors="replace")
        except OSError:
            return ""

    def tail(self, chars: int = TAIL) -> str:
        return self.text()[-chars:]

    def report(self) -> str:
        """A heading and the log tail, as attached to a failed test's report."""
        state = "running" if self.running else f"exited {self.returncode}"
        pid = self.proc.pid if self.proc else "-"
        return f"{' '.join(self.argv)[:300]}\n({state}, pid {pid}, log {self.log})\n{self.tail(REPORT_TAIL)}"

    def __enter__(self) -> Daemon:
        return self.start()

    def __exit__(self, *_: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.stop()
