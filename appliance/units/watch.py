"""systemd's signals into the node: job ends for the waiting actions, unit changes for the bus.

On every (re)connection to the system bus, before any call can use it, the watcher asks the
bus daemon for systemd's signals (`AddMatch`), tells systemd to send them (`Subscribe`: it
emits nothing to nobody) and takes a snapshot of the loaded units' states. From then on:
`JobRemoved` wakes the action waiting for that job (appliance/units/jobs.py) and, like
`PropertiesChanged` on a unit object and `UnitNew`/`UnitRemoved`, feeds the coalescer
(appliance/units/changes.py), which a timer drains a few milliseconds after the first change
of a burst into `UnitChanged` events on the node's event bus. Nothing is polled.

`run` is the units subsystem's task: it keeps the connection up (reconnecting with backoff),
and says on the `units` readiness line whether systemd can be reached and why not.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from dbus_fast import Message, MessageType
from dbus_fast.aio import MessageBus

from appliance.events.types import Event
from appliance.units.bus import MANAGER, PROPERTIES, SYSTEMD, SYSTEMD_PATH, BusUnavailable, SystemBus
from appliance.units.changes import Coalescer
from appliance.units.jobs import JobTracker
from appliance.units.listing import unit_name_of_path

log = logging.getLogger(__name__)

COALESCE_SECONDS = 0.005
RETRY_SECONDS = (1.0, 2.0, 5.0, 10.0, 30.0)
UNIT_INTERFACE = "org.freedesktop.systemd1.Unit"
MATCHES = (
    f"type='signal',sender='{SYSTEMD}',path='{SYSTEMD_PATH}',interface='{MANAGER}'",
    f"type='signal',sender='{SYSTEMD}',interface='org.freedesktop.DBus.Properties',member='PropertiesChanged',"
    f"path_namespace='{SYSTEMD_PATH}/unit'",
)
SETUP_SECONDS = 5.0


class UnitWatch:
    """Subscribes on each connection and turns signals into job results and unit events."""

    def __init__(
        self,
        bus: SystemBus,
        jobs: JobTracker,
        publish: Callable[[Event], None],
        *,
        state: Callable[[bool, str], None],
        changed: Callable[[], None] = lambda: None,
        window: float = COALESCE_SECONDS,
    ) -> None:
        self.bus = bus
        self.jobs = jobs
        self.coalescer = Coalescer()
        self._publish = publish
        self._state = state
        self._changed = changed  # told of every signal (and reconnection): cached lists are stale
        self._window = window
        self._flush_at: asyncio.TimerHandle | None = None
        self.version = ""
        self.published = 0
        bus.on_connect(self._connected)

    async def _connected(self, connection: MessageBus) -> None:
        """Before the connection is used: signals wanted and subscribed, the units' states known."""
        self.jobs.forget_all()
        self._changed()
        connection.add_message_handler(self._on_message)
        for rule in MATCHES:
            await self._call(connection, "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus",
                             "AddMatch", signature="s", body=[rule])  # fmt: skip
        await self._call(connection, SYSTEMD, SYSTEMD_PATH, MANAGER, "Subscribe")
        (rows,) = await self._call(connection, SYSTEMD, SYSTEMD_PATH, MANAGER, "ListUnits")
        self.coalescer.snapshot((r[0], r[2], r[3], r[4]) for r in rows)
        (version,) = await self._call(
            connection, SYSTEMD, SYSTEMD_PATH, PROPERTIES, "Get", signature="ss", body=[MANAGER, "Version"]
        )
        self.version = str(version.value)

    @staticmethod
    async def _call(
        connection: MessageBus,
        destination: str,
        path: str,
        interface: str,
        member: str,
        *,
        signature: str = "",
        body: list[Any] | None = None,
    ) -> list[Any]:
        message = Message(
            destination=destination, path=path, interface=interface, member=member, signature=signature, body=body or []
        )
        try:
            reply = await asyncio.wait_for(connection.call(message), SETUP_SECONDS)
        except TimeoutError as exc:
            raise BusUnavailable(f"{destination} did not answer {member} within {SETUP_SECONDS:g} s") from exc
        if reply is None or reply.message_type == MessageType.ERROR:
            text = reply.body[0] if reply is not None and reply.body else "no reply"
            raise BusUnavailable(f"{member} on the system bus failed: {text}")
        return list(reply.body)

    def _on_message(self, message: Message) -> None:
        if message.message_type != MessageType.SIGNAL:
            return
        self._changed()
        try:
            self.handle_signal(message.path or "", message.interface or "", message.member or "", message.body)
        except Exception:  # a signal we misread must not break the connection's reader
            log.exception("could not handle the systemd signal %s %s", message.member, message.path)

    def handle_signal(self, path: str, interface: str, member: str, body: list[Any]) -> None:
        """One decoded signal (public for tests that feed signals without a bus)."""
        if interface == MANAGER:
            if member == "JobRemoved":
                _id, job, unit, result = body
                self.jobs.finished(str(job), str(result))
                self.coalescer.job_removed(str(unit), str(result))
            elif member == "UnitNew":
                self.coalescer.unit_new(str(body[0]))
            elif member == "UnitRemoved":
                self.coalescer.unit_removed(str(body[0]))
            else:
                return
            self._schedule()
            return
        if member == "PropertiesChanged" and body and body[0] == UNIT_INTERFACE:
            unit = unit_name_of_path(path)
            changed = {k: getattr(v, "value", v) for k, v in body[1].items()}
            if unit is not None and self.coalescer.properties(unit, changed):
                self._schedule()

    def _schedule(self) -> None:
        if self._flush_at is None:
            self._flush_at = asyncio.get_running_loop().call_later(self._window, self.flush)

    def flush(self) -> None:
        """Publish what the coalescer gathered."""
        self._flush_at = None
        for event in self.coalescer.drain():
            self.published += 1
            self._publish(event)

    async def run(self) -> None:
        """Keep the connection (and so the subscription) up; report it on the readiness line."""
        failures = 0
        while True:
            try:
                connection = await self.bus.connection()
            except BusUnavailable as exc:
                self._state(False, f"{exc}; unit routes answer 503")
                await asyncio.sleep(RETRY_SECONDS[min(failures, len(RETRY_SECONDS) - 1)])
                failures += 1
                continue
            failures = 0
            self._state(True, f"systemd {self.version} on {self.bus.address}")
            try:
                await asyncio.shield(connection.wait_for_disconnect())  # type: ignore[no-untyped-call]
            except Exception as exc:  # the connection broke with an error; reconnect either way
                log.warning("the system bus connection broke: %s", exc)
            self._state(False, "the system bus connection closed; reconnecting")
            await asyncio.sleep(RETRY_SECONDS[0])

    def close(self) -> None:
        if self._flush_at is not None:
            self._flush_at.cancel()
            self._flush_at = None
