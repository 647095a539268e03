"""What a node tells the operator standing at it, and systemd, once it serves.

A node booted from the image has no shell login (root's password is locked) and writes its
bootstrap admin password to a file on its data partition: without help, whoever installed it
could not log in the first time. So when the API is up the node writes a login banner for
the console's getty (an issue file: the image links /etc/issue.d/50-debvisor.issue to
`/run/debvisor/console.issue`): the node's name and the URLs of its web UI, and, while the
bootstrap admin has not chosen a password yet, that initial password. The console is where
the operator already has the machine in hand; the journal never sees the password.

It then tells systemd the service is ready (sd_notify READY=1, for `Type=notify`): units
ordered after debvisor.service, the console's getty among them, start once the API answers.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Sequence
from pathlib import Path

log = logging.getLogger(__name__)

ISSUE_PATH = Path("/run/debvisor/console.issue")


def render_issue(name: str, version: str, urls: Sequence[str], initial_password: str | None) -> str:
    """The banner agetty prints above its login prompt (backslashes escaped: agetty expands them)."""
    lines = [f"DebVisor {version} - node {name}"]
    lines += [f"  Web UI and API: {url}" for url in urls] or ["  Web UI and API: no routable address yet"]
    if initial_password is not None:
        lines.append(f"  First login: admin / {initial_password}  (you will be asked to change it)")
    lines.append("  Recovery at this console: docs/recovery.md (rescue target)")
    return "\n".join(line.replace("\\", "\\\\") for line in lines) + "\n\n"


def write_issue(text: str, path: Path = ISSUE_PATH) -> None:
    """Replace the banner atomically, readable by root only (it may hold the initial password)."""
    if not path.parent.is_dir():
        return  # not under systemd's RuntimeDirectory (a checkout, a test): nothing to show
    temporary = path.with_name(path.name + ".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)
    os.replace(temporary, path)


def notify_systemd(state: str, environ: dict[str, str] | None = None) -> bool:
    """Send `state` (e.g. "READY=1") to systemd's notification socket; False when not under it."""
    address = (environ if environ is not None else os.environ).get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]  # an abstract socket
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(state.encode())
    except OSError as exc:
        log.warning("could not notify systemd", extra={"state": state, "error": str(exc)})
        return False
    return True
