"""The events a node publishes: one tagged msgspec Struct per kind of change.

Every event carries the same envelope: `id` (monotonic per node: the bus numbers events from
the microsecond it started, so a restarted node's ids stay above the ones it handed out
before), `node` (where it happened), `at` (wall-clock seconds) and `permission` (what a
client's role needs to read it, from the one table in appliance/auth/permissions.py). The
`type` tag says which Struct follows. Events name what changed, never a secret: a
configuration change says its kind and key, not the value; an audit event carries the
entry's public fields (the log never holds secrets).

New kinds are appended here with a tag and a row in `EVENT_PERMISSIONS`; new fields get
defaults (clients of an older release ignore what they do not know).
"""

from __future__ import annotations

from typing import Literal

import msgspec


class Event(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    """The envelope every event shares; the bus fills it in when the event is published."""

    id: int = 0
    node: str = ""
    at: float = 0.0
    permission: str = ""


class MembershipChanged(Event, frozen=True, kw_only=True, tag="membership"):
    """A member's state as this node's failure detector saw it change (joined, dead, left...)."""

    member: str
    state: str  # joined, updated, suspect, alive, dead, left, reaped, revoked, refuted
    incarnation: int = 0


class ConfigChanged(Event, frozen=True, kw_only=True, tag="config"):
    """An entry of the cluster configuration map was written or deleted: kind and key only."""

    kind: str
    key: str
    deleted: bool = False
    local: bool = True  # written on this node (False: merged from a peer)


class FactsChanged(Event, frozen=True, kw_only=True, tag="facts"):
    """Keys of a member's replicated key space (facts, addresses, audit head) changed here."""

    owner: str
    keys: list[str]


class AuditAppended(Event, frozen=True, kw_only=True, tag="audit"):
    """An entry appended to this node's audit log."""

    seq: int
    user: str
    source: str
    action: str
    target: str
    outcome: str
    detail: str = ""
    credential: str = ""
    forwarded_by: str = ""


class NetworkChanged(Event, frozen=True, kw_only=True, tag="network"):
    """A host-network change on this node: applied, confirmed or rolled back (and its outcome)."""

    action: Literal["apply", "confirm", "rollback"]
    outcome: str
    target: str = ""


class PxeEnlisted(Event, frozen=True, kw_only=True, tag="pxe"):
    """A PXE-booted machine reported its inventory to this node's boot server."""

    mac: str
    source: str
    summary: str = ""


class HistorySampled(Event, frozen=True, kw_only=True, tag="history"):
    """This node's resource sample of the 5 s bucket starting at `time` (appliance/history/):
    a chart appends it without asking; null where there is no value (the first sample after a
    start has no rates). Units as in `GET /api/v1/nodes/{name}/history`."""

    time: int
    cpu: float | None = None  # percent
    mem_used: float | None = None  # bytes
    mem_available: float | None = None
    net_rx: float | None = None  # bytes/s
    net_tx: float | None = None
    disk_read: float | None = None
    disk_write: float | None = None


class UnitChanged(Event, frozen=True, kw_only=True, tag="unit"):
    """A systemd unit on this node changed state, or a job of it ended (from systemd's signals;
    a burst of a few milliseconds is one event per unit, with the state it ended in)."""

    unit: str
    load_state: str = ""
    active_state: str = ""
    sub_state: str = ""
    job_result: str = ""  # a job for it ended: done, failed, timeout, canceled, dependency, skipped
    unloaded: bool = False  # systemd dropped it from memory (a unit file may still exist)


class PowerRequested(Event, frozen=True, kw_only=True, tag="power"):
    """This node is about to reboot or power off, asked by `by`; sent before it leaves the cluster."""

    action: Literal["reboot", "poweroff"]
    reason: str
    by: str


AnyEvent = (
    MembershipChanged
    | ConfigChanged
    | FactsChanged
    | AuditAppended
    | NetworkChanged
    | PxeEnlisted
    | HistorySampled
    | UnitChanged
    | PowerRequested
)
EVENT_TYPES: tuple[type[Event], ...] = (
    MembershipChanged,
    ConfigChanged,
    FactsChanged,
    AuditAppended,
    NetworkChanged,
    PxeEnlisted,
    HistorySampled,
    UnitChanged,
    PowerRequested,
)


def tag_of(kind: type[Event]) -> str:
    """The `type` a kind of event has on the wire."""
    tag = kind.__struct_config__.tag
    assert isinstance(tag, str)
    return tag


TYPE_NAMES: frozenset[str] = frozenset(tag_of(k) for k in EVENT_TYPES)
decoder: msgspec.json.Decoder[AnyEvent] = msgspec.json.Decoder(AnyEvent)
encoder = msgspec.json.Encoder()
