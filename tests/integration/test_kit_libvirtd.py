"""tests/kit/libvirtd.py: a private libvirtd starts within its deadline, answers virsh through
its own socket, keeps its state in the test's directory, and stops with nothing left."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.kit.libvirtd import Libvirtd

pytestmark = [pytest.mark.integration, pytest.mark.privileged, pytest.mark.libvirt]


def test_a_private_libvirtd_answers_and_stops(tmp_path: Path) -> None:
    started = time.monotonic()
    with Libvirtd(tmp_path / "libvirt") as libvirtd:
        print(f"\nlibvirtd ready in {time.monotonic() - started:.1f} s")
        version = libvirtd.virsh("version")
        assert "Running hypervisor: QEMU" in version.stdout, version.stdout + version.stderr
        assert libvirtd.virsh("list", "--all", "--name").stdout.strip() == ""
        assert (tmp_path / "libvirt" / "run" / "libvirt-sock").is_socket()
        assert (tmp_path / "libvirt" / "var-lib-libvirt" / "qemu").is_dir()  # its state, not the machine's
        stopping = time.monotonic()
    print(f"stopped in {time.monotonic() - stopping:.1f} s")
    assert libvirtd.daemon.returncode == 0, libvirtd.daemon.tail()
    assert libvirtd.virsh("version").returncode != 0
