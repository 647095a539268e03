"""The console banner and systemd's readiness notification (appliance/console.py)."""

from __future__ import annotations

import socket
from pathlib import Path

from appliance.console import notify_systemd, render_issue, write_issue


def test_banner_shows_urls_and_the_initial_password_only_when_given() -> None:
    first = render_issue("n1", "0.1.0", ["https://10.0.0.5:8443/"], "s3cret-initial")
    assert "node n1" in first
    assert "https://10.0.0.5:8443/" in first
    assert "admin / s3cret-initial" in first
    later = render_issue("n1", "0.1.0", ["https://10.0.0.5:8443/"], None)
    assert "s3cret-initial" not in later
    assert "First login" not in later


def test_banner_escapes_agetty_backslash_sequences() -> None:
    # agetty expands \\n, \\l, ... in issue files: a backslash in any field must stay literal.
    text = render_issue("n1", "0.1.0", [], "a\\nb")
    assert "a\\\\nb" in text
    assert "no routable address yet" in text


def test_write_issue_is_private_and_skipped_without_its_directory(tmp_path: Path) -> None:
    target = tmp_path / "run" / "console.issue"
    write_issue("hello\n", target)
    assert not target.exists()  # no directory: not under systemd, nothing written
    target.parent.mkdir()
    write_issue("hello\n", target)
    assert target.read_text() == "hello\n"
    assert target.stat().st_mode & 0o777 == 0o600


def test_notify_systemd_sends_the_state_to_the_socket(tmp_path: Path) -> None:
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind(str(path))
        assert notify_systemd("READY=1", {"NOTIFY_SOCKET": str(path)})
        assert listener.recv(100) == b"READY=1"
    assert not notify_systemd("READY=1", {})  # not under systemd
    assert not notify_systemd("READY=1", {"NOTIFY_SOCKET": str(tmp_path / "missing.sock")})
