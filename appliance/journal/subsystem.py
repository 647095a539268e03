"""The journal subsystem: its routes, reading the managed machine's journal with journalctl.

`host_root` is the root of the machine whose journal it reads: `/` for the node's own, or a
container's root path when a node manages a systemd container from outside (labs, tests:
`debvisor serve --host-root`). Nothing runs in the background: journalctl is started per
page and per followed stream, and ended with it.
"""

from __future__ import annotations

from pathlib import Path

from appliance.journal.controller import journal_routes
from appliance.journal.reader import Journal
from appliance.subsystem import Core, Subsystem


def build(core: Core, *, host_root: Path = Path("/"), journalctl: str = "journalctl") -> Subsystem:
    journal = Journal(host_root, journalctl)
    return Subsystem(name="journal", routes=[journal_routes(journal, forwarder=core.forwarder)])
