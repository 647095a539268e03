"""Rebooting and powering off a node: `POST /api/v1/nodes/{name}/power` (admins only).

The caller names the action, a reason (kept in the audit log and the `power` event) and
types the node's name back in `confirm`, so a request meant for one node cannot reboot
another by a slip. The node then, in this order:

1. checks that systemd answers on the system bus and has the target (`reboot.target` or
   `poweroff.target`) loaded: without a bus the answer is 503 and nothing else happens, so a
   node never leaves its cluster for a power action it cannot make;
2. publishes a `power` event (peers receive it while the node is still a member);
3. leaves the gossip cluster gracefully, as it does when its service stops: peers mark it
   `left`, not `dead`, so no failure is reported and nothing reacts to a crash;
4. asks systemd's manager to start the target with mode `replace-irreversibly`, which is
   what `systemctl reboot` does when logind is not there: an orderly shutdown (every service
   stopped in order, debvisor.service included) that no later job can cancel.

systemd's Manager (`StartUnit`) is used rather than logind's `Reboot`/`PowerOff`: it works on
machines without systemd-logind (minimal images, containers), needs no polkit, and answers
with the job it queued. What logind adds is inhibitor locks, which guard interactive desktop
sessions; here the admin's typed-back confirmation is the guard. Manager's own `Reboot()` and
`PowerOff()` methods are not used: they skip stopping services.

The audit entry is written by the access gate (action `node.power`) on the node that
received the request and on the target, before the node goes down.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal

import msgspec
from litestar import Request, Response, Router, post
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, JSONBody

from appliance.api.forward import Forwarder
from appliance.api.openapi import problems
from appliance.api.pernode import node_router
from appliance.api.problems import ApiError, FieldError
from appliance.audit.context import note
from appliance.auth.permissions import Permission, requires
from appliance.auth.principal import Principal
from appliance.events.bus import EventBus
from appliance.events.types import PowerRequested
from appliance.subsystem import Core, Subsystem
from appliance.units.bus import MANAGER, PROPERTIES, SYSTEMD_PATH, BusError, BusUnavailable, SystemBus

TARGETS = {"reboot": "reboot.target", "poweroff": "poweroff.target"}
CHECK_SECONDS = 5.0  # the bus check before anything is done
START_SECONDS = 10.0  # queueing the shutdown job
UNIT = "org.freedesktop.systemd1.Unit"

log = logging.getLogger(__name__)


class PowerPost(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A power action on one node."""

    action: Literal["reboot", "poweroff"]
    reason: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    confirm: Annotated[str, msgspec.Meta(max_length=253)]  # the node's name, typed back


class PowerAccepted(msgspec.Struct, frozen=True, kw_only=True):
    """The node left its cluster and systemd queued the shutdown job."""

    node: str
    action: str
    target: str  # the systemd target started
    job: str  # systemd's job object path


class NodePower:
    """This node's power actions, through `bus` (systemd), leaving the cluster with `leave`."""

    def __init__(
        self, *, name: str, bus: SystemBus, leave: Callable[[], Awaitable[None]], events: EventBus | None = None
    ) -> None:
        self.name = name
        self._bus = bus
        self._leave = leave
        self._events = events
        self._lock = asyncio.Lock()
        self.done: str | None = None  # the action taken (a node takes one, then goes down)

    async def _check(self, target: str) -> None:
        """systemd answers and has `target`; 503 otherwise."""
        try:
            (path,) = await self._bus.call(
                path=SYSTEMD_PATH, interface=MANAGER, member="LoadUnit", signature="s", body=[target],
                deadline=CHECK_SECONDS,
            )  # fmt: skip
            (state,) = await self._bus.call(
                path=path, interface=PROPERTIES, member="Get", signature="ss", body=[UNIT, "LoadState"],
                deadline=CHECK_SECONDS,
            )  # fmt: skip
        except BusUnavailable as exc:
            raise ApiError(503, f"cannot reach systemd, so nothing was done: {exc}") from None
        except BusError as exc:
            raise ApiError(503, f"systemd cannot start {target}, so nothing was done: {exc}") from None
        if state.value != "loaded":
            raise ApiError(503, f"systemd has no {target} ({state.value}), so nothing was done")

    async def act(self, data: PowerPost, by: str) -> PowerAccepted:
        """Check, announce, leave, shut down (see the module docstring)."""
        if data.confirm != self.name:
            raise ApiError(
                422,
                f"confirm must be this node's name, {self.name!r}: nothing was done",
                errors=[FieldError(path="$.confirm", message=f"type the node's name, {self.name!r}")],
            )
        if self._lock.locked() or self.done is not None:
            raise ApiError(409, f"this node is already going down ({self.done or 'in progress'})")
        target = TARGETS[data.action]
        async with self._lock:
            await self._check(target)
            if self._events is not None:
                self._events.publish(PowerRequested(action=data.action, reason=data.reason, by=by))
            log.warning(
                "power action: leaving the cluster, then %s", data.action, extra={"by": by, "reason": data.reason}
            )
            await self._leave()
            try:
                (job,) = await self._bus.call(
                    path=SYSTEMD_PATH, interface=MANAGER, member="StartUnit", signature="ss",
                    body=[target, "replace-irreversibly"], deadline=START_SECONDS,
                )  # fmt: skip
            except (BusUnavailable, BusError) as exc:
                # Checked a moment ago; if systemd fails now the node has left and says so.
                log.error("the node left its cluster but systemd did not take the %s: %s", data.action, exc)
                raise ApiError(
                    503, f"left the cluster, but systemd did not queue {target}: {exc}; restart debvisor to rejoin"
                ) from None
            self.done = data.action
        return PowerAccepted(node=self.name, action=data.action, target=target, job=str(job))


def power_routes(power: NodePower, *, forwarder: Forwarder) -> Router:
    """`POST /api/v1/nodes/{name}/power`, answered by the node named."""

    @post(
        "/{name:str}/power",
        opt=requires(Permission.NODE_POWER, action="node.power") | problems(409, 503),
        status_code=202,
        summary="Reboot or power off a node (it leaves the cluster first); confirm with its name",
        responses={202: ResponseSpec(PowerAccepted)},
    )
    async def power_node(
        request: Request[Principal, Any, Any], name: FromPath[str], data: JSONBody[PowerPost]
    ) -> Response[Any]:
        asked = f"{data.action}: {data.reason}"
        note(request, target=f"node {name}", detail=asked)
        try:
            accepted = await power.act(data, request.user.name)
        except ApiError as exc:
            note(request, detail=f"{asked}; not done: {exc.detail}"[:500])
            raise
        return Response(accepted, status_code=202)

    return node_router("/api/v1/nodes", [power_node], forwarder=forwarder, tags=["node"])


def build(core: Core, *, bus: SystemBus, leave: Callable[[], Awaitable[None]]) -> Subsystem:
    """The power routes of this node; `leave` leaves the gossip cluster gracefully."""
    power = NodePower(name=core.name, bus=bus, leave=leave, events=core.events)
    return Subsystem(
        name="power",
        routes=[power_routes(power, forwarder=core.forwarder)],
        stop=bus.close,
        events=[PowerRequested],
    )
