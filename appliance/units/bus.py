"""The node's connection to the system bus, where systemd (and logind) answer.

One connection per node, opened on first use and opened again after it breaks, so a D-Bus
daemon restarted under a running node costs one failed call, not a node restart. Every call
has a deadline. A node whose machine has no reachable system bus (a container whose PID 1 is
not systemd, a development machine) still runs: calls raise `BusUnavailable` with the reason,
which the API turns into 503 and /readyz into a degraded line.

The address is the system bus by default; tests point it at the bus of a systemd container.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any

from dbus_fast import BusType, Message, MessageType
from dbus_fast.aio import MessageBus

log = logging.getLogger(__name__)

SYSTEM_BUS = "unix:path=/run/dbus/system_bus_socket"
CONNECT_SECONDS = 5.0
CALL_SECONDS = 25.0  # D-Bus's own default reply timeout

SYSTEMD = "org.freedesktop.systemd1"
SYSTEMD_PATH = "/org/freedesktop/systemd1"
MANAGER = "org.freedesktop.systemd1.Manager"
PROPERTIES = "org.freedesktop.DBus.Properties"


class BusUnavailable(RuntimeError):
    """The system bus cannot be reached; the message says why, in one line."""


class BusError(RuntimeError):
    """A D-Bus error reply: `name` is the error's name (org.freedesktop.systemd1.NoSuchUnit...)."""

    def __init__(self, name: str, text: str) -> None:
        super().__init__(text or name)
        self.name = name
        self.text = text


class SystemBus:
    """The node's system-bus connection: lazily opened, reopened after it breaks."""

    def __init__(self, address: str | None = None) -> None:
        self.address = address or SYSTEM_BUS
        self._bus: MessageBus | None = None
        self._lock = asyncio.Lock()
        self._on_connect: list[Callable[[MessageBus], Any]] = []

    @property
    def connected(self) -> bool:
        """Whether the connection is open now (it is opened on the next call otherwise)."""
        return self._bus is not None and self._bus.connected

    def on_connect(self, hook: Callable[[MessageBus], Any]) -> None:
        """Run `hook(bus)` (sync or async) on every new connection: signal subscriptions."""
        self._on_connect.append(hook)

    async def connection(self) -> MessageBus:
        """The open connection; raises BusUnavailable when the bus cannot be reached."""
        bus = self._bus
        if bus is not None and bus.connected:
            return bus
        async with self._lock:
            if self._bus is not None and self._bus.connected:
                return self._bus
            try:
                bus = await asyncio.wait_for(
                    MessageBus(bus_address=self.address, bus_type=BusType.SYSTEM).connect(), CONNECT_SECONDS
                )
            except (OSError, TimeoutError, EOFError, ValueError) as exc:
                raise BusUnavailable(f"no system bus at {self.address}: {exc or type(exc).__name__}") from exc
            except Exception as exc:  # dbus-fast raises its own errors for a refused authentication
                raise BusUnavailable(f"cannot connect to the system bus at {self.address}: {exc}") from exc
            self._bus = bus
            log.info("connected to the system bus", extra={"address": self.address})
            try:
                for hook in self._on_connect:
                    result = hook(bus)
                    if asyncio.iscoroutine(result):
                        await result
            except Exception as exc:
                # A connection without its subscriptions would wait for signals that never come.
                self._bus = None
                bus.disconnect()
                if isinstance(exc, BusUnavailable):
                    raise
                raise BusUnavailable(f"setting up the system bus connection failed: {exc}") from exc
            return bus

    async def call(
        self,
        *,
        path: str,
        interface: str,
        member: str,
        signature: str = "",
        body: Sequence[Any] = (),
        destination: str = SYSTEMD,
        deadline: float = CALL_SECONDS,
    ) -> list[Any]:
        """One method call; its reply's body. Raises BusError on an error reply."""
        bus = await self.connection()
        message = Message(
            destination=destination, path=path, interface=interface, member=member, signature=signature, body=list(body)
        )
        try:
            reply = await asyncio.wait_for(bus.call(message), deadline)
        except TimeoutError as exc:
            raise BusUnavailable(f"{destination} did not answer {member} within {deadline:g} s") from exc
        except (OSError, EOFError) as exc:
            self._bus = None
            raise BusUnavailable(f"the system bus connection broke: {exc or type(exc).__name__}") from exc
        if reply is None:
            raise BusUnavailable(f"the system bus closed before {member} was answered")
        if reply.message_type == MessageType.ERROR:
            text = reply.body[0] if reply.body and isinstance(reply.body[0], str) else ""
            raise BusError(reply.error_name or "org.freedesktop.DBus.Error.Failed", text)
        return list(reply.body)

    async def get_all(self, path: str, interface: str, *, destination: str = SYSTEMD) -> dict[str, Any]:
        """Every property of `interface` at `path`, as plain values (Variants unwrapped)."""
        (props,) = await self.call(
            path=path, interface=PROPERTIES, member="GetAll", signature="s", body=[interface], destination=destination
        )
        return {name: variant.value for name, variant in props.items()}

    async def close(self) -> None:
        bus, self._bus = self._bus, None
        if bus is not None:
            bus.disconnect()
            try:
                await asyncio.wait_for(bus.wait_for_disconnect(), 2.0)  # type: ignore[no-untyped-call]
            except (TimeoutError, Exception):  # a broken connection is closed either way
                log.debug("system bus did not close cleanly", exc_info=True)
