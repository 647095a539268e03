"""This node's host networking as a service: netconfig's commit-confirmed core behind the API.

The node keeps its netconfig state in DATA/netconfig, the same directory `debvisor net` uses
on the console, so the two see one applied configuration and one pending change (the
directory's flock serialises them, and a change pending from one is refused by the other).
Beside netconfig's own files this service keeps `desired.json`: what `PUT .../network` stored
and `apply` applies when called without a configuration. A stored configuration is only a
draft; nothing reaches the kernel before `apply` (and a confirm makes it stick).

At start (`start()`): a pending change left by a previous run is resumed or, past its deadline,
rolled back (`ConfirmManager.start`); otherwise the last confirmed configuration is applied
again (a reboot or a hand edit lost it). With neither, the kernel is not touched at all, which
is what keeps test nodes and fresh installs off the host's links. Failures are logged and
reported in status and /readyz, never raised: a node whose network config fails still serves.

While running, `watch()` adopts changes left pending by `debvisor net apply` so their deadline
is kept even if that command dies. Links that belong to overlay networks (`reserved`) may not
appear in a node's configuration: the overlay reconciler owns them.

Left out: history of configurations (the audit log records every change) and confirming from
another node's console (confirm through the API, which forwards).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import msgspec

from appliance.api.problems import ApiError, FieldError
from appliance.network.linkstate import KernelLinkReader, LinkReader
from appliance.network.types import NetworkApplied, NetworkOutcome, NetworkPlan, NetworkStatus, OverlayState
from netconfig.actions import Action
from netconfig.adapter import Adapter
from netconfig.apply import ApplyError
from netconfig.confirm import Check, ConfirmError, ConfirmManager, NetConfig, PingCheck, RolledBack
from netconfig.model import AnyLink, NetworkConfig, canonical_config
from netconfig.plan import PlanError
from netconfig.state import StateDir, StateError
from netconfig.validate import ConfigError, check_address, path_of, validate

log = logging.getLogger(__name__)

STATE_SUBDIR = "netconfig"  # as netconfig.cli, so the console and the service share the state
DESIRED = "desired.json"
WATCH_SECONDS = 2.0


@dataclass(frozen=True)
class NetworkSettings:
    """How the node reaches its kernel's networking.

    `netns` makes the service (and its reachability check) act inside a named network namespace
    instead of its own: for labs and tests that run a node beside the host's real links
    (`debvisor serve --netns NAME`). Tests also pass in-memory stand-ins for the adapters.
    """

    netns: str | None = None
    adapter: Callable[[], Adapter] | None = None  # default: netconfig's KernelAdapter(netns)
    reader: Callable[[], LinkReader] | None = None  # default: KernelLinkReader(netns)
    check: Check | None = None  # default: ping (inside netns)
    overlay_resync_seconds: float = 30.0

    def make_adapter(self) -> Adapter:
        if self.adapter is not None:
            return self.adapter()
        from netconfig.kernel import KernelAdapter  # noqa: PLC0415 - pyroute2 only where netlink is used

        return KernelAdapter(self.netns)

    def make_reader(self) -> LinkReader:
        return self.reader() if self.reader is not None else KernelLinkReader(self.netns)


class NetworkService:
    """This node's host networking: the stored draft, commit-confirmed apply, status."""

    def __init__(
        self,
        *,
        name: str,
        data_dir: Path,
        settings: NetworkSettings,
        reserved: Callable[[], dict[str, str]],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.name = name
        self.path = data_dir / STATE_SUBDIR
        self.state = StateDir(self.path)
        check = settings.check if settings.check is not None else PingCheck(netns=settings.netns)
        self.core = NetConfig(settings.make_adapter(), self.state, clock=clock, check=check)
        self.manager = ConfirmManager(self.core)
        self.reader = settings.make_reader()
        self._reserved = reserved  # link name -> overlay network owning it
        self.startup = "not started"

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> tuple[bool, str]:
        """Resume or roll back a pending change, else re-apply the confirmed configuration.

        Never raises: (succeeded, what happened) for the log and /readyz.
        """
        try:
            await self.manager.start()
            status = await self.manager.status()
            if status.pending is not None:
                self.startup = f"a change is waiting for confirmation ({status.remaining or 0:.0f} s left)"
            elif status.applied is not None:
                actions = await self.manager.apply_now(status.applied)
                self.startup = f"re-applied the confirmed configuration ({len(actions)} changes)"
            else:
                self.startup = "no configuration applied yet; host networking left as it is"
        except Exception as exc:
            log.exception("applying the network configuration at start failed")
            self.startup = f"start-up apply failed: {exc}"
            return False, self.startup
        log.info("host networking", extra={"detail": self.startup})
        return True, self.startup

    async def watch(self, interval: float = WATCH_SECONDS) -> None:
        """Adopt changes `debvisor net apply` left pending, so their rollback happens on time."""
        while True:
            await asyncio.sleep(interval)
            try:
                if await self.manager.adopt():
                    log.info("took over the confirm window of a change made on the console")
            except Exception:
                log.exception("checking for a change pending from the console failed")

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.manager.run(self.reader.close)
        await self.manager.close()

    # -- the stored configuration -------------------------------------------------------------

    def desired(self) -> NetworkConfig:
        """The stored draft, else the configuration in force, else an empty one."""
        stored = self._read_desired()
        if stored is not None:
            return stored
        return self.core.desired() or NetworkConfig()

    def configured_names(self) -> set[str]:
        """Links any of this node's configurations (draft, applied, pending) manages."""
        names: set[str] = set()
        for config in (self._read_desired(), self.state.applied()):
            if config is not None:
                names |= config.names()
        pending = self.state.pending()
        if pending is not None:
            names |= pending.desired.names() | pending.snapshot.names()
        return names

    async def put_desired(self, config: NetworkConfig) -> NetworkConfig:
        checked = self._checked(config)
        await asyncio.to_thread(self._write_desired, checked)
        return checked

    # -- commit-confirmed changes -------------------------------------------------------------

    async def plan(self, config: NetworkConfig | None) -> NetworkPlan:
        desired = self._checked(config) if config is not None else self.desired()
        with _errors():
            actions = await self.manager.plan(desired)
        return NetworkPlan(node=self.name, actions=_render(actions))

    async def apply(self, config: NetworkConfig | None, confirm_within: float, check: str | None) -> NetworkApplied:
        if check is not None:  # before anything is stored or run: `check` becomes an argument of ping
            try:
                check = check_address(check)
            except ConfigError as exc:
                errors = [_field(e) for e in exc.errors]
                raise ApiError(422, "check must be an IPv4 or IPv6 address", errors=errors) from exc
        if config is not None:
            desired = self._checked(config)
            await asyncio.to_thread(self._write_desired, desired)
        else:
            stored = self._read_desired() or self.core.desired()
            if stored is None:
                raise ApiError(409, "no configuration is stored for this node: PUT one first, or send `config`")
            desired = self._checked(stored)
        with _errors():
            pending, actions = await self.manager.apply(desired, confirm_within, check)
        return NetworkApplied(
            node=self.name,
            actions=_render(actions),
            id=pending.id,
            deadline=pending.deadline,
            confirm_within=confirm_within,
        )

    async def confirm(self) -> NetworkOutcome:
        with _errors():
            await self.manager.confirm()
        return NetworkOutcome(node=self.name, result="confirmed")

    async def rollback(self) -> NetworkOutcome:
        with _errors():
            actions = await self.manager.rollback()
        return NetworkOutcome(node=self.name, result="rolled-back", actions=_render(actions))

    async def status(self, overlays: list[OverlayState]) -> NetworkStatus:
        """The node's networking now, with the `overlays`' states as their reconciler reports them."""
        with _errors():
            current = await self.manager.status()
            links, routes = await self.manager.run(self.reader.read)
        return NetworkStatus(
            node=self.name,
            desired=self._read_desired() or current.pending or current.applied,
            applied=current.applied,
            pending=current.pending,
            deadline=current.deadline,
            remaining=current.remaining,
            last_outcome=current.last_outcome,
            startup=self.startup,
            links=links,
            routes=routes,
            overlays=overlays,
        )

    # -- helpers ------------------------------------------------------------------------------

    def _checked(self, config: NetworkConfig) -> NetworkConfig:
        """`config` validated and canonical; 422 listing every problem as netconfig words it."""
        errors: list[str] = []
        try:
            validate(config)
        except ConfigError as exc:
            errors += exc.errors
        reserved = self._reserved()
        sections: list[tuple[AnyLink, ...]] = [config.nics, config.bonds, config.vlans, config.bridges, config.vxlans]
        for section in sections:
            for index, link in enumerate(section):
                if link.name in reserved:
                    errors.append(
                        f"{path_of(link, index)}.name: {link.name!r} belongs to overlay network "
                        f"{reserved[link.name]!r} (managed by the cluster, not per node)"
                    )
        if errors:
            raise ApiError(422, "the network configuration is invalid", errors=[_field(line) for line in errors])
        return canonical_config(config)

    def _read_desired(self) -> NetworkConfig | None:
        try:
            data = (self.path / DESIRED).read_bytes()
        except FileNotFoundError:
            return None
        try:
            return msgspec.json.decode(data, type=NetworkConfig)
        except msgspec.DecodeError:
            log.warning("ignoring a damaged %s", self.path / DESIRED)
            return None

    def _write_desired(self, config: NetworkConfig) -> None:
        self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
        temporary = self.path / f".{DESIRED}.tmp"
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, msgspec.json.encode(config))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, self.path / DESIRED)


def _field(line: str) -> FieldError:
    path, sep, message = line.partition(": ")
    return FieldError(path=path, message=message) if sep else FieldError(path="$", message=line)


def _render(actions: list[Action]) -> list[str]:
    return [str(action) for action in actions]


@contextlib.contextmanager
def _errors() -> Iterator[None]:
    """netconfig's exceptions as API problems."""
    try:
        yield
    except RolledBack as exc:
        raise ApiError(409, f"the change failed and was rolled back: {exc}") from exc
    except ConfirmError as exc:
        raise ApiError(409, str(exc)) from exc
    except PlanError as exc:
        raise ApiError(422, "the configuration cannot be applied on this node", errors=[_field(f"$: {exc}")]) from exc
    except ConfigError as exc:
        raise ApiError(422, "the network configuration is invalid", errors=[_field(e) for e in exc.errors]) from exc
    except (ApplyError, StateError) as exc:
        raise ApiError(500, str(exc)) from exc
