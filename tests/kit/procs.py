"""Processes: what /proc says about them, and the one routine that stops a child.

`stop_process` is how every helper ends a child it started: a signal (to the whole process
group when the child leads one, so what it started goes too), a bounded wait, SIGKILL, and a
reap, so nothing is left behind for the leak check below or for the machine's slow PID 1.

`children` is the /proc walk the suite-wide leak check uses; `LONG_LIVED` holds the pids a
module-scoped fixture keeps across tests on purpose (it stops them itself).
`uids`/`assert_not_root` check that a daemon really dropped root, which its argv alone does
not prove.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from pathlib import Path
from typing import Any, NamedTuple

# Children that outlive one test on purpose (nodes of a module-scoped cluster fixture, which
# stops them itself); the leak check ignores them.
LONG_LIVED: set[int] = set()


class Stat(NamedTuple):
    """The fields of /proc/PID/stat the suite reads."""

    pid: int
    comm: str
    state: str
    ppid: int


def stat(pid: int) -> Stat:
    """Parse /proc/PID/stat; OSError when the process is gone."""
    text = Path(f"/proc/{pid}/stat").read_text()
    # "PID (COMM) STATE PPID ...": the name may hold spaces and parentheses; split at the last ")".
    comm = text[text.index("(") + 1 : text.rindex(")")]
    state, ppid = text[text.rindex(")") + 1 :].split()[:2]
    return Stat(pid, comm, state, int(ppid))


def processes() -> list[Stat]:
    """Every live process this test can see."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError):
                found.append(stat(int(entry.name)))
    return found


def children(parent: int | None = None, name: str | None = None) -> list[int]:
    """Pids of the live (not zombie) children of `parent` (default: this process), by `name` if given."""
    parent = os.getpid() if parent is None else parent
    return sorted(
        p.pid for p in processes() if p.ppid == parent and p.state != "Z" and (name is None or p.comm == name)
    )


def children_named(parent: int, name: str) -> list[int]:
    """Pids of the live children of `parent` whose command name is `name`."""
    return children(parent, name)


def cmdline(pid: int) -> str:
    """The command line of `pid`, "?" when it is gone."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "?"


def uids(pid: int) -> tuple[int, int, int, int]:
    """The real, effective, saved and filesystem uid of `pid` (the `Uid:` line of its status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            real, effective, saved, fs = (int(field) for field in line.split()[1:5])
            return real, effective, saved, fs
    raise LookupError(f"/proc/{pid}/status has no Uid line")


def assert_not_root(pid: int) -> None:
    """Fail unless every uid of `pid` is other than 0."""
    ids = uids(pid)
    assert 0 not in ids, f"process {pid} still runs with uid 0 somewhere: {ids}"


def signal_process(proc: subprocess.Popen[Any], sig: int) -> None:
    """Send `sig` to `proc`, to its whole process group when it leads one; nothing once reaped.

    Only while the child is unreaped is its pid (and so its process group id) surely ours.
    """
    if proc.returncode is not None:
        return
    try:
        if os.getpgid(proc.pid) == proc.pid:
            os.killpg(proc.pid, sig)
        else:
            proc.send_signal(sig)
    except ProcessLookupError:
        pass


def stop_process(
    proc: subprocess.Popen[Any], sig: int = signal.SIGTERM, *, timeout: float = 10.0, kill: bool = True
) -> int | None:
    """Stop `proc`: `sig`, wait up to `timeout` s, then (if `kill`) SIGKILL and reap.

    Returns the exit code (negative: the signal), or None when the process still runs
    (`kill=False`, or a process stuck in the kernel even after SIGKILL).
    """
    signal_process(proc, sig)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        if not kill:
            return None
    signal_process(proc, signal.SIGKILL)
    try:
        return proc.wait(timeout=5.0)  # SIGKILL is final unless the process is stuck in the kernel
    except subprocess.TimeoutExpired:
        return None
