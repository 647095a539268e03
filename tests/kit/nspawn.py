"""A Debian root with systemd as PID 1, booted under systemd-nspawn, for tests of systemd units
and D-Bus on machines whose own PID 1 is not systemd (the development and CI machines).

`debian_root()` builds the root once with mmdebstrap (minbase + systemd, dbus) into a cache
directory (tests/kit/cache.py: /var/cache/debvisor-tests), under a file lock so
parallel pytest workers build it once; the directory name carries a hash of the recipe, so a
changed package list builds a new root beside the old one. The first build downloads about
100 packages from the Debian mirror (DEBVISOR_TEST_MIRROR) and takes about a minute.

`Container` boots that root with `systemd-nspawn --boot --volatile=overlay`: every write goes
to a tmpfs overlay, so the cached root never changes and any number of containers can share
it. It waits until `systemctl is-system-running` answers running (or degraded), runs
commands inside through `nsenter` into the container's leader, and stops it with an orderly
shutdown (nspawn turns SIGTERM into SIGRTMIN+3 for the container's systemd). The container's
system bus is reachable from the host at `bus_address()`.

Left out: machined registration (there is no systemd on the host), user namespaces, and a
network (the container gets a private network namespace with only loopback unless the test
passes `--network-veth` or `--network-bridge=` in `extra_args`).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from tests.kit.cache import cache_dir, locked
from tests.kit.daemon import Daemon
from tests.kit.need import require_root, require_tool
from tests.kit.procs import processes

SUITE = "bookworm"
PACKAGES = ("systemd", "systemd-sysv", "dbus", "iproute2", "procps")
RECIPE = 2  # bump when the way the root is made changes, so caches are rebuilt
BUILD_SECONDS = 600.0  # the first build, on a slow mirror
BOOT_SECONDS = 30.0  # a cached root reaches "running" in well under a second here
FIRSTBOOT = "systemd-firstboot.service"  # asks on a console there is none of; masked
COMPLETE = ".debvisor-complete"  # written last: a root without it is a failed build


def mirror() -> str:
    return os.environ.get("DEBVISOR_TEST_MIRROR", "http://deb.debian.org/debian")


def require_nspawn() -> None:
    """Skip (locally) or fail (in CI) unless this machine can build and boot a root."""
    require_root()
    require_tool("systemd-nspawn", "mmdebstrap", "nsenter")


def _recipe_key(suite: str, packages: Sequence[str]) -> str:
    text = f"{RECIPE} {suite} {mirror()} {' '.join(sorted(packages))}"
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def debian_root(packages: Sequence[str] = PACKAGES, suite: str = SUITE) -> Path:
    """The cached root with `packages` installed, built now if missing (under a lock)."""
    require_nspawn()
    root = cache_dir() / f"nspawn-{suite}-{_recipe_key(suite, packages)}"
    if (root / COMPLETE).exists():
        return root
    with locked(root.with_name(root.name + ".lock")):
        if (root / COMPLETE).exists():  # another worker built it while we waited
            return root
        _build(root, packages, suite)
    return root


def _build(root: Path, packages: Sequence[str], suite: str) -> None:
    staging = root.with_name(root.name + ".building")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.rmtree(root, ignore_errors=True)
    base = mirror()
    sources = [f"deb {base} {suite} main", f"deb {base} {suite}-updates main"]
    log = root.with_name(root.name + ".build.log")
    started = time.monotonic()
    with log.open("w") as out:
        built = subprocess.run(
            ["mmdebstrap", "--variant=minbase", f"--include={','.join(packages)}", suite, str(staging), *sources],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            timeout=BUILD_SECONDS,
            check=False,
        )
    if built.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        raise RuntimeError(f"mmdebstrap failed ({built.returncode}):\n{log.read_text(errors='replace')[-3000:]}")
    _prepare(staging)
    (staging / COMPLETE).write_text(f"built in {time.monotonic() - started:.0f} s\n")
    staging.rename(root)


def _prepare(root: Path) -> None:
    """Make the root boot quietly under nspawn to "running": no gettys or first-boot questions
    on a console, a machine id made at each boot (so containers sharing the root differ)."""
    wants = root / "etc/systemd/system"
    masked = ("console-getty.service", "getty@.service", "serial-getty@.service", "getty.target", FIRSTBOOT)
    for unit in masked:
        mask = wants / unit
        mask.unlink(missing_ok=True)
        mask.symlink_to("/dev/null")
    (root / "etc/machine-id").write_text("uninitialized\n")
    (root / "etc/hostname").write_text("debvisor-test\n")


class ContainerError(RuntimeError):
    """The container did not boot, or a command in it failed."""


class Container:
    """One booted container of a cached root; stop it (or use `with`) to end it."""

    def __init__(
        self,
        root: Path,
        workdir: Path,
        *,
        name: str | None = None,
        bind: Sequence[str] = (),
        bind_ro: Sequence[str] = (),
        extra_args: Sequence[str] = (),
    ) -> None:
        self.root = root
        self.name = name or f"dvt{secrets.token_hex(3)}"
        argv = [
            "systemd-nspawn", "--boot", "--quiet", "--directory", str(root), "--volatile=overlay",
            "--register=no", "--keep-unit", "--private-network", "--machine", self.name, "--console=pipe",
            *(f"--bind={spec}" for spec in bind), *(f"--bind-ro={spec}" for spec in bind_ro), *extra_args,
        ]  # fmt: skip
        # Not its own session: nspawn must get the SIGTERM itself (and turn it into an orderly
        # shutdown); a signal to the whole group would reach the container's processes too.
        self.daemon = Daemon(
            argv, workdir / f"{self.name}.log", name=self.name, stop_timeout=20.0, start_new_session=False
        )
        self.leader: int | None = None

    def start(self, timeout: float = BOOT_SECONDS) -> Container:
        """Boot; return once systemd says the system is running (or degraded)."""
        self.daemon.start()
        try:
            self.daemon.wait_ready(self._find_leader, timeout, what=f"{self.name}'s systemd to start")
            self.daemon.wait_ready(
                lambda: self.state() in ("running", "degraded"),
                timeout,
                0.1,
                what=f"{self.name} to boot (systemctl is-system-running: running or degraded)",
            )
        except BaseException:
            self.stop()
            raise
        return self

    def _find_leader(self) -> bool:
        """The container's PID 1: the descendant of nspawn that is PID 1 in its own namespace."""
        nspawn = self.daemon.pid
        tree = {nspawn}
        found = processes()
        for _ in range(3):  # nspawn -> its inner child -> the container's init
            tree |= {p.pid for p in found if p.ppid in tree}
        for pid in sorted(tree - {nspawn}):
            with contextlib.suppress(OSError):
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("NSpid:") and line.split()[-1] == "1" and len(line.split()) > 2:
                        self.leader = pid
                        return True
        return False

    def state(self) -> str:
        """What `systemctl is-system-running` prints inside (starting, running, degraded...)."""
        return self.run(["systemctl", "is-system-running"], check=False, timeout=10).stdout.strip()

    def command(self, argv: Sequence[str]) -> list[str]:
        """`argv` wrapped to run inside the container (all its namespaces and its root)."""
        if self.leader is None:
            raise ContainerError(f"{self.name} is not running")
        return ["nsenter", "--target", str(self.leader), "--all", "--", *argv]

    def run(
        self, argv: Sequence[str], *, check: bool = True, timeout: float = 30.0, input_text: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run `argv` inside; its output as text. With `check`, a failure raises saying what it printed."""
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "SYSTEMD_PAGER": "", "TERM": "dumb"}
        result = subprocess.run(
            self.command(argv), input=input_text, capture_output=True, text=True, timeout=timeout, env=env, check=False
        )
        if check and result.returncode != 0:
            raise ContainerError(
                f"{' '.join(argv)} in {self.name} exited {result.returncode}:\n{result.stdout}{result.stderr}"
            )
        return result

    def path(self, inside: str) -> Path:
        """A path inside the running container, as the host sees it (through /proc/LEADER/root)."""
        if self.leader is None:
            raise ContainerError(f"{self.name} is not running")
        return Path(f"/proc/{self.leader}/root") / inside.lstrip("/")

    def bus_address(self) -> str:
        """The D-Bus address of the container's system bus, usable from the host."""
        return f"unix:path={self.path('/run/dbus/system_bus_socket')}"

    def stop(self, timeout: float = 20.0) -> int | None:
        """Orderly shutdown (SIGTERM to nspawn), SIGKILL after `timeout`; nspawn's exit code."""
        code = self.daemon.stop(timeout)
        self.leader = None
        return code

    def __enter__(self) -> Container:
        return self.start()

    def __exit__(self, *_: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.stop()
