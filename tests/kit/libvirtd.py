"""A private libvirtd (with its virtlogd) for tests, started and stopped by the test.

The development and CI machines have no systemd to socket-activate libvirt, and tests must
not touch the machine's own libvirt state. So `Libvirtd` runs both daemons in a mount
namespace of their own (`unshare -m --propagation private`) in which empty directories of
the test's work dir are bind-mounted over /run/libvirt, /var/lib/libvirt, /var/log/libvirt
and /var/cache/libvirt, and a copy of /etc/libvirt over /etc/libvirt. Everything they write
lands in the work dir; the host's libvirt (if any) is never seen or changed, and two
launchers can run side by side.

The run directory is the work dir's `run/`, so the socket is reachable from the host: `uri`
is `qemu:///system?socket=WORK/run/libvirt-sock` (for virsh and libvirt-python alike).
Guests must use `type='qemu'` (TCG): KVM guests hang on these machines.

Left out: TCP/TLS listening (see docs/development.md for two daemons that migrate between
network namespaces), networks and storage pools (a test defines what it needs).
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
from pathlib import Path
from types import TracebackType

from tests.kit.daemon import Daemon
from tests.kit.need import require_root, require_tool

READY_SECONDS = 60.0  # about 8 s here
PRIVATE_DIRS = ("/run/libvirt", "/var/lib/libvirt", "/var/log/libvirt", "/var/cache/libvirt")


def require_libvirtd() -> None:
    """Skip (locally) or fail (in CI) unless a private libvirtd can run here."""
    require_root()
    require_tool("libvirtd", "virtlogd", "virsh", "unshare", "qemu-system-x86_64")


class Libvirtd:
    """libvirtd + virtlogd in a private mount namespace, their state under `workdir`."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.run_dir = workdir / "run"
        self.uri = f"qemu:///system?socket={self.run_dir / 'libvirt-sock'}"
        self.daemon = Daemon(
            ["unshare", "--mount", "--propagation", "private", "sh", "-ec", self._script()],
            workdir / "libvirtd.log",
            name="libvirtd",
            stop_timeout=15.0,
        )

    def _script(self) -> str:
        mounts = []
        for target in PRIVATE_DIRS:
            source = self.run_dir if target == "/run/libvirt" else self.workdir / target.strip("/").replace("/", "-")
            # The mount point may be missing (no systemd made /run/libvirt): an empty directory.
            mounts.append(f"mkdir -p {shlex.quote(str(source))} {target}")
            mounts.append(f"mount --bind {shlex.quote(str(source))} {target}")
        etc = self.workdir / "etc-libvirt"
        mounts.append(f"mount --bind {shlex.quote(str(etc))} /etc/libvirt")
        pids = {name: shlex.quote(str(self.workdir / f"{name}.pid")) for name in ("virtlogd", "libvirtd")}
        # virtlogd stays a child of this shell, which becomes libvirtd: stopping the process
        # group (the Daemon's own session) stops both.
        return "\n".join(
            [*mounts, f"virtlogd --pid-file {pids['virtlogd']} &", f"exec libvirtd --pid-file {pids['libvirtd']}"]
        )

    def start(self, timeout: float = READY_SECONDS) -> Libvirtd:
        """Start both daemons; return once `virsh version` answers through the socket."""
        require_libvirtd()
        self.workdir.mkdir(parents=True, exist_ok=True)
        etc = self.workdir / "etc-libvirt"
        if not etc.exists():
            shutil.copytree("/etc/libvirt", etc, symlinks=True)
        self.run_dir.mkdir(exist_ok=True)
        self.daemon.start()
        try:
            self.daemon.wait_ready(
                lambda: self.virsh("version").returncode == 0, timeout, 0.25, what="libvirtd to answer"
            )
        except BaseException:
            self.stop()
            raise
        return self

    def virsh(self, *args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        """`virsh -c URI args...`, output captured as text."""
        return subprocess.run(
            ["virsh", "--quiet", "-c", self.uri, *args], capture_output=True, text=True, timeout=timeout, check=False
        )

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM to libvirtd and virtlogd, SIGKILL after `timeout`; libvirtd's exit code."""
        return self.daemon.stop(timeout)

    def __enter__(self) -> Libvirtd:
        return self.start()

    def __exit__(self, *_: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.stop()
