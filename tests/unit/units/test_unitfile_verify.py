"""How `systemd-analyze verify` is run (appliance/units/unitfile_verify.py); it runs against
real systemd in tests/integration/test_unit_files.py."""

from __future__ import annotations

from pathlib import Path

from appliance.units.unitfile_verify import Verifier


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
