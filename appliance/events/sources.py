"""Where events come from: the stores', the failure detector's and the audit log's hooks.

Each function turns one existing hook into bus events, so the stores and services need no
knowledge of the bus. The hooks themselves run synchronously inside the store's write, so
these only build a small Struct and `publish` it (which never blocks and never raises):
whatever a subscriber does, it does later on its own task.

Network changes and PXE enlistments are read off the audit entries those actions already
write: one place records what happened, and the network and PXE events carry only the
outcome, never who asked (that is in the audit event, for roles that may read the log).
"""

from __future__ import annotations

from collections.abc import Callable

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

_NETWORK_ACTIONS = {"network.apply": "apply", "network.confirm": "confirm", "network.rollback": "rollback"}


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


def audit_events(entry: AuditEntry) -> list[Event]:
    """The events one audit entry makes: always an audit event, and for a network change or a
    PXE enlistment also the event of that kind."""
    events: list[Event] = [
        AuditAppended(
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
    ]
    network = _NETWORK_ACTIONS.get(entry.action)
    if network == "apply":
        events.append(NetworkChanged(action="apply", outcome=entry.outcome, target=entry.target))
    elif network == "confirm":
        events.append(NetworkChanged(action="confirm", outcome=entry.outcome, target=entry.target))
    elif network == "rollback":
        events.append(NetworkChanged(action="rollback", outcome=entry.outcome, target=entry.target))
    elif entry.action == "pxe.enlist":
        events.append(PxeEnlisted(mac=entry.user.removeprefix("machine:"), source=entry.source, summary=entry.detail))
    return events


def audit_listener(bus: EventBus) -> Callable[[AuditEntry], None]:
    """For `AuditLog.on_append`."""

    def appended(entry: AuditEntry) -> None:
        for event in audit_events(entry):
            bus.publish(event)

    return appended
