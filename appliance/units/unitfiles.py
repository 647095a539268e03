"""Create, edit and revert unit files: checked, verified, written atomically, put back on failure.

What Cockpit lacks (cockpit#9467, #18146): an admin writes a service or timer, or a drop-in
override of any service or timer, through the API of any node. A change goes through these
steps, and stops at the first that fails, leaving the machine as it was:

1. the system bus answers (no systemd to reload: nothing is touched);
2. the name (appliance/units/names.py; only `.service` and `.timer`) and where it would go:
   a whole unit only under `/etc/systemd/system`, and never over a unit shipped in
   `/usr/lib/systemd/system` or `/lib/systemd/system` (that is edited as a drop-in,
   `NAME.d/50-debvisor.conf` or a named one, as `systemctl edit` does);
3. the content (appliance/units/unitfile_content.py): syntax, and the programs it runs;
4. `systemd-analyze verify` of the unit with the new file staged first on the search path
   (appliance/units/unitfile_verify.py);
5. an atomic write (a temporary file in the same directory, fsync, rename, fsync of the
   directory), then `Manager.Reload` over the bus and the unit's load state;
6. if the reload fails or the unit then does not load, the previous content is put back (or
   the new file removed) and systemd reloaded again, and the change is refused.

Every change carries a unified diff of the file with secrets redacted, for the audit entry.
Files are read inside the managed root (`root`: `/`, or a container's root when a node
manages one from outside), symbolic links included. Reading a unit file (admin only) returns
it as it is. Left out: enabling (the units subsystem's enable action does it, after this has
verified the file), user units, units under /run (they vanish at boot) and other unit types.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import msgspec

from appliance.units.bus import MANAGER, SYSTEMD_PATH, BusError, SystemBus
from appliance.units.names import UnitNameError, check_unit_name, unit_type
from appliance.units.unitfile_content import check_content, inside_root, missing_programs, unified_diff
from appliance.units.unitfile_verify import Verifier, VerifyUnavailable

log = logging.getLogger(__name__)

EDITABLE_TYPES = ("service", "timer")
ADMIN_DIR = "etc/systemd/system"  # where our files go, relative to the managed root
# systemd's system unit search path (systemd.unit(5)), in its order, so that `read` finds
# the fragment systemd uses: transient and generated units included (a drop-in may override
# a unit a generator made, such as an init script's).
SEARCH_DIRS = (
    "run/systemd/transient",
    "run/systemd/generator.early",
    ADMIN_DIR,
    "run/systemd/system",
    "run/systemd/generator",
    "usr/local/lib/systemd/system",
    "usr/lib/systemd/system",
    "lib/systemd/system",
    "run/systemd/generator.late",
)
VENDOR_DIRS = ("usr/lib/systemd/system", "lib/systemd/system")
DEFAULT_DROPIN = "50-debvisor"
GOOD_LOAD_STATES = ("loaded", "masked")

_DROPIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,99}")


class UnitFileError(Exception):
    """A refused change; `status` is the API answer (404 unknown, 409 conflict, 422 invalid,
    500 systemd refused the reload, 503 a tool or the bus is missing) and `errors` the content
    problems as (JSON path, message) for a 422."""

    def __init__(self, status: int, message: str, errors: Sequence[tuple[str, str]] = ()) -> None:
        super().__init__(message)
        self.status = status
        self.errors = list(errors)


class DropIn(msgspec.Struct, frozen=True):
    """One drop-in of a unit: its name (`50-debvisor.conf`), path on the machine and content."""

    name: str
    path: str
    content: str


class UnitFileView(msgspec.Struct, frozen=True, kw_only=True):
    """A unit's file as systemd finds it: the fragment (the first in the search path) and every
    drop-in, with where an edit through the API would go."""

    unit: str
    path: str | None  # the fragment, as a path on the managed machine (None: only drop-ins)
    shipped: bool  # a vendor unit exists (/usr/lib or /lib): a whole-file edit is refused
    content: str | None
    dropins: list[DropIn]


class UnitFileChange(msgspec.Struct, frozen=True, kw_only=True):
    """What a write or a revert did: the file, whether it was created or removed, the diff
    (secrets redacted) and the unit's load state after the reload."""

    unit: str
    path: str
    action: str  # created, replaced, unchanged, removed
    diff: str
    load_state: str | None = None


# -- pure parts --------------------------------------------------------------------------


def check_dropin_name(name: str) -> str:
    """`name` as a drop-in file name ending in `.conf`; raises UnitFileError (422) otherwise."""
    base = name.removesuffix(".conf")
    if not _DROPIN.fullmatch(base) or base.startswith("."):
        raise UnitFileError(
            422,
            f"drop-in name {name!r}: letters, digits and _.@- (at most 100), no path",
            [("$.dropin", "not a drop-in file name")],
        )
    return f"{base}.conf"


# -- the service -------------------------------------------------------------------------


@dataclass(frozen=True)
class _Target:
    unit: str
    relative: str  # path relative to a unit directory: UNIT or UNIT.d/NAME.conf
    path: Path  # the file on this machine (under the managed root)
    shown: str  # the same file as a path on the managed machine


class UnitFiles:
    """Unit files of the machine under `root`, reloaded through `bus`."""

    def __init__(self, root: Path, bus: SystemBus, verifier: Verifier | None = None) -> None:
        self.root = root
        self.bus = bus
        self.verifier = verifier or Verifier()
        self._lock = asyncio.Lock()  # one change (write, reload, check) at a time

    def _unit(self, unit: str) -> str:
        try:
            return check_unit_name(unit, template=True, types=EDITABLE_TYPES)
        except UnitNameError as exc:
            raise UnitFileError(422, str(exc), [("$.unit", str(exc))]) from exc

    def _shown(self, path: Path) -> str:
        return "/" + str(path.relative_to(self.root))

    def read(self, unit: str) -> UnitFileView:
        """The unit's fragment and drop-ins; 404 when systemd would find neither. An instance
        without a file of its own is read from its template (`foo@.service`), with the
        template's drop-ins after its own, as systemd combines them. (Type-wide and prefix
        drop-ins, `service.d/` and `foo-.service.d/`, are not listed.)"""
        unit = self._unit(unit)
        names = _names(unit)
        fragment = next((self.root / d / n for n in names for d in SEARCH_DIRS if _present(self.root / d / n)), None)
        dropins: dict[str, Path] = {}
        for directory in SEARCH_DIRS:  # earlier directories win for the same file name
            for name in names:
                folder = self.root / directory / f"{name}.d"
                if folder.is_dir() and not folder.is_symlink():
                    for file in sorted(folder.glob("*.conf")):
                        dropins.setdefault(file.name, file)
        if fragment is None and not dropins:
            raise UnitFileError(404, f"no unit file {unit} on this node")
        content = None
        if fragment is not None:
            content = self._content(fragment)
        return UnitFileView(
            unit=unit,
            path=self._shown(fragment) if fragment is not None else None,
            shipped=self._shipped(unit),
            content=content,
            dropins=[
                DropIn(name=name, path=self._shown(path), content=self._content(path))
                for name, path in sorted(dropins.items())
            ],
        )

    def _content(self, path: Path) -> str:
        """A file's text, links followed inside the managed root (an alias links to /lib/...;
        a mask to /dev/null, which reads as empty)."""
        real = inside_root(self.root, self._shown(path))
        return _read(real) if real is not None and real.is_file() else ""

    def _shipped(self, unit: str) -> bool:
        return any(_present(self.root / d / unit) for d in VENDOR_DIRS)

    def _target(self, unit: str, dropin: str | None, *, writing: bool) -> _Target:
        if dropin is None:
            if writing and self._shipped(unit):
                raise UnitFileError(
                    409,
                    f"{unit} is shipped by a package: it is not overwritten; edit it with a drop-in override "
                    f"(dropin={DEFAULT_DROPIN!r}, as `systemctl edit` does)",
                )
            relative = unit
        else:
            if writing and not any(_present(self.root / d / n) for n in _names(unit) for d in SEARCH_DIRS):
                raise UnitFileError(404, f"no unit file {unit} on this node to override: create the unit first")
            relative = f"{unit}.d/{check_dropin_name(dropin)}"
        path = self.root / ADMIN_DIR / relative
        if path.is_symlink():
            raise UnitFileError(
                409, f"/{ADMIN_DIR}/{relative} is a symbolic link (a masked or aliased unit): unmask or remove it first"
            )
        return _Target(unit, relative, path, f"/{ADMIN_DIR}/{relative}")

    async def write(self, unit: str, content: str, dropin: str | None = None) -> UnitFileChange:
        """Create or replace the unit (`dropin` None) or one of its drop-ins; see the module docstring."""
        unit = self._unit(unit)
        problems = check_content(content, unit_type(unit)) or missing_programs(content, self.root)
        if problems:
            raise UnitFileError(422, f"the content of {unit} is not a valid unit file: {problems[0][1]}", problems)
        async with self._lock:
            await self.bus.connection()  # no systemd to reload: 503 before anything is touched
            target = self._target(unit, dropin, writing=True)
            before = _read(target.path) if target.path.exists() else None
            if before == content:
                return UnitFileChange(unit=unit, path=target.shown, action="unchanged", diff="")
            try:
                found = await self.verifier.verify(
                    self.root, unit, {target.relative: content}, {target.relative: target.shown}
                )
            except VerifyUnavailable as exc:
                raise UnitFileError(503, str(exc)) from exc
            if found:
                raise UnitFileError(
                    422,
                    f"systemd-analyze verify refused {target.shown}: {found[0]}",
                    [("$.content", line) for line in found],
                )
            # From the write on, a caller who goes away does not stop it half-way (written
            # but not reloaded, or not put back): the change runs to its end either way.
            state = await asyncio.shield(self._write_and_reload(target, content, before))
            action = "created" if before is None else "replaced"
            log.info("unit file %s", action, extra={"unit": unit, "path": target.shown})
            return UnitFileChange(
                unit=unit,
                path=target.shown,
                action=action,
                diff=unified_diff(target.shown, before, content),
                load_state=state,
            )

    async def revert(self, unit: str, dropin: str | None = None) -> UnitFileChange:
        """Remove our file: the drop-in named `dropin`; without one, the default drop-in (what
        an edit wrote) if there is one, else the unit's own file under /etc (what a create
        wrote), so each revert undoes the latest kind of change; 404 when there is none."""
        unit = self._unit(unit)
        async with self._lock:
            await self.bus.connection()  # no systemd to reload: 503 before anything is touched
            target = self._target(unit, dropin or DEFAULT_DROPIN, writing=False)
            if dropin is None and not target.path.exists():
                target = self._target(unit, None, writing=False)
            if not target.path.is_file():
                raise UnitFileError(404, f"{unit} has no file of ours to revert ({target.shown})")
            before = _read(target.path)
            state = await asyncio.shield(self._write_and_reload(target, None, before))
            log.info("unit file removed", extra={"unit": unit, "path": target.shown})
            return UnitFileChange(
                unit=unit,
                path=target.shown,
                action="removed",
                diff=unified_diff(target.shown, before, None),
                load_state=state,
            )

    async def _write_and_reload(self, target: _Target, content: str | None, before: str | None) -> str | None:
        """Write `content` (None: remove the file), reload, check, put `before` back on failure."""
        if content is None:
            await asyncio.to_thread(_remove, target.path)
        else:
            await asyncio.to_thread(_atomic_write, target.path, content)
        # A unit whose only file this was is gone after the reload: nothing left to load.
        remaining = any(_present(self.root / d / n) for n in _names(target.unit) for d in SEARCH_DIRS)
        return await self._reload_or_restore(target, before, check_load=remaining)

    async def _reload_or_restore(self, target: _Target, before: str | None, *, check_load: bool = True) -> str | None:
        """Reload systemd and check the unit loads; otherwise put `before` back, reload, raise."""
        try:
            await self.reload()
            state, error = await self.load_state(target.unit) if check_load else (None, None)
        except BusError as exc:
            state, error = None, f"daemon-reload failed: {exc.name}: {exc}"
        except BaseException:
            await self._restore(target, before)
            raise
        if error is None:
            return state
        await self._restore(target, before)
        raise UnitFileError(500 if state is None else 422, f"{error}; the previous file was put back")

    async def _restore(self, target: _Target, before: str | None) -> None:
        if before is None:
            await asyncio.to_thread(_remove, target.path)
        else:
            await asyncio.to_thread(_atomic_write, target.path, before)
        try:
            await self.reload()
        except Exception:  # the file is back either way; the next reload picks it up
            log.exception("daemon-reload after putting %s back failed", target.shown)

    async def reload(self) -> None:
        """`systemctl daemon-reload` over the bus (the reply comes once the reload is done)."""
        await self.bus.call(path=SYSTEMD_PATH, interface=MANAGER, member="Reload", deadline=90.0)

    async def load_state(self, unit: str) -> tuple[str | None, str | None]:
        """The unit's load state and, when it is not a good one, why (LoadError)."""
        if "@" in unit and unit.split("@", 1)[1].startswith("."):
            return None, None  # a template has no load state of its own
        (path,) = await self.bus.call(
            path=SYSTEMD_PATH, interface=MANAGER, member="LoadUnit", signature="s", body=[unit]
        )
        props = await self.bus.get_all(path, "org.freedesktop.systemd1.Unit")
        state = str(props.get("LoadState", ""))
        if state in GOOD_LOAD_STATES:
            return state, None
        name, text = props.get("LoadError", ("", ""))
        return state, f"systemd loaded {unit} as {state!r}" + (f": {text or name}" if text or name else "")


def _names(unit: str) -> list[str]:
    """The names systemd reads a unit's files under: its own, then its template's."""
    if "@" in unit and not unit.split("@", 1)[1].startswith("."):
        return [unit, f"{unit.split('@', 1)[0]}@.{unit_type(unit)}"]
    return [unit]


def _present(path: Path) -> bool:
    """The file or link is there (a link is not followed: its target is the managed
    machine's path, not this one's)."""
    return path.is_symlink() or path.exists()


def _read(path: Path) -> str:
    return path.read_bytes().decode("utf-8", "replace")


def _atomic_write(path: Path, content: str) -> None:
    """Write `content` to `path` so a reader sees the old or the new file, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
    temporary = path.with_name(f".#{path.name}.{secrets.token_hex(4)}")  # not *.conf, not a unit name
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(content.encode("utf-8"))
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temporary, 0o644)  # whatever the umask
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise
    _fsync_dir(path.parent)


def _remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    _fsync_dir(path.parent)
    if path.parent.name.endswith(".d"):
        with contextlib.suppress(OSError):  # not empty: other drop-ins stay
            path.parent.rmdir()


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
