"""Unit files without systemd (appliance/units/unitfiles.py): drop-in names, what is read and
where a write goes, in a directory tree standing in for the managed root, and that nothing is
touched without a system bus."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.units.bus import SystemBus
from appliance.units.unitfiles import UnitFileError, UnitFiles, check_dropin_name


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
