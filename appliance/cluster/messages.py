"""Gossip wire messages: msgspec tagged-union Structs carried in length-prefixed msgpack frames.

A `Frame` is what one transport write carries: the sender's node name (checked by the
transport against the sender's certificate) and one or more messages, so that broadcasts
ride along with probes. Messages are arrays on the wire (compact); new fields are only ever
appended, with defaults, so older nodes keep decoding newer frames.
"""

from __future__ import annotations

from enum import IntEnum

import msgspec


class Status(IntEnum):
    ALIVE = 0
    SUSPECT = 1
    DEAD = 2
    LEFT = 3


class MemberState(msgspec.Struct, array_like=True, frozen=True):
    """One member as exchanged in a full-state sync."""

    name: str
    addr: str
    incarnation: int
    status: Status
    meta: dict[str, str] = {}


class Ping(msgspec.Struct, tag="ping", array_like=True, frozen=True):
    seq: int
    target: str  # the name the sender expects to reach: a restarted address answers nothing
    # The sender's probe-round clock as it sent this; receivers keep their rounds in step with
    # it. Last, with a default, so pings from nodes without it still decode.
    clock: float | None = None


class PingReq(msgspec.Struct, tag="pingreq", array_like=True, frozen=True):
    """Ask the receiver to probe `target` and relay the answer."""

    seq: int
    target: str
    target_addr: str


class Ack(msgspec.Struct, tag="ack", array_like=True, frozen=True):
    seq: int


class Nack(msgspec.Struct, tag="nack", array_like=True, frozen=True):
    """A relay could not reach the target in time: the requester's own network is fine."""

    seq: int


class Alive(msgspec.Struct, tag="alive", array_like=True, frozen=True):
    """`node` is alive at `incarnation`. `told_all`: the sender (a seed relaying a join) sent
    this to every live member it knows, so a receiver need not gossip it on."""

    node: str
    incarnation: int
    addr: str
    meta: dict[str, str] = {}
    told_all: bool = False


class Suspect(msgspec.Struct, tag="suspect", array_like=True, frozen=True):
    node: str
    incarnation: int
    accuser: str


class Dead(msgspec.Struct, tag="dead", array_like=True, frozen=True):
    """`node` is dead; when `accuser == node` it left gracefully."""

    node: str
    incarnation: int
    accuser: str


class Revoke(msgspec.Struct, tag="revoke", array_like=True, frozen=True):
    """The certificate with this SHA-256 fingerprint is no longer accepted anywhere."""

    fingerprint: str
    name: str


class PushPull(msgspec.Struct, tag="pushpull", array_like=True, frozen=True):
    """Full state; the receiver merges it and answers with its own unless this is the answer."""

    members: list[MemberState]
    join: bool = False
    reply: bool = False
    revoked: list[Revoke] = []
    clock: float | None = None  # the sender's probe-round clock: a joiner takes its seed's


class PushPullSummary(msgspec.Struct, tag="ppsum", array_like=True, frozen=True):
    """A hash of the sender's full state (see `PushPull`): the periodic sync when nothing
    changed. A receiver whose own hash differs starts a full push-pull with the sender."""

    digest: bytes


class ConfigEntry(msgspec.Struct, array_like=True, frozen=True):
    """One entry of the cluster configuration map, tombstones included."""

    kind: str
    key: str
    value: bytes
    version: str
    deleted: bool = False


class ConfigPush(msgspec.Struct, tag="cfgpush", array_like=True, frozen=True):
    """Entries the receiver should merge (last writer wins)."""

    entries: list[ConfigEntry]


class ConfigDigest(msgspec.Struct, tag="cfgdigest", array_like=True, frozen=True):
    """(kind, key, version) of everything the sender has; the receiver pushes what is newer on
    its side and, unless this is the answer, sends its own digest back."""

    versions: list[tuple[str, str, str]]
    reply: bool = False


class ConfigSummary(msgspec.Struct, tag="cfgsum", array_like=True, frozen=True):
    """A hash of every (kind, key, version) the sender has: the cheap, periodic half of
    anti-entropy. A receiver whose own hash differs answers with its full `ConfigDigest`."""

    digest: bytes
    entries: int


class StateEntry(msgspec.Struct, array_like=True, frozen=True):
    """One key of one member's own key space, at the owner's version."""

    owner: str
    key: str
    value: bytes
    version: int


class StateDelta(msgspec.Struct, tag="statedelta", array_like=True, frozen=True):
    """Entries the receiver merges; per owner, in ascending version order with no gaps above
    what the receiver said it had, so its highest version per owner stays a true digest.

    `rumour` marks a change being spread (the receiver passes on what was new to it); a
    catch-up answer to a digest or a hand-over to a newcomer is merged and not passed on.
    Appended last with a default, so frames from nodes without it still decode."""

    entries: list[StateEntry]
    rumour: bool = False


class StateDigest(msgspec.Struct, tag="statedigest", array_like=True, frozen=True):
    """The highest version the sender holds for each owner (scuttlebutt's digest)."""

    versions: dict[str, int]
    reply: bool = False


class StateSummary(msgspec.Struct, tag="statesum", array_like=True, frozen=True):
    """A hash of the sender's digest; a receiver whose own hash differs answers with its digest."""

    digest: bytes


Message = (
    Ping
    | PingReq
    | Ack
    | Nack
    | Alive
    | Suspect
    | Dead
    | Revoke
    | PushPull
    | ConfigPush
    | ConfigDigest
    | ConfigSummary
    | StateDelta
    | StateDigest
    | StateSummary
    | PushPullSummary
)
ConfigMessage = (
    ConfigPush | ConfigDigest | ConfigSummary | StateDelta | StateDigest | StateSummary
)  # handled by replication, not by SWIM


class Frame(msgspec.Struct, array_like=True, frozen=True, omit_defaults=True):
    """One transport write. `addr` (the sender's gossip address) rides only with full-state
    syncs, where a receiver may not know the sender yet; otherwise it is left out of the
    encoding (older decoders fill in the default)."""

    sender: str
    messages: list[Message]
    addr: str = ""


_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(Frame)


def encode_frame(frame: Frame) -> bytes:
    return _ENCODER.encode(frame)


def decode_frame(data: bytes) -> Frame:
    """Decode one frame; raises msgspec.DecodeError (or ValidationError) on anything malformed."""
    return _DECODER.decode(data)


def message_size(message: Message) -> int:
    return len(_ENCODER.encode(message))
