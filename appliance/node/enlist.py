"""Report this machine's inventory to the PXE boot server it booted from, once, in the background.

The boot server's iPXE script puts `debvisor.enlist=http://SERVER/pxe/enlist` and
`BOOTIF=01-<mac>` on the kernel command line (`appliance.bootparams`); at start-up the node
collects its inventory (`appliance.node.inventory`) and posts it there, filed under the MAC it
booted from. It runs as a task beside the API and never holds up readiness: a boot server that
is away costs a few retries with back-off (transport errors, 429 and 5xx), a refusal (another
4xx: the server does not know this MAC, or the report is invalid) ends it at once. One log line
says how it ended. Deliberately left out: anything the boot server answers (the report is a
one-way notice; names and join tokens come from the kernel command line, not from here).
"""

from __future__ import annotations

import asyncio
import importlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import msgspec

from appliance.node.inventory import boot_nic
from pxe.inventory import EnlistPost, Inventory

if TYPE_CHECKING:
    import httpx  # imported off the event loop when a report is sent: see Enlister._run

log = logging.getLogger(__name__)

ATTEMPTS = 6
FIRST_DELAY = 2.0  # seconds before the second attempt, doubling
MAX_DELAY = 60.0
TIMEOUT = 10.0


@dataclass(frozen=True)
class EnlistTarget:
    """Where to report (`debvisor.enlist=`) and the MAC that booted (`BOOTIF=`, None: guess)."""

    url: str
    boot_mac: str | None = None


class EnlistRefused(Exception):
    """The boot server answered with a refusal that retrying will not change."""


class Enlister:
    """Posts the inventory to one boot server, with bounded retries."""

    def __init__(
        self,
        target: EnlistTarget,
        collect: Callable[[], Inventory],
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        attempts: int = ATTEMPTS,
        first_delay: float = FIRST_DELAY,
        max_delay: float = MAX_DELAY,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.target = target
        self._collect = collect
        self._transport = transport
        self._attempts = attempts
        self._first_delay = first_delay
        self._max_delay = max_delay
        self._sleep = sleep
        self.reported: bool | None = None  # None until `run` ends

    async def run(self) -> None:
        """Collect and post; `reported` then says whether the server took it. Never raises."""
        self.reported = await self._run()

    async def _run(self) -> bool:
        try:
            inventory = await asyncio.to_thread(self._collect)
        except Exception:
            log.exception("enlistment: collecting this machine's inventory failed")
            return False
        mac = boot_nic(inventory, self.target.boot_mac)
        if mac is None:
            log.warning("enlistment: no network interface to report under; not reporting to %s", self.target.url)
            return False
        report = EnlistPost(mac=mac, **msgspec.structs.asdict(inventory))
        body = msgspec.json.encode(report)
        delay = self._first_delay
        # httpx (with the CLI it pulls in) costs ~0.1 s to import here and ~1.5 s on an emulated
        # machine: import it in a thread, only on machines that report, never on the start-up path.
        httpx = await asyncio.to_thread(importlib.import_module, "httpx")
        async with httpx.AsyncClient(transport=self._transport, timeout=TIMEOUT, follow_redirects=False) as client:
            for attempt in range(1, self._attempts + 1):
                try:
                    await self._post(client, body)
                except EnlistRefused as exc:
                    log.warning("enlistment: %s refused the report for %s: %s", self.target.url, mac, exc)
                    return False
                except (httpx.HTTPError, _Retry) as exc:
                    if attempt == self._attempts:
                        log.warning(
                            "enlistment: gave up reporting to %s after %d attempts: %s", self.target.url, attempt, exc
                        )
                        return False
                    log.info(
                        "enlistment: attempt %d to %s failed (%s); retrying in %.0f s",
                        attempt,
                        self.target.url,
                        exc,
                        delay,
                    )
                    await self._sleep(delay)
                    delay = min(delay * 2, self._max_delay)
                else:
                    log.info("enlistment: reported this machine's inventory to %s as %s", self.target.url, mac)
                    return True
        return False

    async def _post(self, client: httpx.AsyncClient, body: bytes) -> None:
        response = await client.post(self.target.url, content=body, headers={"content-type": "application/json"})
        if response.is_success:
            return
        detail = _detail(response)
        if response.status_code == 429 or response.status_code >= 500:
            raise _Retry(f"{response.status_code} {detail}")
        raise EnlistRefused(f"{response.status_code} {detail}")


class _Retry(Exception):
    """A transient answer (busy, or a server error)."""


def _detail(response: httpx.Response) -> str:
    """The problem document's detail, else the start of the body, on one line."""
    try:
        detail = msgspec.json.decode(response.content).get("detail", "")
    except (msgspec.DecodeError, AttributeError):
        detail = response.text
    return " ".join(str(detail).split())[:200]
