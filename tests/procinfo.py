"""What /proc says about a running process: its user ids, and the children with a given name.

Tests use it to check that a daemon really dropped root (`dnsmasq --user`), which its argv
alone does not prove: the process could have kept uid 0 or never got that far.
"""

from __future__ import annotations

from pathlib import Path


def uids(pid: int) -> tuple[int, int, int, int]:
    """The real, effective, saved and filesystem uid of `pid` (the `Uid:` line of its status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            real, effective, saved, fs = (int(field) for field in line.split()[1:5])
            return real, effective, saved, fs
    raise LookupError(f"/proc/{pid}/status has no Uid line")


def children_named(parent: int, name: str) -> list[int]:
    """Pids of the live children of `parent` whose command name is `name`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # "PID (COMM) STATE PPID ...": the name may hold spaces and parentheses; split at the last ")".
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        state, ppid = stat.rsplit(")", 1)[1].split()[:2]
        if comm == name and int(ppid) == parent and state != "Z":
            found.append(int(entry.name))
    return sorted(found)


def assert_not_root(pid: int) -> None:
    """Fail unless every uid of `pid` is other than 0."""
    ids = uids(pid)
    assert 0 not in ids, f"process {pid} still runs with uid 0 somewhere: {ids}"
