"""The node's data directory: where it is, what it holds, and who may touch it.

Layout (everything the node persists lives here, so backing up a node is copying one folder):

    lock                    held (flock) by the one process serving from this directory
    debvisor.db             SQLite database, WAL mode, versioned schema
    pki/ca.crt, ca.key      cluster CA (the key only on nodes that hold it)
    pki/node.crt, node.key  this node's identity
    initial-admin-password  the bootstrap admin credential, written once

A directory is either *fresh* (missing or empty) and gets initialised, or it is a DebVisor data
dir and is opened as it is. Anything else (foreign files, an interrupted initialisation, keys
readable by others) is refused with a one-line reason; this module never overwrites a file
that already exists.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
from pathlib import Path
from typing import IO

from appliance.errors import StartupError

DB_NAME = "debvisor.db"
LOCK_NAME = "lock"
# A PXE-booted machine's poll secret while it waits for approval, before the node exists: inside
# the data dir (the one place the service may write), and not a sign that a node was made there.
ENROLMENT_NAME = "enrolment"
INIT_MARKER = ".initialising"
ADMIN_PASSWORD_NAME = "initial-admin-password"  # noqa: S105 - a file name, not a secret
PKI_DIR = "pki"


def default_data_dir() -> Path:
    """`/var/lib/debvisor` for root, else `./.debvisor` (DESIGN.md, "Names and ports")."""
    if os.geteuid() == 0:
        return Path("/var/lib/debvisor")
    return Path.cwd() / ".debvisor"


class DataDir:
    """Paths inside one data directory, and the safe ways to create files in it."""

    def __init__(self, root: Path) -> None:
        self.root = root.absolute()
        self._lock_file: IO[bytes] | None = None

    @property
    def db_path(self) -> Path:
        return self.root / DB_NAME

    @property
    def pki(self) -> Path:
        return self.root / PKI_DIR

    @property
    def admin_password_path(self) -> Path:
        return self.root / ADMIN_PASSWORD_NAME

    def is_fresh(self) -> bool:
        """True when the directory is missing or empty: the node must be initialised."""
        if not self.root.exists():
            return True
        if not self.root.is_dir():
            raise StartupError(f"data dir {self.root} exists but is not a directory")
        try:
            entries = [p.name for p in self.root.iterdir()]
        except PermissionError as exc:
            raise StartupError(f"data dir {self.root} is not readable: {exc.strerror}") from exc
        return not [name for name in entries if name not in (LOCK_NAME, ENROLMENT_NAME)]

    def check_initialised(self) -> None:
        """Refuse a directory that is not a complete DebVisor data dir, saying why."""
        if (self.root / INIT_MARKER).exists():
            raise StartupError(
                f"initialisation of {self.root} was interrupted; move the directory away and start again"
            )
        if not self.db_path.exists():
            raise StartupError(
                f"data dir {self.root} is not empty but holds no {DB_NAME}: "
                "not a DebVisor data dir, refusing to initialise over it"
            )

    def create(self) -> None:
        """Make the directory (mode 0700) and mark it as being initialised."""
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.root, 0o700)
        self.pki.mkdir(mode=0o700, exist_ok=True)
        write_new_file(self.root / INIT_MARKER, b"", mode=0o600)

    def finish_initialisation(self) -> None:
        """Remove the marker that says initialisation is under way."""
        (self.root / INIT_MARKER).unlink()

    def lock(self) -> None:
        """Take the directory's lock so that two nodes never serve from one data dir (held already: nothing)."""
        if self._lock_file is not None:
            return
        handle = open(self.root / LOCK_NAME, "ab")  # noqa: SIM115 - held open for the process's life
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            handle.close()
            raise StartupError(f"data dir {self.root} is in use by another debvisor process") from exc
        os.chmod(self.root / LOCK_NAME, 0o600)
        self._lock_file = handle

    def unlock(self) -> None:
        """Release the lock taken by `lock`."""
        if self._lock_file is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._lock_file.fileno(), fcntl.LOCK_UN)
            self._lock_file.close()
            self._lock_file = None


def write_new_file(path: Path, data: bytes, *, mode: int) -> None:
    """Create `path` with `mode` and write `data`; fail if it already exists.

    The file is created with its final mode (never briefly world-readable) and synced, so a
    crash leaves either no file or the whole file.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def read_private_file(path: Path) -> bytes:
    """Read a file that holds a secret; refuse it when others could read it too."""
    try:
        info = path.stat()
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise StartupError(f"{path} is missing") from exc
    except PermissionError as exc:
        raise StartupError(f"{path} is not readable: {exc.strerror}") from exc
    if stat.S_IMODE(info.st_mode) & 0o077:
        raise StartupError(f"{path} is readable by other users (mode {stat.S_IMODE(info.st_mode):04o}); chmod 600 it")
    return data
