"""What a node tells the operator standing at it, and systemd, once it serves.

A node booted from the image has no shell login (root's password is locked) and writes its
bootstrap admin password to a file on its data partition: without help, whoever installed it
could not log in the first time. So when the API is up the node writes a login banner for
the console's getty (an issue file: the image links /etc/issue.d/50-debvisor.issue to
`/run/debvisor/console.issue`): the node's name, the URLs of its web UI, the cluster CA's
fingerprint (which a laptop pins with `debvisor remote add ... --ca-fingerprint`: the docs are
not on the image, so the banner carries what is needed to reach the node) and, while the
bootstrap admin has not chosen a password yet, that initial password. The console is where
the operator already has the machine in hand; the journal never sees the password.

A start that fails (a refused enrolment or join, a broken data dir: any StartupError) would
otherwise be told only to the journal, which nobody at the console can read (no shell login).
So `report_failure` writes its one-line reason to the terminals the service was given
(`debvisor serve --console /dev/console --console /dev/ttyS0` in the image's unit: tty1 and the
serial console), and into the banner, which the getty shows above its prompt and which
outlives the process (the unit keeps its runtime directory). Each automatic restart that fails
again writes it again.

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


MAX_REASON = 300  # characters of a failure's reason on the console: one or two screen lines


def render_issue(
    name: str, version: str, urls: Sequence[str], initial_password: str | None, ca_fingerprint: str | None = None
) -> str:
    """The banner agetty prints above its login prompt (backslashes escaped: agetty expands them)."""
    lines = [f"DebVisor {version} - node {name}"]
    lines += [f"  Web UI and API: {url}" for url in urls] or ["  Web UI and API: no routable address yet"]
    if ca_fingerprint is not None:
        lines.append("  Cluster CA (SHA-256), to pin it: debvisor remote add NAME URL --ca-fingerprint")
        lines.append(f"    {ca_fingerprint}")
    if initial_password is not None:
        lines.append(f"  First login: admin / {initial_password}  (you will be asked to change it)")
    lines.append("  Docs are not on this image: see docs/ in the DebVisor sources (install, cli, recovery).")
    lines.append("  Rescue shell: boot with systemd.unit=rescue.target systemd.setenv=SYSTEMD_SULOGIN_FORCE=1")
    return _escaped(lines)


def render_failure(version: str, reason: str) -> str:
    """The banner of a node whose start failed: the reason, on one line."""
    return _escaped(
        [
            f"DebVisor {version} - this node did not start:",
            f"  {one_line(reason)}",
            "  It retries on its own; fix the cause (or the boot parameters) and reboot if it keeps failing.",
        ]
    )


def one_line(reason: str) -> str:
    """`reason` on one line, cut to MAX_REASON characters, without terminal control characters."""
    flat = " ".join("".join(c if c.isprintable() else " " for c in reason).split())
    return flat if len(flat) <= MAX_REASON else flat[: MAX_REASON - 3] + "..."


def _escaped(lines: Sequence[str]) -> str:
    return "\n".join(line.replace("\\", "\\\\") for line in lines) + "\n\n"


def report_failure(reason: str, consoles: Sequence[Path], version: str, issue: Path = ISSUE_PATH) -> list[Path]:
    """Tell the console why the node did not start: one line on each of `consoles` that exists
    and can be written (others are skipped: a machine without a serial port), and the banner.
    Returns the consoles written. Never raises: the caller is already on its way out."""
    line = f"\r\ndebvisor: the node did not start: {one_line(reason)}\r\n".encode()
    written: list[Path] = []
    for console in consoles:
        try:
            # Non-blocking, and never this process's controlling terminal: a serial line without
            # a carrier must not hang the exit.
            fd = os.open(console, os.O_WRONLY | os.O_NOCTTY | os.O_NONBLOCK | os.O_APPEND)
        except OSError:
            continue
        try:
            os.write(fd, line)
            written.append(console)
        except OSError:
            pass
        finally:
            os.close(fd)
    try:
        write_issue(render_failure(version, reason), issue)
    except OSError as exc:
        log.warning("could not write the console banner", extra={"error": str(exc)})
    return written


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
