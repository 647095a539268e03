"""Unit-file content without systemd (appliance/units/unitfile_content.py): the syntax check,
the programs looked up inside the managed root, and the redacted diff a change is audited with."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.units.unitfile_content import MAX_BYTES, check_content, missing_programs, redacted, unified_diff

GOOD = """\
# a comment
; another
[Unit]
Description=ok
After=network.target \\
  local-fs.target

[Service]
ExecStart=/bin/true
X-Custom=1

[X-Vendor]
Anything=goes

[Install]
WantedBy=multi-user.target
"""


def test_a_well_formed_service_passes() -> None:
    assert check_content(GOOD, "service") == []
    assert check_content("[Timer]\nOnCalendar=daily\n[Install]\nWantedBy=timers.target\n", "timer") == []


@pytest.mark.parametrize(
    ("text", "kind", "message"),
    [
        ("ExecStart=/bin/true\n", "service", "line 1: a setting before any [Section]"),
        ("[Service]\njust words\n", "service", "line 2: expected Key=value"),
        ("[Service\nA=b\n", "service", "line 1: a section header is [Name]"),
        ("[Timer]\nOnCalendar=daily\n", "service", "line 1: section [Timer] is not one of a service's"),
        ("[Service]\nExecStart=/bin/true\n", "timer", "section [Service] is not one of a timer's"),
        ("[Service]\nA=\x00\n", "service", "contains a NUL character"),
        ("[Service]\nA=\ud800\n", "service", "not valid UTF-8"),
        ("[Service]\n" + "A=" + "x" * MAX_BYTES + "\n", "service", f"a unit file is at most {MAX_BYTES}"),
    ],
)
def test_malformed_content_is_refused_with_its_line(text: str, kind: str, message: str) -> None:
    problems = check_content(text, kind)
    assert problems
    assert all(path == "$.content" for path, _ in problems)
    assert any(message in text for _, text in problems), problems


def test_secrets_are_redacted_but_names_and_other_lines_kept() -> None:
    text = (
        "[Service]\n"
        'Environment=USER=ops PASSWORD=hunter2 QUOTED="a b c"\n'
        "Environment=CONT=one \\\n"
        "  MORE=secret-too\n"
        "SetCredential=db:pa55word\n"
        "SetCredentialEncrypted=key: Whxqht+dQJax1aZeCGLxmiAAAAABAAAAAAAAAAA\n"
        "ExecStart=/bin/true\n"
    )
    shown = redacted(text)
    for secret in ("hunter2", "a b c", "secret-too", "pa55word", "Whxqht", "ops"):
        assert secret not in shown
    assert "Environment=USER=<redacted> PASSWORD=<redacted> QUOTED=<redacted>\n" in shown
    assert "SetCredential=db:<redacted>\n" in shown
    assert "ExecStart=/bin/true\n" in shown
    assert shown.count("\n") == text.count("\n")


def test_the_diff_is_unified_and_redacted() -> None:
    before = "[Service]\nEnvironment=TOKEN=old\nExecStart=/bin/true\n"
    after = "[Service]\nEnvironment=TOKEN=new\nExecStart=/bin/false\n"
    diff = unified_diff("/etc/systemd/system/x.service", before, after)
    assert diff.startswith("--- a/etc/systemd/system/x.service\n+++ b/etc/systemd/system/x.service\n")
    assert "-ExecStart=/bin/true\n+ExecStart=/bin/false\n" in diff
    assert "old" not in diff
    assert "new" not in diff
    created = unified_diff("/etc/systemd/system/x.service", None, "[Unit]\n")
    assert created.startswith("--- /dev/null\n+++ b/etc/systemd/system/x.service\n")
    removed = unified_diff("/etc/systemd/system/x.service", "[Unit]\n", None)
    assert "+++ /dev/null\n" in removed
    assert removed.endswith("-[Unit]\n")


def test_programs_are_looked_up_inside_the_managed_root(tmp_path: Path) -> None:
    (tmp_path / "usr/bin").mkdir(parents=True)
    tool = tmp_path / "usr/bin/tool"
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)
    (tmp_path / "usr/bin/data").write_text("not a program\n")
    (tmp_path / "bin").symlink_to("usr/bin")  # merged /usr, as Debian has it
    (tmp_path / "usr/bin/abs").symlink_to("/usr/bin/tool")  # absolute: resolved inside the root
    (tmp_path / "usr/bin/escape").symlink_to("/etc/passwd")  # exists on this machine, not in the root
    text = (
        "[Service]\n"
        "ExecStartPre=-/bin/tool --flag\n"
        "ExecStart=/usr/bin/abs\n"
        "ExecStart=\n"
        "ExecStart=tool-in-path\n"
        "ExecStart=/usr/bin/data\n"
        "ExecStop=/usr/bin/escape\n"
        "ExecStopPost=${TOOL} x\n"
        "ExecReload=/nonexistent/program\n"
        "ExecSearchPath=/usr/local/bin:/usr/bin\n"
        "ExecPaths=/nonexistent\n"
    )
    assert missing_programs(text, tmp_path) == [
        ("$.content", "line 6: ExecStart: /usr/bin/data is not an executable file"),
        ("$.content", "line 7: ExecStop: /usr/bin/escape is not an executable file"),
        ("$.content", "line 9: ExecReload: /nonexistent/program is not an executable file"),
    ]
