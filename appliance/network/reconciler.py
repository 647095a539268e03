"""The overlay reconciler: keep this node's overlay links equal to the cluster's definitions.

Driven by events and a timer, never by requests: `kick()` is called when an overlay definition
changes (locally or by replication) and on every membership event (join, suspect, dead, left,
...); `run()` also resyncs every `resync_seconds` to repair drift (a link deleted by hand). A
burst of events is coalesced into one pass.

Each pass: overlay definitions + membership -> `overlay_links` (pure) -> netconfig's
`observe_managed` + `plan` + `apply` through the adapter. The links it manages are remembered
in DATA/netconfig/overlays/applied.json (a netconfig `StateDir`), so a deleted network's bridge
and VXLAN device are removed, also after a restart; they are recorded *before* being created,
so a pass that fails half-way leaves nothing unaccounted for. Netlink calls run in one worker
thread of their own (pyroute2's synchronous socket cannot run on the event loop).

With no overlay defined and none created before, a pass touches nothing, not even netlink,
and once it has seen that, later passes skip the state file and the worker thread too.
Left out: a commit-confirmed window for overlays (a peer list is not something that cuts an
operator off) and per-network MAC learning.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from appliance.network.overlay_config import Endpoint, keep_host_addressing, overlay_links
from appliance.network.overlays import OverlayStore
from appliance.network.types import OverlayState
from netconfig.actions import Action
from netconfig.adapter import Adapter
from netconfig.apply import apply
from netconfig.model import NetworkConfig, from_links
from netconfig.observe import observe_managed
from netconfig.plan import plan
from netconfig.state import StateDir

log = logging.getLogger(__name__)

OVERLAY_SUBDIR = "overlays"  # below the node's netconfig state directory
DEBOUNCE_SECONDS = 0.05


class OverlayReconciler:
    """Creates, updates and removes this node's overlay links."""

    def __init__(
        self,
        *,
        overlays: OverlayStore,
        endpoints: Callable[[], tuple[Endpoint, list[Endpoint]]],
        reserved: Callable[[], set[str]],
        adapter: Adapter,
        state: StateDir,
        resync_seconds: float = 30.0,
    ) -> None:
        self._overlays = overlays
        self._endpoints = endpoints
        self._reserved = reserved
        self._adapter = adapter
        self.state = state
        self.resync_seconds = resync_seconds
        self.states: list[OverlayState] = []
        self.passes = 0
        self._wake = asyncio.Event()
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="overlays")
        # True once a pass found no overlay defined and none applied: until one is defined,
        # passes need neither the worker thread nor the state file.
        self._idle = False

    def kick(self) -> None:
        """Ask for a pass soon (cheap; call it from any event handler on the loop)."""
        self._wake.set()

    async def run(self) -> None:
        """Reconcile now, then after every kick and at least every `resync_seconds`."""
        while True:
            self._wake.clear()
            try:
                actions = await self.reconcile()
                if actions:
                    log.info("overlay networks reconciled", extra={"actions": "; ".join(str(a) for a in actions)})
            except Exception:
                log.exception("reconciling overlay networks failed")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.resync_seconds):
                    await self._wake.wait()
            await asyncio.sleep(DEBOUNCE_SECONDS)

    async def reconcile(self) -> list[Action]:
        """One pass; the actions it applied."""
        overlays = self._overlays.all()
        if not overlays and self._idle:
            # Nothing defined and nothing left to remove: the common case, and the one met by
            # every membership event while a cluster forms. No endpoints, no worker thread.
            self.states = []
            self.passes += 1
            return []
        me, peers = self._endpoints()
        wanted = overlay_links(overlays, me, peers, reserved=self._reserved())
        loop = asyncio.get_running_loop()
        try:
            actions = await loop.run_in_executor(self._worker, self._converge, wanted.config)
        except Exception as exc:
            self.states = [s if s.error else _failed(s, str(exc)) for s in wanted.states]
            raise
        self.states = wanted.states
        self.passes += 1
        return actions

    async def close(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._worker, self._adapter.close)
        self._worker.shutdown(wait=True)

    def _converge(self, config: NetworkConfig) -> list[Action]:
        """In the worker thread: make the kernel's overlay links equal to `config`."""
        with self.state.locked():
            previous = self.state.applied()
            self._idle = not config.links() and (previous is None or not previous.links())
            if self._idle:
                return []  # nothing to manage: do not even open netlink
            if previous is None or not config.names() <= previous.names():
                self.state.write_applied(_union(config, previous))
            observed = observe_managed(self._adapter, config, previous)
            actions = plan(keep_host_addressing(config, observed), observed)
            apply(actions, self._adapter)
            if config != previous:
                self.state.write_applied(config)
            return actions


def _union(config: NetworkConfig, previous: NetworkConfig | None) -> NetworkConfig:
    links = {link.name: link for link in (previous.links() if previous is not None else [])}
    links |= {link.name: link for link in config.links()}
    return from_links(list(links.values()))


def _failed(state: OverlayState, error: str) -> OverlayState:
    return OverlayState(
        name=state.name,
        vni=state.vni,
        bridge=state.bridge,
        vxlan=state.vxlan,
        local=state.local,
        peers=state.peers,
        error=error,
    )
