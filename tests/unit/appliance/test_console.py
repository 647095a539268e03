"""The console banner and systemd's readiness notification (appliance/console.py)."""

from __future__ import annotations

import socket
from pathlib import Path

from appliance import cli
from appliance.console import MAX_REASON, notify_systemd, one_line, render_issue, report_failure, write_issue


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


def test_banner_carries_the_ca_fingerprint_and_no_docs_path_missing_from_the_image() -> None:
    text = render_issue("n1", "0.1.0", ["https://10.0.0.5:8443/"], None, "ab" * 32)
    assert "ab" * 32 in text
    assert "--ca-fingerprint" in text
    assert "docs/recovery.md" not in text  # not on the image


def test_a_failed_start_is_told_on_each_console_that_can_be_opened_and_in_the_banner(tmp_path: Path) -> None:
    console, serial = tmp_path / "console", tmp_path / "ttyS0"
    console.write_text("")
    serial.write_text("")
    missing = tmp_path / "ttyS1"  # a machine without that port: skipped
    (tmp_path / "run").mkdir()
    issue = tmp_path / "run" / "console.issue"
    reason = "cannot enrol with the PXE boot server: refused\nby an operator\x1b[2J"
    written = report_failure(reason, [console, missing, serial], "0.1.0", issue)
    assert written == [console, serial]
    expected = "debvisor: the node did not start: cannot enrol with the PXE boot server: refused by an operator [2J"
    for path in (console, serial):
        assert path.read_bytes() == f"\r\n{expected}\r\n".encode()
    banner = issue.read_text()
    assert "did not start" in banner
    assert "refused by an operator" in banner
    assert "\x1b" not in banner


def test_a_long_reason_is_cut_to_one_line() -> None:
    assert len(one_line("x" * 1000)) == MAX_REASON
    assert one_line("a\n\n b") == "a b"


def test_serve_reports_a_failed_start_to_the_consoles_it_was_given(tmp_path: Path) -> None:
    # A data dir that is a file: the node cannot start, a StartupError; the reason reaches the console.
    console = tmp_path / "console"
    console.write_text("")
    data = tmp_path / "data"
    data.write_text("not a directory")
    argv = ["serve", "--data-dir", str(data), "--api", "127.0.0.1:0", "--console", str(console)]
    assert cli.main(argv) == 1
    assert console.read_bytes().startswith(b"\r\ndebvisor: the node did not start: ")


def test_the_image_unit_passes_options_serve_accepts() -> None:
    unit = Path(__file__).resolve().parents[3] / "image/rootfs/etc/systemd/system/debvisor.service"
    [exec_start] = [line for line in unit.read_text().splitlines() if line.startswith("ExecStart=")]
    args = cli._build_parser().parse_args(exec_start.split()[1:])
    assert args.console == [Path("/dev/console"), Path("/dev/ttyS0")]
