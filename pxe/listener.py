"""The plain-HTTP listener for the boot files: open while PXE is enabled, closed otherwise.

Booting machines fetch their script, kernel, initramfs and squashfs over plain HTTP (iPXE and
live-boot cannot verify the node's CA), so a node must not keep such a port open on the off
chance: `PxeService` opens it when PXE is enabled (PUT /api/v1/nodes/NAME/pxe, or at start-up
with a stored enabled config) and closes it when PXE is disabled or the node stops.

Where it listens (`listen_address`, pure): an explicit HOST:PORT (`debvisor serve --pxe-http`
or `debvisor.pxe-http=` on the kernel command line) wins; otherwise port 8080 on the PXE
interface's first IPv4 address, the address the machines on that segment can reach. The URL
handed to machines defaults to the same address (`default_http_url`).

`GranianListener` runs a second granian server embedded in the node's asyncio loop (the same
way `appliance.server` runs the API): granian's embedded `Server.serve()` is a coroutine that
`stop()` ends, after which the socket is closed, so one can be started and stopped at run time.
Deliberately left out: HTTPS (see above), more than one listener, and IPv6 defaults (iPXE's
IPv4 DHCP path is what hands machines the URL).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any, Protocol

from litestar.types import ASGIApp

from pxe.addresses import HostPort, parse_ip
from pxe.listen import ListenerError, accepts, check_can_bind

log = logging.getLogger(__name__)

DEFAULT_PORT = 8080  # the plain-HTTP listener for PXE boot files, while PXE is enabled
STOP_SECONDS = 5.0
START_SECONDS = 5.0


def listen_address(override: HostPort | None, interface_ipv4: str | None) -> HostPort | None:
    """The explicit address if there is one, else DEFAULT_PORT on the PXE interface's IPv4 (None: no address)."""
    if override is not None:
        return override
    if interface_ipv4 is None:
        return None
    return HostPort(parse_ip(interface_ipv4), DEFAULT_PORT)


def default_http_url(listen: HostPort, interface_ipv4: str | None) -> str | None:
    """The URL machines use to reach `listen`: its own host, or the interface's address for a wildcard."""
    if not listen.is_wildcard:
        return f"http://{listen}"
    if interface_ipv4 is None:
        return None
    return f"http://{HostPort(parse_ip(interface_ipv4), listen.port)}"


class HttpListener(Protocol):
    """Serves the boot-file app on one address at a time."""

    @property
    def address(self) -> HostPort | None:
        """Where it listens now (None: closed)."""
        ...

    async def start(self, listen: HostPort) -> None:
        """Open on `listen` (ListenerError if it cannot); the caller stops any previous one first."""
        ...

    async def stop(self) -> None:
        """Close (a no-op when closed)."""
        ...


AppThunk = Callable[[], ASGIApp]
ListenerFactory = Callable[[AppThunk], HttpListener]  # given the boot-file app, loaded when it starts
ServerFactory = Callable[[HostPort], Any]  # returns a granian embedded Server (untyped)


class GranianListener:
    """An `HttpListener` that runs a granian embedded server as a task of the running loop."""

    def __init__(self, make_server: ServerFactory) -> None:
        self._make_server = make_server
        self._server: Any = None
        self._task: asyncio.Task[None] | None = None
        self._address: HostPort | None = None

    @property
    def address(self) -> HostPort | None:
        return self._address

    async def start(self, listen: HostPort) -> None:
        if self._task is not None:
            raise RuntimeError("the PXE HTTP listener is already running")
        check_can_bind(listen)
        server = self._make_server(listen)
        task = asyncio.create_task(server.serve(), name=f"pxe http {listen}")
        # PUT returns once machines can connect: wait until the socket accepts (or the task failed).
        deadline = asyncio.get_running_loop().time() + START_SECONDS
        while not await accepts(listen):
            if task.done() or asyncio.get_running_loop().time() > deadline:
                failure = task.exception() if task.done() else "it did not accept connections in time"
                server.stop()
                if not task.done():
                    task.cancel()
                with contextlib.suppress(BaseException):
                    await task
                raise ListenerError(0, f"cannot listen on {listen}: {failure}")
            await asyncio.sleep(0.02)
        self._server, self._task, self._address = server, task, listen
        log.info("PXE: serving boot files on http://%s", listen)

    async def stop(self) -> None:
        task, server, address = self._task, self._server, self._address
        self._server, self._task, self._address = None, None, None
        if task is None:
            return
        server.stop()
        try:
            await asyncio.wait_for(asyncio.shield(task), STOP_SECONDS)
        except TimeoutError:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        except Exception:
            log.exception("the PXE HTTP listener on %s failed", address)
        log.info("PXE: closed the boot-file listener on %s", address)


def granian_server_factory(app: AppThunk, **options: Any) -> ServerFactory:
    """Build granian embedded servers for the boot-file app (loaded when each starts: granian's factory mode)."""
    from granian.constants import Interfaces  # noqa: PLC0415 - the server's dependency, not the logic's
    from granian.server.embed import Server  # noqa: PLC0415

    def make(listen: HostPort) -> Any:
        return Server(
            app, address=str(listen.host), port=listen.port, interface=Interfaces.ASGI, factory=True, **options
        )

    return make
