"""The live image, booted as a machine boots it: build it (cached), boot the ISO under QEMU, and
wait for the appliance in the guest to answer GET /readyz; then check, through the API, that it
manages the guest's own systemd (debvisor.service active, the units readiness line, its journal).

The image is built by `image/build` into build/image (its cache under /var/cache/debvisor-image
makes a rebuild with unchanged packages take about a minute; a fresh machine builds the base
layer first, about 8 minutes). The guest is QEMU under TCG with user networking restricted to
the host (`restrict=on`: no traffic leaves the machine), the appliance's port 8443 forwarded
to a loopback port, and a small disk labelled DEBVISOR-DATA for its state.

Power-on to ready (QEMU start to the first 200 from /readyz) is printed and recorded as the
test property `power_on_to_ready_seconds`. The issue's target is under 60 s under TCG; the
assertion here is looser (BOOT_BUDGET) so that a busy shared machine does not make it flaky.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import signal
import socket
import sqlite3
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import msgspec
import pytest
from cryptography import x509

from appliance.auth.passwords import verify_password
from appliance.auth.types import UserRecord
from appliance.datadir import DB_NAME
from tests.kit.need import require
from tests.kit.procs import stop_process
from tests.nodeproc import first_admin_token, free_port

pytestmark = [pytest.mark.integration, pytest.mark.qemu, pytest.mark.privileged]

REPO = Path(__file__).resolve().parents[2]
IMAGE_DIR = Path(os.environ.get("DEBVISOR_IMAGE_OUT", str(REPO / "build" / "image")))
BUILD_TIMEOUT = 40 * 60.0  # a fresh machine: download, install, squash; cached: ~1 minute
BOOT_BUDGET = 240.0  # seconds from power-on to /readyz before the test gives up
# The emulated CPU. Not `max`: it advertises ERMS and FSRM, so the guest kernel zeroes and copies
# pages with `rep stosb`/`rep movsb` (and glibc its large memset/memcpy), which TCG emulates an
# iteration at a time; with Debian's init_on_alloc zeroing every page the kernel hands out, that
# alone made the first program after the initramfs (systemd) take ~30 s and power-on to ready
# ~77 s. QEMU's default model boots the same image in ~50 s. Real CPUs run those instructions
# natively, so this is about the emulator, not the image.
TCG_CPU = "qemu64"
BUILD_TOOLS = ("mmdebstrap", "mksquashfs", "grub-mkrescue", "xorriso", "mformat", "qemu-system-x86_64", "mkfs.ext4")


@pytest.fixture(scope="module")
def image() -> Path:
    """build/image, (re)built by image/build so that it holds this checkout's appliance."""
    require(os.geteuid() == 0, "building and booting the image needs root (mmdebstrap, loop mounts)")
    missing = [tool for tool in BUILD_TOOLS if shutil.which(tool) is None]
    require(not missing, f"missing tools to build and boot the image: {', '.join(missing)} (see .ci/packages)")
    log = IMAGE_DIR.parent / "image-build.log"
    IMAGE_DIR.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with log.open("wb") as out:
        result = subprocess.run(
            [str(REPO / "image" / "build"), "--out", str(IMAGE_DIR)],
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=BUILD_TIMEOUT,
            check=False,
        )
    text = log.read_text(errors="replace")
    if result.returncode != 0:
        pytest.fail(f"image/build failed ({result.returncode}); log {log}:\n{text[-4000:]}", pytrace=False)
    print(f"\nimage/build took {time.monotonic() - started:.0f} s:\n{text}")
    return IMAGE_DIR


class Guest:
    """One QEMU process, in its own session and killed with its harness (setpriv --pdeathsig)."""

    def __init__(self, argv: list[str], workdir: Path) -> None:
        reaper = ["setpriv", "--pdeathsig", "KILL"] if shutil.which("setpriv") else []
        (workdir / "qemu.argv").write_text(shlex.join(argv) + "\n")
        self.console = workdir / "console.log"
        self.monitor = workdir / "monitor.sock"
        self.started = time.monotonic()
        with (workdir / "qemu.log").open("wb") as log:
            self.proc = subprocess.Popen(
                [*reaper, *argv], stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

    def power_off(self, timeout: float) -> float:
        """Press the ACPI power button (QEMU monitor) and wait for the guest to shut down; its seconds."""
        started = time.monotonic()
        with socket.socket(socket.AF_UNIX) as sock:
            sock.connect(str(self.monitor))
            sock.sendall(b"system_powerdown\n")
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pytest.fail(f"the guest did not power off within {timeout:.0f} s:\n{tail(self)}", pytrace=False)
        return time.monotonic() - started

    def console_text(self) -> str:
        try:
            return self.console.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        """SIGKILL QEMU by PID (and its session) and reap it."""
        stop_process(self.proc, signal.SIGKILL, timeout=10.0)


@contextlib.contextmanager
def booted(argv: list[str], workdir: Path) -> Iterator[Guest]:
    guest = Guest(argv, workdir)
    try:
        yield guest
    finally:
        guest.stop()


def qemu_argv(port: int, workdir: Path, *boot: str, disk: Path | None = None, serial: str | None = None) -> list[str]:
    """A TCG guest with 2 GiB, user networking confined to the host, 8443 forwarded to `port`.

    The serial console goes to workdir/console.log unless `serial` names another QEMU chardev.
    """
    argv = [
        "qemu-system-x86_64",
        "-accel", "tcg",
        "-M", "pc",
        "-cpu", TCG_CPU,
        "-smp", "2",
        "-m", "2048",
        "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
        "-serial", serial or f"file:{workdir / 'console.log'}",
        "-monitor", f"unix:{workdir / 'monitor.sock'},server=on,wait=off",
        "-netdev", f"user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:{port}-:8443",
        "-device", "virtio-net-pci,netdev=n0",
        *boot,
    ]  # fmt: skip
    if disk is not None:
        argv += ["-drive", f"file={disk},format=raw,if=virtio"]
    return argv


def wait_ready(guest: Guest, port: int, budget: float) -> tuple[float, dict[str, object]]:
    """Seconds from QEMU's start to the first 200 from /readyz, and its body."""
    url = f"https://127.0.0.1:{port}/readyz"
    deadline = guest.started + budget
    # The node's CA lives in the guest; a readiness probe only needs the answer, not trust.
    with httpx.Client(verify=False, timeout=3.0) as client:
        while time.monotonic() < deadline:
            if guest.proc.poll() is not None:
                pytest.fail(f"QEMU exited ({guest.proc.returncode}) before the node was ready:\n{tail(guest)}")
            with contextlib.suppress(httpx.HTTPError):
                response = client.get(url)
                if response.status_code == 200:
                    return time.monotonic() - guest.started, response.json()
            time.sleep(0.5)
    pytest.fail(f"no 200 from /readyz within {budget:.0f} s of power-on; console tail:\n{tail(guest)}", pytrace=False)


def tail(guest: Guest, lines: int = 60) -> str:
    return "\n".join(guest.console_text().splitlines()[-lines:])


def served_names(port: int) -> list[str]:
    """DNS names in the certificate the node serves on `port` (its node name among them)."""
    pem = ssl.get_server_certificate(("127.0.0.1", port), timeout=10)
    cert = x509.load_pem_x509_certificate(pem.encode())
    return cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)


def data_disk(path: Path, label: str = "DEBVISOR-DATA") -> Path:
    with path.open("wb") as f:
        f.truncate(64 * 1024 * 1024)
    subprocess.run(["mkfs.ext4", "-q", "-L", label, str(path)], check=True, capture_output=True)
    return path


# systemd's rescue target with sulogin forced: a root shell at the console without a password
# (the image locks root's), the documented way in when the API cannot be reached.
RESCUE_ARGS = "systemd.unit=rescue.target systemd.setenv=SYSTEMD_SULOGIN_FORCE=1"
PROMPT = re.compile(rb"root@[\w-]+:[^\n]*# $|^[\w.-]*# $", re.MULTILINE)


class SerialConsole:
    """The guest's serial port over QEMU's unix-socket chardev: wait for a shell, type lines."""

    def __init__(self, path: Path, guest: Guest) -> None:
        self.path = path
        self.guest = guest
        self.sock = socket.socket(socket.AF_UNIX)
        self.seen = bytearray()  # everything the guest wrote, for failure messages

    def __enter__(self) -> SerialConsole:
        deadline = time.monotonic() + 30.0
        while True:
            try:
                self.sock.connect(str(self.path))
                break
            except (FileNotFoundError, ConnectionRefusedError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        self.sock.settimeout(0.5)
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    def send(self, line: str) -> None:
        self.sock.sendall(line.encode() + b"\r")

    def _read(self) -> bytes:
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            return b""
        self.seen += data
        return data

    def shell_prompt(self, timeout: float) -> None:
        """Wait for a root shell prompt, pressing Enter now and then (sulogin may wait for it)."""
        deadline = time.monotonic() + timeout
        tail = b""
        last_enter = 0.0
        while time.monotonic() < deadline:
            if self.guest.proc.poll() is not None:
                pytest.fail(f"QEMU exited before a shell prompt:\n{self.text()[-3000:]}", pytrace=False)
            tail = (tail + self._read())[-4096:]
            if PROMPT.search(tail):
                return
            if time.monotonic() - last_enter > 5.0:
                self.sock.sendall(b"\r")
                last_enter = time.monotonic()
        pytest.fail(
            f"no root shell prompt on the console within {timeout:.0f} s:\n{self.text()[-3000:]}", pytrace=False
        )

    def run(self, command: str, timeout: float) -> str:
        """Type `command`; what the console printed until the next prompt."""
        start = len(self.seen)
        self.send(command)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._read()
            out = bytes(self.seen[start:])
            after_echo = out.split(b"\n", 1)[1] if b"\n" in out else b""
            if PROMPT.search(after_echo):
                return after_echo.decode(errors="replace")
        pytest.fail(f"{command!r} did not finish within {timeout:.0f} s:\n{self.text()[-3000:]}", pytrace=False)

    def text(self) -> str:
        return self.seen.decode(errors="replace")


def stored_user(disk: Path, workdir: Path, name: str) -> UserRecord:
    """The user record in the node database on an ext4 image (copied out with debugfs)."""
    workdir.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-wal"):
        subprocess.run(
            ["debugfs", "-R", f"dump /node/{DB_NAME}{suffix} {workdir / (DB_NAME + suffix)}", str(disk)],
            capture_output=True,
            check=True,
        )
    wal = workdir / f"{DB_NAME}-wal"
    if wal.exists() and wal.stat().st_size == 0:
        wal.unlink()  # an empty dump of a missing file would read as a damaged WAL
    db = sqlite3.connect(workdir / DB_NAME)
    try:
        row = db.execute("SELECT value FROM config WHERE kind = 'user' AND key = ?", (name,)).fetchone()
    finally:
        db.close()
    assert row is not None, f"no user {name!r} in the node's database"
    return msgspec.json.decode(row[0], type=UserRecord)


def disk_listing(disk: Path, directory: str) -> str:
    """`ls -l DIRECTORY` in an ext4 image, read without mounting it (debugfs)."""
    result = subprocess.run(
        ["debugfs", "-R", f"ls -l {directory}", str(disk)], capture_output=True, text=True, check=True
    )
    return result.stdout


# The console banner (appliance/console.py) on the serial getty, until the password is changed.
FIRST_LOGIN = re.compile(r"First login: admin / (\S+)")
UNITS_READY_BUDGET = 60.0  # seconds after /readyz for the units line (not critical) to be ready


def first_login_password(guest: Guest, timeout: float) -> str:
    """The bootstrap admin's initial password, as the console banner shows it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = FIRST_LOGIN.search(guest.console_text())
        if found is not None:
            return found.group(1)
        time.sleep(0.5)
    pytest.fail(f"no first-login line on the serial console within {timeout:.0f} s:\n{tail(guest)}", pytrace=False)


def own_systemd_through_the_api(guest: Guest, port: int, node: str) -> None:
    """The booted node manages its own systemd, all through the API: its units line in /readyz
    is ready, debvisor.service reads as active and running, its journal has entries, and a
    service written by an admin loads."""
    password = first_login_password(guest, timeout=60.0)
    # As wait_ready: the node's CA lives in the guest; the port is a loopback forward to it.
    with httpx.Client(base_url=f"https://127.0.0.1:{port}", verify=False, timeout=30.0) as client:
        client.headers["Authorization"] = f"Bearer {first_admin_token(client, password)}"
        client.cookies.clear()  # the token alone, not the login's session
        deadline = time.monotonic() + UNITS_READY_BUDGET
        units: dict[str, object] = {}
        while time.monotonic() < deadline:
            units = client.get("/readyz").json()["checks"]["units"]
            if units["ready"] is True:
                break
            time.sleep(1.0)
        assert units.get("ready") is True, f"units line of /readyz: {units}"
        answer = client.get(f"/api/v1/nodes/{node}/units/debvisor.service")
        assert answer.status_code == 200, answer.text
        details = answer.json()
        assert (details["active_state"], details["sub_state"]) == ("active", "running"), details
        assert details["load_state"] == "loaded", details
        page = client.get(f"/api/v1/nodes/{node}/journal", params={"unit": "debvisor.service", "limit": "5"})
        assert page.status_code == 200, page.text
        entries = page.json()["entries"]
        assert 0 < len(entries) <= 5, entries
        # PID 1's lines about the unit count as its own (journalctl -u); the appliance's own are there too.
        assert any(entry["unit"] == "debvisor.service" for entry in entries), entries
        # An admin's own service lands in /etc/systemd/system, which the appliance's sandbox
        # (ProtectSystem=strict) leaves writable for that, and systemd loads it.
        unit = "dvt-image.service"
        content = "[Unit]\nDescription=written through the API\n\n[Service]\nType=oneshot\nExecStart=/bin/true\n"
        written = client.put(f"/api/v1/nodes/{node}/units/{unit}/file", json={"content": content})
        assert written.status_code == 200, written.text
        assert (written.json()["action"], written.json()["load_state"]) == ("created", "loaded"), written.json()
        assert client.get(f"/api/v1/nodes/{node}/units/{unit}").json()["load_state"] == "loaded"


def test_iso_boots_to_a_ready_node_with_state_on_the_data_partition(
    image: Path, tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    iso = image / "debvisor.iso"
    disk = data_disk(tmp_path / "data.img")
    port = free_port()
    argv = qemu_argv(port, tmp_path, "-cdrom", str(iso), "-boot", "d", disk=disk)
    with booted(argv, tmp_path) as guest:
        seconds, body = wait_ready(guest, port, BOOT_BUDGET)
        names = served_names(port)
        checked = time.monotonic()
        own_systemd_through_the_api(guest, port, node="debvisor")
        checked = time.monotonic() - checked
        # A clean shutdown (ACPI power button) flushes the data partition for the check below.
        shutdown = guest.power_off(timeout=120.0)
        console = guest.console_text()
    record_property("power_on_to_ready_seconds", round(seconds, 1))
    print(
        f"\nISO power-on to /readyz: {seconds:.1f} s (target < 60 s under TCG); own systemd through the API "
        f"checked in {checked:.1f} s; power-off {shutdown:.1f} s"
    )
    assert body["ready"] is True
    assert "debvisor" in names  # no debvisor.name= in the ISO's menu: the host name
    assert "node state in /var/lib/debvisor" in console, console[-3000:]
    assert "initial-admin-password" in disk_listing(disk, "/node")  # the node's state went to the disk

    # Recovery at the console (docs/recovery.md): the same node, booted into systemd's rescue
    # target with sulogin forced (root's password is locked in the image), resets the admin
    # password on its data partition; the node is not running meanwhile.
    new_password = "Rescued-at-the-console-42"
    rescue_dir = tmp_path / "rescue"
    rescue_dir.mkdir()
    append = f"boot=live live-media-path=/live console=ttyS0,115200n8 {RESCUE_ARGS}"
    serial = rescue_dir / "serial.sock"
    argv = qemu_argv(
        free_port(),
        rescue_dir,
        "-kernel", str(image / "vmlinuz"),
        "-initrd", str(image / "initrd.img"),
        "-append", append,
        "-cdrom", str(iso),
        disk=disk,
        serial=f"unix:{serial},server=on,wait=off",
    )  # fmt: skip
    with booted(argv, rescue_dir) as guest, SerialConsole(serial, guest) as console_:
        console_.shell_prompt(timeout=BOOT_BUDGET)
        output = console_.run(
            f"echo '{new_password}' | debvisor user passwd admin --password-stdin; echo rc=$?", timeout=120.0
        )
        assert "password of admin set" in output, output
        assert "rc=0" in output, output
        console_.send("systemctl poweroff")
        with contextlib.suppress(subprocess.TimeoutExpired):
            guest.proc.wait(timeout=120.0)
    assert guest.proc.returncode is not None, "the rescued guest did not power off"
    admin = stored_user(disk, tmp_path / "copy", "admin")
    assert verify_password(admin.password_hash, new_password)


def test_kernel_command_line_names_the_node_and_missing_data_partition_warns(
    image: Path, tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    # The PXE path in miniature: kernel and initramfs handed over directly with debvisor.*
    # parameters; the squashfs is still found on the ISO (attached as a CD). No data disk.
    port = free_port()
    append = "boot=live live-media-path=/live console=ttyS0,115200n8 debvisor.name=cmdline-node"
    argv = qemu_argv(
        port,
        tmp_path,
        "-kernel", str(image / "vmlinuz"),
        "-initrd", str(image / "initrd.img"),
        "-append", append,
        "-cdrom", str(image / "debvisor.iso"),
    )  # fmt: skip
    with booted(argv, tmp_path) as guest:
        seconds, body = wait_ready(guest, port, BOOT_BUDGET)
        names = served_names(port)
        console = guest.console_text()
    record_property("power_on_to_ready_seconds", round(seconds, 1))
    print(f"\nkernel+initrd power-on to /readyz: {seconds:.1f} s")
    assert body["ready"] is True
    assert "cmdline-node" in names
    assert "no data partition labelled DEBVISOR-DATA" in console, console[-3000:]


def test_a_failed_start_says_why_on_the_serial_console(image: Path, tmp_path: Path) -> None:
    # A bad boot parameter: the appliance cannot start. Nobody at the console can read the
    # journal, so the reason must reach the serial console (and the banner) by itself, and
    # again after systemd restarts the unit.
    append = "boot=live live-media-path=/live console=ttyS0,115200n8 debvisor.name=Bad_Name"
    argv = qemu_argv(
        free_port(),
        tmp_path,
        "-kernel", str(image / "vmlinuz"),
        "-initrd", str(image / "initrd.img"),
        "-append", append,
        "-cdrom", str(image / "debvisor.iso"),
    )  # fmt: skip
    said = "debvisor: the node did not start: "
    with booted(argv, tmp_path) as guest:
        deadline = guest.started + BOOT_BUDGET
        while time.monotonic() < deadline and guest.console_text().count(said) < 2 and guest.proc.poll() is None:
            time.sleep(1.0)
        console = guest.console_text()
    lines = [line.strip() for line in console.splitlines() if said in line]
    assert len(lines) >= 2, f"the reason did not reach the serial console (twice):\n{console[-3000:]}"
    assert "debvisor.name" in lines[0], lines
