"""The one shape every part of a node has, and the runner that starts and stops them in order.

A *subsystem* (events, node, auth, audit, cluster, network, pxe, and each later one) is built
by one function of its domain, `build(core, ...) -> Subsystem`, from the shared `Core`: the
opened database, the replicated configuration store, the node-state store, the audit log, the
forwarder, the event bus, a narrow membership view, the clock, the data dir, the metrics
registry, the readiness table and the node's settings. It returns what the app needs from it:
its routes, its start (which may raise), its background tasks, its stop, its readiness
checks, its metrics collectors and the event types it publishes on the core's event bus (a
builder hooks their sources to the bus, and subscribes what reacts to other events there).
`create_app()` lists the subsystems; `run` starts them in that order and stops them in
reverse with an `AsyncExitStack`, so a start that fails unwinds exactly what had started
(tasks cancelled, stops awaited) before the error goes on to the server, which exits with it.

Deliberately left out: dependency resolution between subsystems (the list order is the
order), and registration by import (a subsystem exists because `create_app` lists it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import msgspec
from litestar.types import ControllerRouterHandler
from prometheus_client import CollectorRegistry
from prometheus_client.registry import Collector

from appliance.api.forward import Forwarder
from appliance.audit.log import AuditLog
from appliance.health.readiness import Readiness
from appliance.store.config import ConfigStore
from appliance.store.database import Database

if TYPE_CHECKING:
    from appliance.bootstrap import OpenedNode
    from appliance.cluster.nodestate import NodeStateStore
    from appliance.cluster.service import NodeMember
    from appliance.events.bus import EventBus
    from appliance.identity.store import NodeIdentity
    from appliance.settings import AuthSettings

log = logging.getLogger(__name__)

HOUSEKEEPING_SECONDS = 60.0  # how often subsystems prune what expired (`every`)
TaskFactory = Callable[[], Coroutine[Any, Any, None]]


@dataclass(frozen=True)
class Task:
    """A background coroutine a subsystem runs while the node runs; cancelled at its stop."""

    name: str
    run: TaskFactory


@dataclass(frozen=True)
class ReadinessCheck:
    """A line of `/readyz` a subsystem owns. A critical check keeps the node unready until its
    subsystem sets it ready; a degraded one is reported but never holds readiness back."""

    name: str
    critical: bool = True


@dataclass(frozen=True, kw_only=True)
class Subsystem:
    """What one domain contributes to a node (see the module docstring)."""

    name: str
    routes: Sequence[ControllerRouterHandler] = ()
    start: Callable[[], Awaitable[None]] | None = None  # may raise: the node then does not start
    tasks: Sequence[Task] = ()  # started after `start` returned
    stop: Callable[[], Awaitable[None]] | None = None  # after its tasks are cancelled
    readiness: Sequence[ReadinessCheck] = ()
    collectors: Sequence[Collector] = ()
    events: Sequence[type[msgspec.Struct]] = ()  # the event types it publishes (the event bus)


class Membership(Protocol):
    """The narrow view of the cluster most subsystems need: who is there, and how to reach them.
    Its changes reach subsystems as `MembershipChanged` events on the bus (`Core.events`)."""

    def members(self) -> list[NodeMember]: ...

    def live_names(self) -> list[str]: ...

    def member_api(self, name: str) -> tuple[str, str] | None: ...

    def name_in_use(self, name: str) -> bool: ...

    def cert_refusal(self, fingerprint: str, name: str | None, key: str | None = None) -> str | None: ...

    def publish(self, values: dict[str, bytes]) -> None: ...

    def published(self) -> dict[str, dict[str, bytes]]: ...


@dataclass(frozen=True, kw_only=True)
class Core:
    """The shared pieces every subsystem builder receives."""

    node: OpenedNode
    db: Database
    identity: NodeIdentity
    config: ConfigStore  # the replicated cluster configuration (users, tokens, networks ...)
    node_state: NodeStateStore  # every member's replicated key space
    audit: AuditLog
    forwarder: Forwarder
    membership: Membership
    readiness: Readiness
    registry: CollectorRegistry
    data_dir: Path
    auth: AuthSettings
    api_advertise: str
    clock: Callable[[], float] = time.time
    monotonic: Callable[[], float] = time.monotonic
    # The node's typed event bus (appliance/events/bus.py): a builder hooks the sources of the
    # event types its subsystem publishes (listed in `Subsystem.events`) and subscribes its
    # reconcilers to what they depend on. The events subsystem starts and stops it.
    events: EventBus

    @property
    def name(self) -> str:
        return self.node.name


def every(name: str, seconds: float, *chores: Callable[[], object]) -> Task:
    """A task running each chore every `seconds` (first after one period); a failing chore is
    logged and the others still run."""

    async def loop() -> None:
        while True:
            await asyncio.sleep(seconds)
            for chore in chores:
                try:
                    chore()
                except Exception:
                    log.exception("%s: step %s failed", name, getattr(chore, "__qualname__", chore))

    return Task(name, loop)


def register(subsystems: Sequence[Subsystem], readiness: Readiness, registry: CollectorRegistry) -> None:
    """At assembly: each subsystem's readiness checks (not ready yet) and metrics collectors."""
    names = [s.name for s in subsystems]
    duplicates = {n for n in names if names.count(n) > 1}
    if duplicates:
        raise ValueError(f"subsystems listed twice: {', '.join(sorted(duplicates))}")
    for subsystem in subsystems:
        for check in subsystem.readiness:
            readiness.register(check.name, critical=check.critical)
        for collector in subsystem.collectors:
            registry.register(collector)


async def _cancel(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _stop(subsystem: Subsystem) -> None:
    """Its stop; a failure is logged so that the other subsystems still stop."""
    if subsystem.stop is None:
        return
    try:
        await subsystem.stop()
    except Exception:
        log.exception("subsystem %s failed to stop cleanly", subsystem.name)


async def _enter(stack: AsyncExitStack, subsystem: Subsystem) -> None:
    """Start one subsystem and push its unwinding (tasks cancelled, then its stop) on `stack`.
    A start that raises is followed by its own stop (it may have done half its work)."""
    if subsystem.start is not None:
        try:
            await subsystem.start()
        except BaseException:
            await _stop(subsystem)
            raise
    stack.push_async_callback(_stop, subsystem)
    tasks = [asyncio.create_task(t.run(), name=t.name) for t in subsystem.tasks]
    stack.push_async_callback(_cancel, tasks)


class Startup:
    """How the start went: `error` is the one line that says why it failed (None: it did not)."""

    def __init__(self) -> None:
        self.error: str | None = None


@asynccontextmanager
async def run(subsystems: Sequence[Subsystem], readiness: Readiness, startup: Startup) -> AsyncIterator[None]:
    """Start `subsystems` in order, yield while the node serves, stop them in reverse.

    A subsystem whose start raises is stopped itself (it may have done half its work) and so
    is every one before it, in reverse; `startup.error` then says why, and the error propagates.
    """
    async with AsyncExitStack() as stack:
        for subsystem in subsystems:
            try:
                await _enter(stack, subsystem)
            except Exception as exc:
                reason = " ".join(str(exc).split()) or type(exc).__name__
                startup.error = f"{subsystem.name} did not start: {reason}"
                log.error("%s; stopping what had started", startup.error)
                raise
        readiness.set("api", True, "serving")
        try:
            yield
        finally:
            readiness.set("api", False, "stopping")
