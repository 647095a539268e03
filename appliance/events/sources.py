"""Where events come from: the stores', the failure detector's and the audit log's hooks.

Each function turns one existing hook into bus events, so the stores and services need no
knowledge of the bus. The hooks themselves run synchronously inside the store's write, so
these only build a small Struct and `publish` it (which never blocks and never raises):
whatever a subscriber does, it does later on its own task. Each subsystem builder hooks the
ones for the event types it publishes (`Subsystem.events`): the events subsystem the
configuration store's (the store is the core's), the cluster subsystem the membership's and
the node-state store's, the audit subsystem the audit log's, the network and PXE subsystems
theirs (read off audit entries, below).

Network changes and PXE enlistments are read off the audit entries those actions already
write: one place records what happened, and the network and PXE events carry only the
outcome, never who asked (that is in the audit event, for roles that may read the log).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from appliance.audit.chain import AuditEntry
from appliance.cluster.messages import StateEntry
from appliance.cluster.swim import Event as SwimEvent
from appliance.events.bus import EventBus
from appliance.events.types import (
    AuditAppended,
    ConfigChanged,
    Event,
    FactsChanged,
    MembershipChanged,
    NetworkChanged,
    PxeEnlisted,
)

_NETWORK_ACTIONS: dict[str, Literal["apply", "confirm", "rollback"]] = {
    "network.apply": "apply",
    "network.confirm": "confirm",
    "network.rollback": "rollback",
}


def config_listener(bus: EventBus, deleted: Callable[[str, str], bool]) -> Callable[[str, str, bool], None]:
    """For `ConfigStore.on_change`: kind and key of each change (`deleted` looks up a tombstone)."""

    def changed(kind: str, key: str, local: bool) -> None:
        bus.publish(ConfigChanged(kind=kind, key=key, deleted=deleted(kind, key), local=local))

    return changed


def node_state_listener(bus: EventBus) -> Callable[[list[StateEntry]], None]:
    """For `NodeStateStore.on_change`: which keys of which member's key space changed."""

    def changed(entries: list[StateEntry]) -> None:
        by_owner: dict[str, list[str]] = {}
        for entry in entries:
            by_owner.setdefault(entry.owner, []).append(entry.key)
        for owner, keys in by_owner.items():
            bus.publish(FactsChanged(owner=owner, keys=sorted(set(keys))))

    return changed


def membership_listener(bus: EventBus) -> Callable[[SwimEvent], None]:
    """For `ClusterService.on_event`: each membership change this node's detector saw."""

    def changed(event: SwimEvent) -> None:
        bus.publish(MembershipChanged(member=event.name, state=event.kind.value, incarnation=event.incarnation))

    return changed


def audit_appended(entry: AuditEntry) -> AuditAppended:
    """The audit event of one entry (the audit subsystem publishes it for every entry)."""
    return AuditAppended(
        seq=entry.seq,
        user=entry.user,
        source=entry.source,
        action=entry.action,
        target=entry.target,
        outcome=entry.outcome,
        detail=entry.detail,
        credential=entry.credential,
        forwarded_by=entry.forwarded_by,
    )


def network_changed(entry: AuditEntry) -> NetworkChanged | None:
    """The network event of an apply, confirm or rollback entry (the network subsystem's)."""
    action = _NETWORK_ACTIONS.get(entry.action)
    if action is None:
        return None
    return NetworkChanged(action=action, outcome=entry.outcome, target=entry.target)


def pxe_enlisted(entry: AuditEntry) -> PxeEnlisted | None:
    """The enlistment event of a `pxe.enlist` entry (the PXE subsystem's)."""
    if entry.action != "pxe.enlist":
        return None
    return PxeEnlisted(mac=entry.user.removeprefix("machine:"), source=entry.source, summary=entry.detail)


def audit_listener(bus: EventBus, read: Callable[[AuditEntry], Event | None]) -> Callable[[AuditEntry], None]:
    """For `AuditLog.on_append`: publish the event `read` makes of an entry, if it makes one."""

    def appended(entry: AuditEntry) -> None:
        event = read(entry)
        if event is not None:
            bus.publish(event)

    return appended
