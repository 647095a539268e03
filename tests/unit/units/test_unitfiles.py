"""Unit-file editing without systemd: content checks, redaction and diffs
(appliance/units/unitfile_content.py), how verify is run (unitfile_verify.py), drop-in names,
and what is read and where a write goes (unitfiles.py) in a directory tree standing in for
the managed root."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.units.bus import SystemBus
from appliance.units.unitfile_content import MAX_BYTES, check_content, missing_programs, redacted, unified_diff
from appliance.units.unitfile_verify import Verifier
from appliance.units.unitfiles import UnitFileError, UnitFiles, check_dropin_name

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


@pytest.mark.parametrize("name", ["50-debvisor", "override.conf", "10-a_b@c.d"])
def test_drop_in_names(name: str) -> None:
    assert check_dropin_name(name).endswith(".conf")


@pytest.mark.parametrize("name", ["", "../x", "a/b", ".hidden", "x" * 101, "sp ace"])
def test_bad_drop_in_names(name: str) -> None:
    with pytest.raises(UnitFileError) as refused:
        check_dropin_name(name)
    assert refused.value.status == 422
    assert refused.value.errors[0][0] == "$.dropin"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    vendor = tmp_path / "usr/lib/systemd/system"
    vendor.mkdir(parents=True)
    (vendor / "shipped.service").write_text("[Service]\nExecStart=/bin/true\n")
    admin = tmp_path / "etc/systemd/system"
    admin.mkdir(parents=True)
    (admin / "masked.service").symlink_to("/dev/null")
    (admin / "ours.service").write_text("[Service]\nExecStart=/bin/true\n")
    (admin / "shipped.service.d").mkdir()
    (admin / "shipped.service.d/50-debvisor.conf").write_text("[Unit]\nDescription=x\n")
    return tmp_path


def test_reading_finds_the_fragment_and_every_drop_in(root: Path) -> None:
    files = UnitFiles(root, SystemBus("unix:path=/nonexistent"))
    view = files.read("shipped.service")
    assert (view.path, view.shipped, view.content) == (
        "/usr/lib/systemd/system/shipped.service",
        True,
        "[Service]\nExecStart=/bin/true\n",
    )
    assert [(d.name, d.path) for d in view.dropins] == [
        ("50-debvisor.conf", "/etc/systemd/system/shipped.service.d/50-debvisor.conf")
    ]
    assert files.read("ours.service").shipped is False
    with pytest.raises(UnitFileError) as missing:
        files.read("nothing.service")
    assert missing.value.status == 404


def test_where_writes_go(root: Path) -> None:
    files = UnitFiles(root, SystemBus("unix:path=/nonexistent"))
    with pytest.raises(UnitFileError) as shipped:
        files._target("shipped.service", None, writing=True)
    assert shipped.value.status == 409
    dropin = files._target("shipped.service", "50-debvisor", writing=True)
    assert dropin.shown == "/etc/systemd/system/shipped.service.d/50-debvisor.conf"
    assert files._target("new.timer", None, writing=True).path == root / "etc/systemd/system/new.timer"
    with pytest.raises(UnitFileError) as masked:
        files._target("masked.service", None, writing=True)
    assert masked.value.status == 409
    with pytest.raises(UnitFileError) as nothing:
        files._target("nothing.service", "50-debvisor", writing=True)
    assert nothing.value.status == 404


async def test_without_a_bus_nothing_is_touched(root: Path) -> None:
    files = UnitFiles(root, SystemBus("unix:path=/nonexistent/bus"))
    with pytest.raises(Exception, match="no system bus"):
        await files.write("new.service", "[Unit]\nDescription=new\n")
    with pytest.raises(Exception, match="no system bus"):
        await files.revert("ours.service")
    assert not (root / "etc/systemd/system/new.service").exists()
    assert (root / "etc/systemd/system/ours.service").exists()


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


def test_links_are_read_inside_the_managed_root(root: Path) -> None:
    (root / "lib/systemd/system").mkdir(parents=True)
    (root / "lib/systemd/system/real.service").write_text("[Unit]\nDescription=real\n")
    (root / "etc/systemd/system/alias.service").symlink_to("/lib/systemd/system/real.service")
    files = UnitFiles(root, SystemBus("unix:path=/nonexistent"))
    assert files.read("alias.service").content == "[Unit]\nDescription=real\n"
    assert files.read("masked.service").content == ""  # -> /dev/null


def test_a_generated_unit_takes_a_drop_in(root: Path) -> None:
    (root / "run/systemd/generator.late").mkdir(parents=True)
    (root / "run/systemd/generator.late/legacy.service").write_text("[Service]\nExecStart=/etc/init.d/legacy\n")
    files = UnitFiles(root, SystemBus("unix:path=/nonexistent"))
    assert files.read("legacy.service").path == "/run/systemd/generator.late/legacy.service"
    target = files._target("legacy.service", "50-debvisor", writing=True)
    assert target.shown == "/etc/systemd/system/legacy.service.d/50-debvisor.conf"


def test_an_instance_is_read_from_its_template(root: Path) -> None:
    admin = root / "etc/systemd/system"
    (admin / "worker@.service").write_text("[Service]\nExecStart=/bin/echo %i\n")
    (admin / "worker@.service.d").mkdir()
    (admin / "worker@.service.d/10-all.conf").write_text("[Unit]\nDescription=all\n")
    (admin / "worker@a.service.d").mkdir()
    (admin / "worker@a.service.d/20-a.conf").write_text("[Unit]\nDescription=a\n")
    view = UnitFiles(root, SystemBus("unix:path=/nonexistent")).read("worker@a.service")
    assert view.path == "/etc/systemd/system/worker@.service"
    assert [d.name for d in view.dropins] == ["10-all.conf", "20-a.conf"]
    target = UnitFiles(root, SystemBus("unix:path=/nonexistent"))._target("worker@b.service", "x", writing=True)
    assert target.shown == "/etc/systemd/system/worker@b.service.d/x.conf"


def test_how_verify_is_run_for_each_kind_of_root(tmp_path: Path) -> None:
    verifier = Verifier()
    inside = "/run/debvisor/verify/abc"
    own, printed = verifier._command(Path("/"), "x.service", inside, Path(inside))
    assert own[1:] == ["verify", "--man=no", "--no-pager", "x.service"]
    assert printed == inside
    image, printed = verifier._command(tmp_path, "x.service", inside, tmp_path / inside.lstrip("/"))
    assert image[1] == f"--root={tmp_path}"
    assert printed == str(tmp_path / inside.lstrip("/"))  # systemd prints the path with the root
    container, printed = verifier._command(Path("/proc/4242/root"), "x.service", inside, Path("/proc/4242/root/x"))
    assert container[1:7] == ["--target", "4242", "--mount", "--pid", "--", "systemd-analyze"]
    assert printed == inside
