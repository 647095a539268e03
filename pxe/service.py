"""A node's PXE boot server: its settings, dnsmasq under supervision, and the machines it booted.

`PxeSettings` is what the API reads and writes (per node: the interface and DHCP range are this
node's). Storing it is the caller's (`save`); `apply` re-renders dnsmasq's argv and restarts
the supervised process only when the argv changed. The plain-HTTP listener for the boot files
(`pxe.listener`) follows the setting: opened when PXE is enabled, closed when it is disabled,
at the address the listener module derives unless the node was given one; `http_url` defaults
to that address. Machines that fetched a boot script, and the inventory they reported, are
kept by `pxe.enlistment` (the node's SQLite; in memory for `python -m pxe serve`). Naming a
machine (`put_machine`, the whole entry), changing some of its fields (`patch_machine`) or
forgetting it (`forget`) changes the per-MAC settings like `put` does: validated, stored,
dnsmasq re-applied; one change at a time.

The settings hold no secret: machines get no join token from them, they enrol over TLS with
the single-use credential their boot script carries (`pxe.enrol_service`, when a node serves
PXE) and are approved by an operator or by the approval policy stored here (`approve_macs`,
`approve_serials`, `approve_all`). Reading them (`settings_view`) shows each machine's enrolment,
with the id and expiry of the join token it was handed, never the token.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import msgspec

from pxe.addresses import HostPort, SettingsError, parse_host_port
from pxe.dnsmasq import DnsmasqSettings, Machine, Mode, normalize_mac, render_argv
from pxe.enlistment import EnlistedMachine, EnlistedMachineDetail, EnlistmentStore, MachineRecord, summary, view
from pxe.enrol_service import MAX_SERIAL, EnrolmentService
from pxe.enrolment import CREDENTIAL_TTL, ApprovalPolicy, EnrolmentView
from pxe.inventory import Inventory
from pxe.listen import ListenerError
from pxe.listener import (
    DEFAULT_PORT,
    HttpListener,
    ListenerFactory,
    default_http_url,
    listen_address,
)
from pxe.script import MachineParams, cmdline
from pxe.server import Supervisor

log = logging.getLogger(__name__)

IPXE_DIR = Path("/usr/lib/ipxe")
MIN_CREDENTIAL_SECONDS, MAX_CREDENTIAL_SECONDS = 5, 24 * 3600  # Debian's ipxe package: undionly.kpxe, ipxe.efi


class PxeMachine(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One machine's boot settings, by MAC."""

    name: str | None = None
    extra: list[str] = []
    ip: str | None = None  # a fixed address (full DHCP mode only)


class PxeSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A node's PXE settings. `http_url` is how machines reach the boot-file listener (default: its address)."""

    enabled: bool = False
    interface: str | None = None
    mode: Mode = Mode.PROXY
    network: str | None = None  # proxy mode: the interface's IPv4 network
    range_start: str | None = None  # full mode
    range_end: str | None = None
    lease_seconds: int = 3600
    ipv6_prefix: str | None = None
    http_url: str | None = None  # e.g. http://10.0.0.2:8080 (the script URL is derived); None: the listener's
    only_known: bool = False
    machines: dict[str, PxeMachine] = {}
    # Enrolments approved without an operator: these MACs, these DMI serials (both claimed by the
    # machine itself: only as trustworthy as the boot network), or every machine (approve_all).
    approve_macs: list[str] = []
    approve_serials: list[str] = []
    approve_all: bool = False
    # How long the enrolment credential in a boot script is valid: boot to appliance start-up.
    credential_seconds: int = int(CREDENTIAL_TTL)


class PxeSettingsView(PxeSettings, frozen=True, kw_only=True):
    """The settings as `GET .../pxe` answers them: plus each machine's enrolment (read only;
    leave `enrolments` out of a PUT). A join token's id and expiry are shown, never the token."""

    enrolments: dict[str, EnrolmentView] = {}


class MachinePut(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The body of `PUT .../pxe/machines/{mac}`: name a machine (its next script carries these)."""

    name: str
    extra: list[str] = []
    ip: str | None = None  # a fixed address (full DHCP mode only)


class MachinePatch(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The body of `PATCH .../pxe/machines/{mac}`, JSON merge-patch style (RFC 7396): a field left
    out keeps its stored value, `null` clears it (`name`, `ip`: none; `extra`: empty)."""

    name: str | msgspec.UnsetType | None = msgspec.UNSET
    extra: list[str] | msgspec.UnsetType | None = msgspec.UNSET
    ip: str | msgspec.UnsetType | None = msgspec.UNSET

    def changed(self) -> list[str]:
        """The fields this patch sets or clears, for the audit detail."""
        return [f for f in self.__struct_fields__ if getattr(self, f) is not msgspec.UNSET]


def merge_machine(machine: PxeMachine, patch: MachinePatch) -> PxeMachine:
    """`machine` with `patch` applied: absent fields kept, null ones cleared."""
    changes: dict[str, object] = {}
    if patch.name is not msgspec.UNSET:
        changes["name"] = patch.name
    if patch.extra is not msgspec.UNSET:
        changes["extra"] = [] if patch.extra is None else patch.extra
    if patch.ip is not msgspec.UNSET:
        changes["ip"] = patch.ip
    return msgspec.structs.replace(machine, **changes)


class MachineSettings(msgspec.Struct, frozen=True, kw_only=True):
    """A machine's stored settings as the answer to a change."""

    mac: str
    name: str | None
    extra: list[str]
    ip: str | None

    @classmethod
    def of(cls, mac: str, machine: PxeMachine) -> MachineSettings:
        return cls(mac=mac, name=machine.name, extra=machine.extra, ip=machine.ip)


class PxeError(ValueError):
    """The settings cannot be used; the message names the field."""


def validate(config: PxeSettings) -> PxeSettings:
    """The config with MACs normalized; PxeError if it could not be served."""
    try:
        machines = {normalize_mac(mac): m for mac, m in config.machines.items()}
        approve_macs = sorted({normalize_mac(mac) for mac in config.approve_macs})
        for serial in config.approve_serials:
            if not serial.strip() or len(serial) > MAX_SERIAL or not serial.isprintable():
                raise PxeError(
                    f"approve_serials: {serial[:40]!r} is not a serial (1-{MAX_SERIAL} printable characters)"
                )
        if not MIN_CREDENTIAL_SECONDS <= config.credential_seconds <= MAX_CREDENTIAL_SECONDS:
            raise PxeError(f"credential_seconds must be {MIN_CREDENTIAL_SECONDS}-{MAX_CREDENTIAL_SECONDS}")
        normalized = msgspec.structs.replace(config, machines=machines, approve_macs=approve_macs)
        for mac, m in machines.items():
            cmdline("http://x/pxe", MachineParams(m.name, None, tuple(m.extra), mac))
        if config.enabled:
            if config.interface is None:
                raise PxeError("an enabled PXE server needs interface")
            # http_url may be left to default to the listener's address; check the rest without it.
            url = config.http_url or _PLACEHOLDER_URL
            render_argv(dnsmasq_settings(normalized, Path("/nonexistent"), http_url=url))
    except ValueError as exc:
        raise PxeError(str(exc)) from exc
    return normalized


_PLACEHOLDER_URL = "http://192.0.2.1:8080"  # TEST-NET-1: validates everything but the URL itself


def dnsmasq_settings(
    config: PxeSettings, lease_file: Path, tftp_root: Path = IPXE_DIR, *, http_url: str | None = None
) -> DnsmasqSettings:
    """dnsmasq's settings for an enabled config (`http_url`: the effective URL when the config has none)."""
    url = config.http_url or http_url or ""
    return DnsmasqSettings(
        interface=config.interface or "",
        tftp_root=tftp_root,
        script_url=f"{url.rstrip('/')}/pxe/boot.ipxe",
        mode=config.mode,
        network=config.network,
        range_start=config.range_start,
        range_end=config.range_end,
        lease_seconds=config.lease_seconds,
        ipv6_prefix=config.ipv6_prefix,
        machines=tuple(Machine(mac, m.ip) for mac, m in config.machines.items()),
        only_known=config.only_known,
        lease_file=lease_file,
    )


DEFAULT_BOOT_FILES = Path("/run/live/medium/live")  # where live-boot left the medium it booted from


@dataclass(frozen=True)
class BootServerOptions:
    """How a node serves PXE: where the boot files are, and whether dnsmasq really runs (not in unit tests)."""

    boot_files: Path = DEFAULT_BOOT_FILES
    tftp_root: Path = IPXE_DIR
    run_dnsmasq: bool = True
    # HOST:PORT of the boot-file listener when given (--pxe-http, debvisor.pxe-http=); None: port
    # 8080 on the PXE interface's IPv4 address.
    http_listener: str | None = None
    # Makes the listener that opens and closes with the setting, given the boot-file app (a
    # thunk: the app is built from the service). None: someone else serves the boot files at
    # `http_listener`, as `python -m pxe serve` and unit tests do.
    listener: ListenerFactory | None = None


def load_settings(path: Path) -> PxeSettings:
    """The stored config, or the default (disabled) when there is none yet.

    Settings stored by an older version may hold per-machine join tokens: they are dropped (and
    the file rewritten without them), since no script may carry one any more."""
    try:
        raw = msgspec.json.decode(path.read_bytes())
    except FileNotFoundError:
        return PxeSettings()
    machines = raw.get("machines") if isinstance(raw, dict) else None
    dropped = [mac for mac, m in (machines or {}).items() if isinstance(m, dict) and m.pop("join", None) is not None]
    config = msgspec.convert(raw, PxeSettings)
    if dropped:
        log.warning("PXE: dropped the stored join tokens of %s: machines now enrol instead", ", ".join(dropped))
        save_settings(path, config)
    return config


def save_settings(path: Path, config: PxeSettings) -> None:
    """Store atomically (write, fsync, rename), readable by root only (the site's layout is nobody's business)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(msgspec.json.format(msgspec.json.encode(config)))
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)


class PxeService:
    """Holds the config, runs dnsmasq for it, answers the boot routes (a `pxe.http.BootSource`)."""

    def __init__(
        self,
        config: PxeSettings,
        *,
        boot_files: Path,
        state_dir: Path,
        save: Callable[[PxeSettings], None] = lambda _c: None,
        tftp_root: Path = IPXE_DIR,
        dnsmasq: str = "dnsmasq",
        on_line: Callable[[str], None] | None = None,
        run_dnsmasq: bool = True,
        http_listener: str | None = None,
        listener: HttpListener | None = None,
        interface_ipv4: Callable[[str], Awaitable[str | None]] | None = None,
        clock: Callable[[], float] = time.time,
        machines: EnlistmentStore | None = None,
        is_member: Callable[[str], bool] = lambda _name: False,
        on_enlisted: Callable[[str, str, Inventory], None] | None = None,
        enrolments: Callable[[PxeService], EnrolmentService] | None = None,
    ) -> None:
        """`machines` keeps the booted machines (default: in memory); `is_member(name)` says whether a
        cluster member has that name (the `joined` state); `on_enlisted(mac, ip, inventory)` hears of reports;
        `enrolments(service)` makes, from this service (its approval policy, names and credential
        lifetime), what mints the credential each script carries (None: scripts carry none,
        machines do not enrol)."""
        self._config = validate(config)
        try:
            self._listen_override = parse_host_port(http_listener, DEFAULT_PORT) if http_listener else None
        except SettingsError as exc:
            raise PxeError(f"the boot-file listener address: {exc}") from exc
        self._listener = listener
        self._interface_ipv4 = interface_ipv4
        self._http_url: str | None = config.http_url  # the effective URL once enabled
        self._boot_files = boot_files
        self._state_dir = state_dir
        self._save = save
        self._tftp_root = tftp_root
        self._dnsmasq = dnsmasq
        self._on_line = on_line
        self._run_dnsmasq = run_dnsmasq
        self._clock = clock
        self._machines = machines if machines is not None else EnlistmentStore.in_memory()
        self._is_member = is_member
        self._on_enlisted = on_enlisted
        self._changing = asyncio.Lock()  # one settings change at a time (read, modify, store, apply)
        self._supervisor: Supervisor | None = None
        self._enrolments = enrolments(self) if enrolments is not None else None  # made last: it reads this service

    # BootSource
    def enabled(self) -> bool:
        return self._config.enabled

    def files_dir(self) -> Path:
        return self._boot_files

    def params(self, mac: str) -> MachineParams:
        m = self._config.machines.get(mac)
        return MachineParams(mac=mac) if m is None else MachineParams(m.name, None, tuple(m.extra), mac)

    def fetched(self, mac: str, ip: str) -> None:
        self._machines.fetched(mac, ip, self.params(mac).name, self._clock())

    def credential(self, mac: str) -> str | None:
        return self._enrolments.offer(mac) if self._enrolments is not None else None

    def enlist(self, mac: str, ip: str, inventory: Inventory) -> bool:
        if not self._machines.enlisted(mac, inventory, self._clock()):
            return False
        if self._on_enlisted is not None:
            self._on_enlisted(mac, ip, inventory)
        return True

    # API
    def settings(self) -> PxeSettings:
        return self._config

    def settings_view(self) -> PxeSettingsView:
        """The settings with each enrolled machine's enrolment (token id and expiry, never a token)."""
        enrolments: dict[str, EnrolmentView] = {}
        if self._enrolments is not None:
            for record in self._machines.all():
                found = self._enrolments.view(record.mac)
                if found is not None:
                    enrolments[record.mac] = found
        return PxeSettingsView(**msgspec.structs.asdict(self._config), enrolments=enrolments)

    def policy(self) -> ApprovalPolicy:
        """Which enrolling machines are approved without an operator."""
        c = self._config
        return ApprovalPolicy(
            macs=frozenset(c.approve_macs), serials=frozenset(c.approve_serials), everyone=c.approve_all
        )

    def name_of(self, mac: str) -> str | None:
        """The name an operator gave the machine in its settings."""
        m = self._config.machines.get(mac)
        return m.name if m is not None else None

    @property
    def enrolments(self) -> EnrolmentService | None:
        return self._enrolments

    def seen(self) -> list[EnlistedMachine]:
        """Machines that fetched a script, most recently seen first, with their state."""
        return [summary(self._view(record)) for record in self._machines.all()]

    def machine(self, mac: str) -> EnlistedMachineDetail | None:
        """One machine with its full inventory (None if it never fetched a script; PxeError: not a MAC)."""
        record = self._machines.get(_mac(mac))
        return None if record is None else self._view(record)

    def _view(self, record: MachineRecord) -> EnlistedMachineDetail:
        settings = self._config.machines.get(record.mac)
        configured_name = settings.name if settings is not None else None
        enrolment = self._enrolments.view(record.mac) if self._enrolments is not None else None
        return view(
            record,
            configured_name=configured_name,
            configured=settings is not None,
            is_member=self._is_member,
            enrolment=enrolment,
        )

    def http_url(self) -> str | None:
        """The URL machines are sent to (None: PXE is disabled)."""
        return self._http_url if self._config.enabled else None

    def listening(self) -> HostPort | None:
        """Where the boot-file listener is open (None: closed, or served by someone else)."""
        return self._listener.address if self._listener is not None else None

    def argv(self) -> list[str] | None:
        """dnsmasq's argv for the current config (None: disabled)."""
        if not self._config.enabled:
            return None
        settings = dnsmasq_settings(
            self._config, self._state_dir / "dnsmasq.leases", self._tftp_root, http_url=self._http_url
        )
        return render_argv(settings, self._dnsmasq)

    async def _resolve(self, config: PxeSettings) -> tuple[HostPort | None, str | None]:
        """Where the listener must be and the URL machines get, for `config` (PxeError if nowhere)."""
        if not config.enabled:
            return None, None
        if self._listener is None and self._listen_override is None:
            # dnsmasq would send machines to a URL nobody serves.
            raise PxeError("this node has no plain-HTTP listener for the boot files: start it with --pxe-http")
        ipv4 = None
        if self._interface_ipv4 is not None and config.interface is not None:
            ipv4 = await self._interface_ipv4(config.interface)
        listen = listen_address(self._listen_override, ipv4)
        if listen is None:
            raise PxeError(
                f"interface {config.interface} has no IPv4 address for the boot-file listener: "
                "give the node one with --pxe-http or debvisor.pxe-http="
            )
        url = config.http_url or default_http_url(listen, ipv4)
        if url is None:
            raise PxeError(f"the listener is on {listen} and {config.interface} has no IPv4 address: set http_url")
        return (listen if self._listener is not None else None), url

    async def _listen(self, listen: HostPort | None) -> None:
        """Open, move or close the listener to match `listen` (ListenerError if it cannot open)."""
        if self._listener is None or self._listener.address == listen:
            return
        previous = self._listener.address
        await self._listener.stop()
        if listen is None:
            return
        try:
            await self._listener.start(listen)
        except ListenerError:
            if previous is not None:  # leave things as they were
                await self._listener.start(previous)
            raise

    async def put(self, config: PxeSettings) -> PxeSettings:
        """Store and apply new settings (PxeError if unusable; nothing changes then)."""
        async with self._changing:
            return await self._put(config)

    async def name_machine(self, mac: str, name: str) -> MachineSettings:
        """Give a machine a name, keeping the rest of its settings (PxeError if unusable)."""
        async with self._changing:
            key = _mac(mac)
            machine = msgspec.structs.replace(self._config.machines.get(key, PxeMachine()), name=name)
            config = await self._put(
                msgspec.structs.replace(self._config, machines={**self._config.machines, key: machine})
            )
            return MachineSettings.of(key, config.machines[key])

    async def put_machine(self, mac: str, put: MachinePut) -> MachineSettings:
        """Add or replace one machine's settings, validated, stored and applied like `put`."""
        async with self._changing:
            key = _mac(mac)
            machine = PxeMachine(name=put.name, extra=put.extra, ip=put.ip)
            config = await self._put(
                msgspec.structs.replace(self._config, machines={**self._config.machines, key: machine})
            )
            return MachineSettings.of(key, config.machines[key])

    async def patch_machine(self, mac: str, patch: MachinePatch) -> MachineSettings:
        """Change some of one machine's settings (`merge_machine`), validated, stored and applied
        like `put`; a machine without settings starts from none."""
        async with self._changing:
            key = _mac(mac)
            machine = merge_machine(self._config.machines.get(key, PxeMachine()), patch)
            config = await self._put(
                msgspec.structs.replace(self._config, machines={**self._config.machines, key: machine})
            )
            return MachineSettings.of(key, config.machines[key])

    async def forget(self, mac: str) -> bool:
        """Delete a machine's record and its settings; False if there was neither."""
        async with self._changing:
            key = _mac(mac)
            configured = key in self._config.machines
            if configured:  # first: if storing the settings fails, the record stays too
                machines = {k: m for k, m in self._config.machines.items() if k != key}
                await self._put(msgspec.structs.replace(self._config, machines=machines))
            enrolled = self._enrolments.forget(key) if self._enrolments is not None else False
            return self._machines.forget(key) or configured or enrolled

    async def _put(self, config: PxeSettings) -> PxeSettings:
        config = validate(config)
        listen, url = await self._resolve(config)
        try:
            await self._listen(listen)
        except ListenerError as exc:
            raise PxeError(f"the boot-file listener: {exc.strerror}") from exc
        self._save(config)
        self._config = config
        self._http_url = url
        await self.apply()
        return config

    async def apply(self) -> None:
        """Start, restart or stop dnsmasq to match the config."""
        argv = self.argv() if self._run_dnsmasq else None
        current = self._supervisor
        if current is not None and argv == current.argv:
            return
        if current is not None:
            await current.stop()
            self._supervisor = None
        if argv is not None:
            self._state_dir.mkdir(parents=True, exist_ok=True)
            self._supervisor = Supervisor(argv, on_line=self._on_line)
            self._supervisor.start()
            log.info(
                "PXE: dnsmasq on %s (%s mode), machines are sent to %s",
                self._config.interface,
                self._config.mode,
                self._http_url,
            )

    async def start(self) -> None:
        """Open the listener and start dnsmasq if enabled; failures are logged, not raised (the node must start)."""
        try:
            listen, self._http_url = await self._resolve(self._config)
            await self._listen(listen)
            await self.apply()
        except (PxeError, ListenerError) as exc:
            log.error("PXE is enabled but cannot be served: %s", exc)
        except Exception:
            log.exception("starting the PXE boot server failed")

    async def close(self) -> None:
        """Stop dnsmasq and close the listener."""
        if self._supervisor is not None:
            await self._supervisor.stop()
            self._supervisor = None
        if self._listener is not None:
            await self._listener.stop()


def _mac(text: str) -> str:
    try:
        return normalize_mac(text)
    except ValueError as exc:
        raise PxeError(str(exc)) from exc
