"""Run commands as root inside a throwaway QEMU guest that boots Debian's own kernel.

Why it exists: the host kernel of the development and CI machines has no bonding, 802.1Q,
dummy links, VLAN-aware bridges or netem (see /work/shared/TESTBED.md), yet netconfig must be
tested against a real kernel that has them. Debian's `linux-image-amd64` carries them as
modules. `run_in_guest(argv)` boots that kernel under QEMU (TCG, no KVM) and runs `argv` as
root in a guest whose userspace IS the host's root filesystem, so the checkout's virtualenv
(`sys.executable`) and its dependencies run unchanged inside the guest. A guest lives for one
command, then powers off; nothing it does to its kernel touches the host.

How (each step is cheap; a run takes a few seconds, see docs/development.md):
- The kernel: the package `linux-image-amd64` depends on (e.g. linux-image-6.1.0-56-amd64) is
  fetched once with `apt-get download`, unpacked with `dpkg-deb -x`, and kept under
  `CACHE_DIR/<package>_<version>/`: lib/modules, the bzImage, and the ELF vmlinux extracted
  from it, which QEMU boots via PVH (no xz decompression under TCG). A file lock makes
  parallel runs wait for one download; the entry appears by an atomic rename, so a killed
  run never leaves a half-unpacked kernel that a later run would trust. If apt cannot
  resolve or fetch the package (no package lists, offline), the newest cached kernel is used.
- The initramfs is built per run, in Python (newc cpio, no `cpio` tool needed): the static
  busybox of busybox-static, the requested modules with their dependencies (read from each
  module's `.modinfo`, so no depmod/kmod either) in load order, and an /init script.
- /init loads the modules, mounts the host's / read-only over virtio-9p, mounts fresh proc,
  sys, dev, devpts and tmpfs on /tmp, /run, /var/tmp, /root and /dev/shm over it, and
  mounts a per-run host directory (writable 9p) at `GUEST_OUT`. It then chroots into the
  host's root and runs the command with stdout and stderr going to files in that directory,
  writes the exit code there, and powers off.
- The host waits for QEMU and reads the files. QEMU runs in its own session under `setpriv
  --pdeathsig KILL` (it dies if the harness is SIGKILLed) and is killed by PID at the timeout
  or on any error. Other files the command writes to `GUEST_OUT` come back in the result.
  The boot time is when the guest created its "started" file (stamped by the host kernel, so
  host clock) minus QEMU's start.

`call_in_guest(func, *args)` builds on it for tests: it runs a module-level function of the
checkout in the guest's Python and returns its JSON-able result; an exception in the guest
raises `GuestError` on the host with the guest's traceback in the message.

Debugging: DEBVISOR_GUEST_KEEP=1 keeps each run's directory (console.log with the full
kernel log, qemu.argv, init.sh, out/command.sh, out/stdout, out/stderr, out/rc) and names it
in the result and in every error. DEBVISOR_TEST_CACHE moves the kernel cache (tests/kit/cache.py).

Deliberately left out:
- Networking to the outside (no NIC at all) and persistence: the host's root is read-only in
  the guest, writable places are tmpfs and `GUEST_OUT`. Writes elsewhere fail with EROFS.
- A long-lived guest serving many commands: each run boots afresh (a few seconds), which
  keeps runs independent; batch several checks in one function when boot time matters.
- Other architectures and kernels than the running Debian release's `linux-image-amd64`.
- Running without root: the cache lives in /var/cache and the 9p export of / must read every
  file the command needs.
"""

from __future__ import annotations

import contextlib
import functools
import json
import lzma
import os
import re
import shlex
import shutil
import signal
import stat
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.kit.cache import cache_dir, locked
from tests.kit.procs import stop_process

CACHE_DIR = cache_dir()
KEEP = os.environ.get("DEBVISOR_GUEST_KEEP") == "1"
KERNEL_META_PACKAGE = "linux-image-amd64"
QEMU = "qemu-system-x86_64"
BUSYBOX = Path("/bin/busybox")  # from busybox-static: the initramfs has no shared libraries
REPO = Path(__file__).resolve().parents[1]
GUEST_OUT = "/run/debvisor-guest"  # inside the guest: the per-run host directory, writable

# What the guest needs to reach the host's root over virtio-9p (dependencies come along).
BASE_MODULES = ("virtio_pci", "9pnet_virtio", "9p")
# The default set for netconfig tests: all the host kernel lacks for links and bridges.
NETWORK_MODULES = ("bonding", "8021q", "bridge", "dummy", "veth")
# Module parameters: without max_bonds=0, loading bonding creates a "bond0" nobody asked for.
MODULE_PARAMETERS: Mapping[str, str] = {"bonding": "max_bonds=0"}

_CACHE_FORMAT = 2  # bump when the layout of a cache entry changes
_APT_TIMEOUT = 300.0  # the kernel package is ~70 MB
_RELEASE_RE = re.compile(r"^linux-image-(\d[\w.+-]*-amd64)$")


class GuestError(RuntimeError):
    """The guest could not run the command: no kernel, QEMU failed, boot or command timed out, or (check) it failed."""


@dataclass(frozen=True)
class GuestResult:
    """What a command did inside the guest, and how long the guest took."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    boot_seconds: float  # QEMU start to the command's start (kernel, initramfs, module loads, mounts)
    total_seconds: float  # QEMU start to QEMU exit
    workdir: Path | None  # the run's directory if DEBVISOR_GUEST_KEEP=1 kept it, else None
    files: Mapping[str, bytes]  # what the command wrote into GUEST_OUT (top level), by name

    def check(self) -> GuestResult:
        """Return self if the command exited 0, else raise GuestError showing its stderr."""
        if self.returncode != 0:
            raise GuestError(
                f"{shlex.join(self.argv)} exited {self.returncode} in the guest"
                f"{_kept(self.workdir)}\n--- guest stderr ---\n{self.stderr}--- guest stdout ---\n{self.stdout}"
            )
        return self


# -- the kernel ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Kernel:
    """An unpacked Debian kernel package in the cache: the image and its modules."""

    package: str  # e.g. linux-image-6.1.0-56-amd64
    version: str  # the package's version, e.g. 6.1.192-2
    release: str  # `uname -r` in the guest, e.g. 6.1.0-56-amd64
    root: Path

    @property
    def vmlinuz(self) -> Path:
        """The bootable kernel image."""
        return self.root / "vmlinuz"

    @property
    def boot_image(self) -> Path:
        """What QEMU loads: the uncompressed ELF vmlinux (booted via PVH, no decompression in
        the guest, ~3 s faster under TCG) when it could be extracted, else the bzImage."""
        vmlinux = self.root / "vmlinux"
        return vmlinux if vmlinux.exists() else self.vmlinuz

    @property
    def modules_dir(self) -> Path:
        """lib/modules/<release> of the package."""
        return self.root / "modules"

    @functools.cached_property
    def _modules(self) -> dict[str, Path]:
        # Module names use "_" where file names may use "-" (e.g. virtio-rng.ko is virtio_rng).
        return {p.name[: -len(".ko")].replace("-", "_"): p for p in self.modules_dir.rglob("*.ko")}

    def load_order(self, names: Sequence[str]) -> list[Path]:
        """The module files for `names` and everything they depend on, dependencies first.

        Built-in modules (listed in modules.builtin) need no file and are left out.
        """
        builtin = {
            Path(line).name[: -len(".ko")].replace("-", "_")
            for line in (self.modules_dir / "modules.builtin").read_text().split()
        }
        order: list[Path] = []
        seen: set[str] = set()

        def visit(name: str, chain: tuple[str, ...]) -> None:
            name = name.replace("-", "_")
            if name in seen or name in builtin:
                return
            if name in chain:
                raise GuestError(f"module dependency cycle: {' -> '.join((*chain, name))}")
            path = self._modules.get(name)
            if path is None:
                raise GuestError(f"kernel {self.release} has no module {name!r}")
            for dep in _modinfo(path).get("depends", "").split(","):
                if dep:
                    visit(dep, (*chain, name))
            seen.add(name)
            order.append(path)

        for name in names:
            visit(name, ())
        return order


def _modinfo(path: Path) -> dict[str, str]:
    """The key=value strings of a kernel module's .modinfo ELF section (what `modinfo` prints)."""
    data = path.read_bytes()
    if data[:4] != b"\x7fELF" or data[4] != 2:
        raise GuestError(f"{path} is not a 64-bit ELF kernel module")
    (shoff,) = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)

    def section(index: int) -> tuple[int, int, int]:
        name, _type, _flags, _addr, offset, size = struct.unpack_from("<IIQQQQ", data, shoff + index * shentsize)
        return name, offset, size

    _, names_offset, _ = section(shstrndx)
    for index in range(shnum):
        name, offset, size = section(index)
        end = data.index(b"\0", names_offset + name)
        if data[names_offset + name : end] == b".modinfo":
            info: dict[str, str] = {}
            for entry in data[offset : offset + size].split(b"\0"):
                key, sep, value = entry.decode(errors="replace").partition("=")
                if sep and key not in info:
                    info[key] = value
            return info
    return {}


def _extract_vmlinux(bzimage: bytes) -> bytes | None:
    """The ELF kernel inside a bzImage, if compressed with xz, lzma or gzip (Debian uses xz); else None."""
    if bzimage[0x202:0x206] != b"HdrS":
        return None
    setup_sectors = bzimage[0x1F1] or 4
    payload_offset, payload_length = struct.unpack_from("<II", bzimage, 0x248)
    start = (setup_sectors + 1) * 512 + payload_offset
    payload = bzimage[start : start + payload_length]
    try:
        if payload.startswith((b"\xfd7zXZ\x00", b"\x5d\x00\x00")):
            elf = lzma.LZMADecompressor().decompress(payload)
        elif payload.startswith(b"\x1f\x8b"):
            elf = zlib.decompressobj(wbits=31).decompress(payload)
        else:
            return None
    except (lzma.LZMAError, zlib.error):
        return None
    return elf if elf.startswith(b"\x7fELF") else None


def _apt(argv: list[str], *, cwd: Path | None = None, timeout: float = 60.0) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False, cwd=cwd)
    if result.returncode != 0:
        raise GuestError(f"{shlex.join(argv)} failed ({result.returncode}): {result.stderr.strip()}")
    return result.stdout


def _wanted_package() -> tuple[str, str]:
    """The kernel package `linux-image-amd64` depends on in the current package lists, and its version."""
    depends = _apt(["apt-cache", "depends", "--no-recommends", "--no-suggests", KERNEL_META_PACKAGE])
    packages = [
        line.split(":", 1)[1].strip()
        for line in depends.splitlines()
        if line.strip().startswith("Depends:") and _RELEASE_RE.match(line.split(":", 1)[1].strip())
    ]
    if not packages:
        raise GuestError(f"{KERNEL_META_PACKAGE} depends on no linux-image-*-amd64 package:\n{depends}")
    show = _apt(["apt-cache", "show", "--no-all-versions", packages[0]])
    version = next((line.split(":", 1)[1].strip() for line in show.splitlines() if line.startswith("Version:")), "")
    if not version:
        raise GuestError(f"apt-cache show {packages[0]} gives no version")
    return packages[0], version


def _cached(entry: Path) -> Kernel | None:
    try:
        meta = json.loads((entry / "kernel.json").read_text())
    except (OSError, ValueError):
        return None
    if meta.get("format") != _CACHE_FORMAT:
        return None  # made by an older harness: unpacked again (and this one pruned) under the lock
    return Kernel(package=meta["package"], version=meta["version"], release=meta["release"], root=entry)


def _cache_lock() -> contextlib.AbstractContextManager[None]:
    return locked(CACHE_DIR / ".lock")


def _unpack(package: str, version: str) -> Kernel:
    """Download and unpack `package` into the cache (caller holds the lock); drop other cached kernels."""
    release_match = _RELEASE_RE.match(package)
    assert release_match is not None
    release = release_match.group(1)
    final = CACHE_DIR / f"{package}_{version}"
    work = Path(tempfile.mkdtemp(prefix=".unpack-", dir=CACHE_DIR))
    try:
        # As root, apt's download sandbox user (_apt) cannot write to a private temp dir: say so.
        _apt(
            ["apt-get", "download", "-q", "-o", "APT::Sandbox::User=root", f"{package}={version}"],
            cwd=work,
            timeout=_APT_TIMEOUT,
        )
        (deb,) = work.glob("*.deb")
        _apt(["dpkg-deb", "-x", str(deb), str(work / "x")], timeout=_APT_TIMEOUT)
        entry = work / "entry"
        entry.mkdir()
        (work / "x" / "boot" / f"vmlinuz-{release}").rename(entry / "vmlinuz")
        vmlinux = _extract_vmlinux((entry / "vmlinuz").read_bytes())
        if vmlinux is not None:
            (entry / "vmlinux").write_bytes(vmlinux)
        (work / "x" / "lib" / "modules" / release).rename(entry / "modules")
        meta = {"format": _CACHE_FORMAT, "package": package, "version": version, "release": release}
        (entry / "kernel.json").write_text(json.dumps(meta) + "\n")
        if final.exists():
            shutil.rmtree(final)  # an entry without kernel.json: unusable anyway
        entry.rename(final)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for other in CACHE_DIR.iterdir():
        if other != final and other.name.startswith("linux-image-"):
            shutil.rmtree(other, ignore_errors=True)  # an outdated kernel: 400 MB each
    kernel = _cached(final)
    assert kernel is not None
    return kernel


@functools.cache
def kernel() -> Kernel:
    """The Debian kernel the guest boots, downloaded and unpacked into CACHE_DIR on first use.

    Normally the package `linux-image-amd64` currently depends on. If apt cannot name or
    fetch it (no package lists, offline), the newest kernel already cached is used instead.
    """
    try:
        package, version = _wanted_package()
        cached = _cached(CACHE_DIR / f"{package}_{version}")
        if cached is not None:
            return cached
        with _cache_lock():
            cached = _cached(CACHE_DIR / f"{package}_{version}")  # another process may have finished it
            return cached if cached is not None else _unpack(package, version)
    except (GuestError, OSError, subprocess.SubprocessError) as exc:
        entries = sorted(CACHE_DIR.glob("linux-image-*"), key=lambda p: p.stat().st_mtime, reverse=True)
        for entry in entries:
            cached = _cached(entry)
            if cached is not None:
                return cached
        raise GuestError(
            f"no {KERNEL_META_PACKAGE} kernel could be fetched, none is cached in {CACHE_DIR}: {exc}"
        ) from exc


def _static_elf(path: Path) -> bool:
    """True if `path` is an ELF executable without a program interpreter (statically linked)."""
    with path.open("rb") as f:
        header = f.read(64)
        if header[:4] != b"\x7fELF" or header[4] != 2:
            return False
        (phoff,) = struct.unpack_from("<Q", header, 0x20)
        phentsize, phnum = struct.unpack_from("<HH", header, 0x36)
        f.seek(phoff)
        table = f.read(phentsize * phnum)
    return all(struct.unpack_from("<I", table, i * phentsize)[0] != 3 for i in range(phnum))  # 3 = PT_INTERP


@functools.cache
def guest_available() -> str | None:
    """None if this machine can run guests (root, QEMU, static busybox, a kernel obtainable), else why not.

    The first call may download the kernel package (~70 MB, seconds); later calls are free.
    """
    if os.geteuid() != 0:
        return "the QEMU guest harness needs root (kernel cache in /var/cache, 9p export of /)"
    if shutil.which(QEMU) is None:
        return f"`{QEMU}` is not installed (apt-get install qemu-system-x86)"
    if not BUSYBOX.exists() or not _static_elf(BUSYBOX):
        return f"{BUSYBOX} is missing or not statically linked (apt-get install busybox-static)"
    try:
        found = kernel()
    except (GuestError, OSError, subprocess.SubprocessError) as exc:
        return f"no Debian kernel for the guest: {exc}"
    if not found.vmlinuz.exists():
        return f"the cached kernel {found.root} has no vmlinuz"
    return None


# -- the initramfs -------------------------------------------------------------------------------


class _Cpio:
    """A minimal writer of "newc" cpio archives, the format the kernel unpacks as initramfs."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._ino = 1000

    def _add(self, name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0)) -> None:
        self._ino += 1
        encoded = name.encode() + b"\0"
        fields = (self._ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(encoded), 0)
        header = b"070701" + b"".join(b"%08X" % f for f in fields)
        self._parts += [header, encoded, b"\0" * (-(len(header) + len(encoded)) % 4), data, b"\0" * (-len(data) % 4)]

    def directory(self, name: str) -> None:
        """Add an empty directory (parents must come first)."""
        self._add(name, stat.S_IFDIR | 0o755)

    def file(self, name: str, data: bytes, mode: int = 0o644) -> None:
        """Add a regular file with `data`."""
        self._add(name, stat.S_IFREG | mode, data)

    def symlink(self, name: str, target: str) -> None:
        """Add a symbolic link to `target`."""
        self._add(name, stat.S_IFLNK | 0o777, target.encode())

    def char_device(self, name: str, major: int, minor: int) -> None:
        """Add a character device node."""
        self._add(name, stat.S_IFCHR | 0o600, rdev=(major, minor))

    def finish(self) -> bytes:
        """The archive, with its trailer."""
        self._add("TRAILER!!!", 0)
        return b"".join(self._parts)


_INIT = """#!/bin/sh
# DebVisor test guest: load modules, borrow the host's root over 9p, run one command, power off.
say() { echo "debvisor-guest: $*"; }
fail() { say "FAILED: $*"; poweroff -f; }
mount -t devtmpfs dev /dev || fail "devtmpfs"
mount -t proc proc /proc
mount -t sysfs sys /sys
while read -r module params; do
  insmod "/modules/$module" $params || fail "insmod $module $params"
done < /modules/order
say "modules loaded"
R=/newroot
opts=trans=virtio,version=9p2000.L,msize=512000
mount -t 9p -o "ro,cache=loose,$opts" hostroot $R || fail "mount hostroot"
mount -t proc proc $R/proc
mount -t sysfs sys $R/sys
mount -t devtmpfs dev $R/dev
mkdir -p $R/dev/pts $R/dev/shm
mount -t devpts -o newinstance,ptmxmode=0666 devpts $R/dev/pts
mount -t tmpfs -o mode=1777 shm $R/dev/shm
for dir in /tmp /var/tmp; do mount -t tmpfs -o mode=1777 tmp $R$dir; done
for dir in /run /root; do mount -t tmpfs -o mode=0755 tmp $R$dir; done
mkdir -p $R{out}
mount -t 9p -o "rw,$opts" out $R{out} || fail "mount out"
say "running the command"
: > $R{out}/started
chroot $R /bin/sh {out}/command.sh < /dev/null > $R{out}/stdout 2> $R{out}/stderr
echo $? > $R{out}/rc.tmp && mv $R{out}/rc.tmp $R{out}/rc
umount $R{out}
sync
poweroff -f
"""


_HARNESS_FILES = frozenset({"command.sh", "started", "stdout", "stderr", "rc"})


def _init_script() -> str:
    return _INIT.replace("{out}", GUEST_OUT)


def _command_script(argv: Sequence[str], env: Mapping[str, str], cwd: str) -> str:
    lines = ["# Run inside the guest's chroot by /init: the environment, the directory, the command."]
    lines += [f"export {key}={shlex.quote(value)}" for key, value in env.items()]
    lines += [f"cd {shlex.quote(cwd)} || exit 125", f"exec {shlex.join(argv)}"]
    return "\n".join(lines) + "\n"


def _initramfs(kern: Kernel, modules: Sequence[str]) -> bytes:
    archive = _Cpio()
    for directory in ("bin", "dev", "proc", "sys", "newroot", "modules"):
        archive.directory(directory)
    archive.char_device("dev/console", 5, 1)  # the kernel opens it for /init before devtmpfs exists
    archive.file("bin/busybox", BUSYBOX.read_bytes(), 0o755)
    for applet in ("sh", "mount", "umount", "insmod", "mkdir", "chroot", "poweroff", "echo", "mv", "sync"):
        archive.symlink(f"bin/{applet}", "busybox")
    order = []
    for path in kern.load_order([*BASE_MODULES, *modules]):
        name = path.name
        archive.file(f"modules/{name}", path.read_bytes())
        order.append(f"{name} {MODULE_PARAMETERS.get(name[: -len('.ko')], '')}".rstrip())
    archive.file("modules/order", ("\n".join(order) + "\n").encode())
    archive.file("init", _init_script().encode(), 0o755)
    return archive.finish()


# -- running -------------------------------------------------------------------------------------


def _kept(workdir: Path | None) -> str:
    """Where to look for more, for error messages."""
    if workdir is None:
        return " (DEBVISOR_GUEST_KEEP=1 keeps the run directory with the console log)"
    return f" (run directory kept: {workdir})"


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) or "(empty)"
    except OSError:
        return "(none)"


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL QEMU by PID (its own session, so also anything it started) and reap it."""
    stop_process(proc, signal.SIGKILL, timeout=10.0)


def run_in_guest(
    argv: Sequence[str],
    *,
    modules: Sequence[str] = NETWORK_MODULES,
    timeout: float = 120.0,
    env: Mapping[str, str] | None = None,
    cwd: str = "/",
    memory_mb: int = 512,
    check: bool = False,
) -> GuestResult:
    """Boot a fresh guest, run `argv` in it as root, and return its exit code, output and timings.

    `modules` are loaded (with their dependencies, and MODULE_PARAMETERS) before the command
    starts. The command sees the host's filesystem read-only, a minimal environment (PATH,
    HOME=/root, LANG, DEBVISOR_IN_GUEST=1, DEBVISOR_GUEST_OUT) plus `env`, stdin from
    /dev/null, and the working directory `cwd`. `timeout` bounds the whole run, boot included;
    past it QEMU is killed and GuestError raised with whatever output had arrived. A nonzero
    exit code is returned, or raised as GuestError with `check=True`.
    """
    if not argv:
        raise ValueError("argv must name a command")
    reason = guest_available()
    if reason is not None:
        raise GuestError(reason)
    kern = kernel()
    workdir = Path(tempfile.mkdtemp(prefix="debvisor-guest-"))
    proc: subprocess.Popen[bytes] | None = None
    try:
        out = workdir / "out"  # exported to the guest, writable
        out.mkdir()
        guest_env = {
            "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": "/root",
            "LANG": "C.UTF-8",
            "PYTHONDONTWRITEBYTECODE": "1",  # the checkout is read-only in the guest
            "PYTHONUNBUFFERED": "1",  # partial output survives a timeout
            "DEBVISOR_IN_GUEST": "1",
            "DEBVISOR_GUEST_OUT": GUEST_OUT,
            **(env or {}),
        }
        (out / "command.sh").write_text(_command_script(argv, guest_env, cwd))
        initrd = workdir / "initrd.cpio"
        initrd.write_bytes(_initramfs(kern, modules))
        (workdir / "init.sh").write_text(_init_script())  # what is in the initramfs, for reading
        console = workdir / "console.log"
        cmdline = "console=ttyS0 panic=-1 rdinit=/init" + ("" if KEEP else " quiet")
        qemu = [
            QEMU,
            "-accel", "tcg",
            "-M", "pc",
            "-cpu", "max",
            "-smp", "1",
            "-m", str(memory_mb),
            "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
            "-serial", f"file:{console}",
            "-kernel", str(kern.boot_image),
            "-initrd", str(initrd),
            "-append", cmdline,
            "-fsdev", "local,id=hostroot,path=/,security_model=none,readonly=on,multidevs=remap",
            "-device", "virtio-9p-pci,fsdev=hostroot,mount_tag=hostroot",
            "-fsdev", f"local,id=out,path={out},security_model=none",
            "-device", "virtio-9p-pci,fsdev=out,mount_tag=out",
        ]  # fmt: skip
        (workdir / "qemu.argv").write_text(shlex.join(qemu) + "\n")
        started = time.time()
        # setpriv: QEMU dies with this thread even if it is SIGKILLed (a `| head` pipeline, a CI
        # timeout), so no guest outlives its harness; cleanup by PID below covers everything else.
        reaper = ["setpriv", "--pdeathsig", "KILL"] if shutil.which("setpriv") else []
        with (workdir / "qemu.log").open("wb") as qemu_log:
            proc = subprocess.Popen(
                [*reaper, *qemu],
                stdin=subprocess.DEVNULL,
                stdout=qemu_log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _stop(proc)
            raise GuestError(
                f"{shlex.join(argv)} did not finish in the guest within {timeout:.0f} s{_kept(_keep(workdir))}"
                f"\n--- guest stderr so far ---\n{_read(out / 'stderr')}--- guest stdout so far ---\n"
                f"{_read(out / 'stdout')}--- console (tail) ---\n{_tail(console)}"
            ) from None
        total = time.time() - started
        rc = _read(out / "rc").strip()
        if not rc.isdigit():
            raise GuestError(
                f"the guest exited without running {shlex.join(argv)} to the end (QEMU status {proc.returncode})"
                f"{_kept(_keep(workdir))}\n--- QEMU ---\n{_tail(workdir / 'qemu.log')}\n"
                f"--- console (tail) ---\n{_tail(console)}\n--- guest stderr ---\n{_read(out / 'stderr')}"
            )
        boot = (out / "started").stat().st_mtime - started
        result = GuestResult(
            argv=tuple(argv),
            returncode=int(rc),
            stdout=_read(out / "stdout"),
            stderr=_read(out / "stderr"),
            boot_seconds=boot,
            total_seconds=total,
            workdir=_keep(workdir),
            files={p.name: p.read_bytes() for p in out.iterdir() if p.is_file() and p.name not in _HARNESS_FILES},
        )
        return result.check() if check else result
    finally:
        if proc is not None:
            _stop(proc)
        if not KEEP:
            shutil.rmtree(workdir, ignore_errors=True)


def _keep(workdir: Path) -> Path | None:
    return workdir if KEEP else None


# -- Python functions in the guest ---------------------------------------------------------------

_CALL = """\
import importlib, json, sys
module, qualname, args = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
func = importlib.import_module(module)
for part in qualname.split("."):
    func = getattr(func, part)
result = func(*args)
with open(sys.argv[4], "w") as f:
    json.dump(result, f)
"""


def call_in_guest(
    func: Callable[..., Any],
    *args: Any,
    modules: Sequence[str] = NETWORK_MODULES,
    timeout: float = 120.0,
    env: Mapping[str, str] | None = None,
) -> Any:
    """Call the module-level function `func(*args)` in a fresh guest's Python and return its result.

    The guest runs this checkout's interpreter (`sys.executable`, so the project's virtualenv)
    from the repository root, imports `func` by module and name, and calls it with the
    JSON-encoded `args`; the return value travels back as JSON. Anything that escapes `func`
    (a failed assert included) raises GuestError whose message holds the guest's traceback
    and output. Test bodies written this way read like ordinary Python:

        def _bond_modes() -> list[str]:          # runs in the guest
            ...
            return modes

        def test_bond() -> None:
            assert call_in_guest(_bond_modes) == ["802.3ad"]
    """
    module = func.__module__
    if module == "__main__" or "<locals>" in func.__qualname__:
        raise ValueError(f"{func.__qualname__} must be a module-level function of an importable module")
    result_file = f"{GUEST_OUT}/return.json"
    argv = [sys.executable, "-c", _CALL, module, func.__qualname__, json.dumps(list(args)), result_file]
    run = run_in_guest(argv, modules=modules, timeout=timeout, env=env, cwd=str(REPO))
    if run.returncode != 0 or "return.json" not in run.files:
        raise GuestError(
            f"{module}.{func.__qualname__} failed in the guest (exit {run.returncode}){_kept(run.workdir)}\n"
            f"--- guest stderr ---\n{run.stderr}--- guest stdout ---\n{run.stdout}"
        )
    return json.loads(run.files["return.json"])
