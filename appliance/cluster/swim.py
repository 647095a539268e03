"""SWIM membership with the Lifeguard refinements, as a sans-IO state machine.

This module sends nothing, reads no clock and draws no random number it was not given: the
driver (the real transport, or the simulator) calls `tick(now)` when `next_deadline()` comes,
`receive(now, sender, frame)` for every frame that arrives, and `connection_lost(now, name)`
when a peer's connection breaks; it then drains `take_outbox()` and `take_events()`.

What it implements (SWIM, Das et al. 2002; Lifeguard, Dadgar et al. 2018; memberlist):
- probes in rounds of a round-robin tournament: in every probe interval each member is
  paired with one other (the circle method over the sorted names of the live members, on a
  round clock the nodes keep in step among themselves), and the pair's one exchange checks
  both. So a member is checked once in every interval, never less, whatever happened
  before, and a silent one is noticed within one interval; a node sends half the pings of
  SWIM's round-robin probing. One side of a pair pings; the other pings only if that ping has not
  come after `probe_standby`. A probe is a direct ping, then after the probe timeout
  indirect pings through `indirect_checks` members, who answer with a nack when they cannot
  reach the target in time; and an out-of-schedule probe of a suspect that another member
  accused, so that confirmations come quickly;
- suspicion with Lifeguard's timeout, which starts at `max` and shrinks towards `min` as
  independent members confirm it; refutation by incarnation numbers; the suspected member is
  told at once, so it can refute before the timeout;
- local health awareness: probe timeouts grow, and this node rests from pinging in some
  rounds (its partners ping it instead), while it misses acks,
  misses nacks or has to refute suspicions about itself, so a slow node does not accuse
  healthy ones;
- dissemination by piggybacking on probes and periodic gossip to `gossip_nodes` members,
  each broadcast sent at most `retransmit_mult * ceil(log10(n + 1))` times;
- periodic push-pull full-state sync, as a hash first (full states go to join, to check a
  suspicion, and when the hashes differ), graceful leave, and rejoin after a
  restart (a member that hears itself called dead or suspect raises its incarnation);
- certificate revocations gossiped and exchanged like membership.

A broken connection speeds suspicion (the member is suspected at once) but never declares a
death on its own: only an expired suspicion does. A suspicion does not expire while frames
from the suspect itself keep arriving (the transport authenticates every frame's sender, so
such a frame is proof of life that plain SWIM over UDP does not have): the timer restarts
and the suspect is reminded, since its refutation is evidently stuck on the way. And a
suspicion nobody confirmed is checked with two witnesses (a push-pull of full state) before
this node declares the death on its own word: over TCP, one stalled connection can hide a
refutation that everyone else already has.
"""

from __future__ import annotations

import bisect
import hashlib
import math
import random
from dataclasses import dataclass, field
from enum import Enum

import msgspec

from appliance.cluster.messages import (
    Ack,
    Alive,
    Dead,
    Frame,
    MemberState,
    Message,
    Nack,
    Ping,
    PingReq,
    PushPull,
    PushPullSummary,
    Revoke,
    Status,
    Suspect,
    message_size,
)

JOIN_RETRY_INTERVAL = 1.0
INTRODUCE_INTERVAL = 5.0
# A seed tells this many members about a joiner directly, instead of leaving it all to gossip
# rounds: in a small cluster that is everyone, and the joiner is known everywhere one hop
# after its push-pull. Bounded so that a thousand simultaneous joins stay O(n).
JOIN_RELAY_FANOUT = 32
# Joins the seed answers within this long of its previous relay go out together, one frame per
# member: 31 nodes joining at once cost the seed ~3 relay rounds instead of 31 x 31 frames.
JOIN_RELAY_GAP = 0.05
# Members asked for their view before this node alone declares a member dead.
VERIFY_WITNESSES = 2
# Seconds after its join that a node first compares its full state with a random member's.
POST_JOIN_SYNC = 4.0
# Urgent news is gossiped at once, but no sooner than this after this node's previous gossip:
# under a storm of suspicions (a thousand nodes at 25% frame loss) each one otherwise set off its
# own gossip to `gossip_nodes` members, hundreds of frames per node per second.
URGENT_GOSSIP_GAP = 0.05
# Pings carry the sender's round clock in one round of this many (`_keep_in_step`).
CLOCK_SAMPLE_ROUNDS = 4


@dataclass(frozen=True)
class GossipTuning:
    """Timings and fan-outs. `GossipTuning()` is DebVisor's edge profile; `GossipTuning.lan()` is memberlist's.

    The edge profile checks each member once every 0.7 s (memberlist's LAN profile: 1 s, at
    random); in each 0.7 s round every member is paired with one other, and the pair's one
    exchange checks both. A probe is over sooner: indirect probes go out 0.25 s after the
    ping and the probe fails (and its target is suspected) 0.4 s after it, where memberlist
    waits out the whole interval. A member that hears of a suspicion it did not raise probes
    the suspect itself at once (about `suspicion_checkers` members do, whatever the cluster's
    size), so the independent confirmations that shorten a suspicion arrive half a second
    after it spreads instead of after several probe rounds; suspicions and deaths are
    gossiped at once, not at the next gossip tick.
    Suspicions last at least 1 s (more for clusters of several hundred: `suspicion_mult` x
    log10(n) probe intervals) and at most 3x that before confirmations: over TCP a
    refutation can sit in a retransmission for a few hundred milliseconds. A peer whose
    connection broke *and* whose host refuses a reconnect (the process died, the host is up)
    is dead 0.25 s after the refusal unless it refutes. Suspects are reminded every
    `suspect_remind_interval` and answer stale suspicions directly, so a refutation cannot
    be missed by an unlucky epidemic. Periodic push-pulls send a hash of the full state and
    exchange the state itself only when the partner's hash differs.
    """

    probe_interval: float = 0.7
    probe_timeout: float = 0.25
    probe_deadline: float = 0.4  # from the ping until the probe fails; at most probe_interval
    probe_standby: float = 0.2  # how long the waiting side of a round's pair waits for the ping
    suspicion_checkers: int = 6  # how many members, on average, check a suspect they hear of
    suspect_remind_interval: float = 0.4
    indirect_checks: int = 3
    gossip_interval: float = 0.2
    gossip_nodes: int = 3
    suspicion_mult: float = 0.6
    suspicion_max_mult: float = 3.0
    suspicion_floor: float = 1.0
    refused_timeout: float = 0.25
    suspicion_confirmations: int = 2
    retransmit_mult: int = 4
    push_pull_interval: float = 30.0
    awareness_max: int = 8
    reconnect_interval: float = 5.0
    left_reap_after: float = 60.0
    dead_reap_after: float = 3600.0
    max_piggyback_bytes: int = 1400
    max_gossip_bytes: int = 16 * 1024

    @classmethod
    def lan(cls) -> GossipTuning:
        """memberlist's DefaultLANConfig timings (probe 1 s / 500 ms, gossip 200 ms to 3, mult 4);
        probes still run in paired rounds, where memberlist picks its targets at random."""
        return cls(
            probe_interval=1.0,
            probe_timeout=0.5,
            probe_deadline=1.0,
            probe_standby=0.5,
            suspicion_checkers=0,
            suspect_remind_interval=1.0,
            suspicion_mult=4.0,
            suspicion_max_mult=6.0,
            suspicion_confirmations=2,
        )


@dataclass
class Member:
    name: str
    addr: str
    incarnation: int
    status: Status
    meta: dict[str, str]
    changed_at: float
    heard_at: float = -math.inf  # when a frame from this member (authenticated by the transport) last arrived
    pinged_at: float = -math.inf  # when this member's latest ping for us arrived

    def state(self) -> MemberState:
        return MemberState(self.name, self.addr, self.incarnation, self.status, self.meta)


class EventKind(Enum):
    JOINED = "joined"
    UPDATED = "updated"
    SUSPECT = "suspect"
    ALIVE = "alive"  # a suspect member refuted
    DEAD = "dead"
    LEFT = "left"
    REAPED = "reaped"
    REVOKED = "revoked"
    REFUTED = "refuted"  # this node refuted a suspicion about itself


@dataclass(frozen=True)
class Event:
    kind: EventKind
    name: str
    at: float
    incarnation: int = 0
    detail: str = ""


@dataclass(frozen=True)
class Outgoing:
    """A frame to send: to a member by name (and address), or to a bare address when joining."""

    name: str | None
    addr: str
    frame: Frame


@dataclass
class _Probe:
    target: str
    seq: int
    started: float
    indirect_at: float
    ends_at: float
    check: bool = False  # an out-of-schedule check of a suspect
    dial_allowed: bool = False  # its deadlines were moved for the connection its ping waits on
    acked: bool = False
    indirect_sent: int = 0
    expected_nacks: int = 0
    nacks: int = 0


@dataclass
class _Relay:
    requester: str
    requester_seq: int
    nack_at: float
    target: str
    dialling: bool = False


@dataclass
class _Suspicion:
    started: float
    incarnation: int
    accuser: str
    confirmers: set[str] = field(default_factory=set)
    nudged_at: float = 0.0
    refused_at: float | None = None
    verify_until: float | None = None  # asked witnesses for their view; decide at this time


@dataclass
class _Broadcast:
    key: str
    message: Message
    size: int
    transmits: int = 0


class Swim:
    """One node's view of the cluster's membership."""

    def __init__(
        self,
        name: str,
        addr: str,
        *,
        config: GossipTuning,
        rng: random.Random,
        now: float,
        incarnation: int = 0,
        meta: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self.addr = addr
        self.config = config
        self._rng = rng
        self.incarnation = incarnation
        self.meta = dict(meta or {})
        self.members: dict[str, Member] = {
            name: Member(name, addr, incarnation, Status.ALIVE, self.meta, now),
        }
        self.revoked: dict[str, str] = {}  # fingerprint -> node name
        self.awareness = 0
        self.leaving = False
        self._others: list[Member] | None = None  # other live members, rebuilt after any change
        self._recently_dead: dict[str, float] = {}
        self._introduced: dict[str, float] = {}
        self._joins_answered: dict[str, float] = {}  # joiner -> when this node last answered its join
        self._joins_to_relay: dict[str, None] = {}  # joiners answered since the last relay, in order
        self._join_relay_at = math.inf
        self._last_join_relay = -math.inf
        self._seq = 0
        self._roster: list[str] | None = None  # sorted names of the live members and this node
        self._round = -1  # the latest probe round this node has started
        self._standby: dict[str, float] = {}  # partner -> when to ping it, unless it pings us first
        # Seconds from `now` to the clock that probe rounds are counted on (`_keep_in_step`).
        # The driver starts it at wall clock minus its monotonic clock.
        self.clock_offset = 0.0
        self._in_step = True  # False while joining: take the seed's clock as it is
        self._probes: dict[str, _Probe] = {}  # running probes (round's and checks of suspects), by target
        self._relays: dict[int, _Relay] = {}
        self._suspicions: dict[str, _Suspicion] = {}
        self._broadcasts: dict[str, _Broadcast] = {}
        self._broadcast_keys: dict[str, set[str]] = {}  # subject -> keys of its queued broadcasts
        self._outbox: list[Outgoing] = []
        self._events: list[Event] = []
        self._next_gossip = now + rng.uniform(0, config.gossip_interval)
        self._last_gossip = -math.inf
        self._next_push_pull = now + self._push_pull_interval() * rng.uniform(0.5, 1.0)
        self._next_reap = now + config.left_reap_after
        self._next_reconnect = now + config.reconnect_interval
        self._seeds: list[str] = []
        self._joined = True
        self._next_join = now
        self.join_sent_at: float | None = None  # when the latest join request went to the seeds
        self.join_attempts = 0

    # -- inputs ---------------------------------------------------------------------------

    def join(self, now: float, seed_addrs: list[str]) -> None:
        """Join through seeds: a full-state exchange with each, retried until one answers."""
        self._seeds = [addr for addr in seed_addrs if addr != self.addr]
        self._joined = not self._seeds
        self._in_step = not self._seeds
        self._next_join = now
        self._retry_join(now)

    def _retry_join(self, now: float) -> None:
        if self._joined or now < self._next_join:
            return
        for addr in self._seeds:
            self._send_to_addr(addr, [PushPull(self._states(), join=True, revoked=self._revocations())])
        self._next_join = now + JOIN_RETRY_INTERVAL
        self.join_sent_at = now
        self.join_attempts += 1

    @property
    def joined(self) -> bool:
        """True once a seed (or any member) answered; a single node with no seeds is joined."""
        return self._joined

    def leave(self, now: float) -> None:
        """Announce a graceful departure; keep ticking until the announcement has spread."""
        self.leaving = True
        self.incarnation += 1
        me = self.members[self.name]
        me.incarnation, me.status, me.changed_at = self.incarnation, Status.LEFT, now
        message = Dead(self.name, self.incarnation, self.name)
        self._queue(self.name, message)
        for member in self._pick(self.config.gossip_nodes * 2, live_only=True):
            self._send(member, [message])

    def update_meta(self, now: float, meta: dict[str, str]) -> None:
        """Change this node's metadata (API address, version, ...) and announce it."""
        self.meta = dict(meta)
        self.incarnation += 1
        me = self.members[self.name]
        me.meta, me.incarnation, me.changed_at = self.meta, self.incarnation, now
        self._queue(self.name, Alive(self.name, self.incarnation, self.addr, self.meta))

    def revoke(self, now: float, fingerprint: str, name: str) -> None:
        """Revoke a certificate cluster-wide (and declare its node dead)."""
        self._apply_revoke(now, Revoke(fingerprint, name))
        member = self.members.get(name)
        if member is not None and member.status not in (Status.DEAD, Status.LEFT):
            self._declare_dead(now, member, member.incarnation, self.name)

    def connection_lost(self, now: float, name: str) -> None:
        """The transport saw a peer's connection break: suspect it now (death still needs the timeout)."""
        member = self.members.get(name)
        if member is None or member.status != Status.ALIVE or name == self.name:
            return
        self._suspect(now, member, member.incarnation, self.name)

    def connection_refused(self, now: float, name: str) -> None:
        """Reconnecting to a peer whose connection broke was refused: its host answers but no
        process listens. The suspicion then ends after `refused_timeout` unless refuted."""
        member = self.members.get(name)
        if member is None or name == self.name or member.status in (Status.DEAD, Status.LEFT):
            return
        if member.status == Status.ALIVE:
            self._suspect(now, member, member.incarnation, self.name)
        suspicion = self._suspicions.get(name)
        if suspicion is not None and suspicion.refused_at is None:
            suspicion.refused_at = now

    def dialling(self, name: str, seconds: float) -> None:
        """The ping just queued for `name` waits for a new connection, up to `seconds`.

        A TLS handshake is not the target's silence: on a busy host it can take longer than a
        probe's deadline, and the probe would accuse a member that is only new to this node.
        The probe's deadlines move by the handshake's limit (once); if the dial fails, the
        transport drops the ping and the probe still fails, that much later. A relayed ping's
        nack waits as long."""
        for probe in self._running_probes():
            if probe.target == name and probe.indirect_sent == 0 and not probe.dial_allowed:
                probe.dial_allowed = True
                probe.indirect_at += seconds
                probe.ends_at += seconds
        for relay in self._relays.values():
            if relay.target == name and not relay.dialling:
                # A relay that cannot know yet sends no nack: a nack says "I am fine, the target is not".
                relay.dialling = True
                relay.nack_at += seconds

    def stalled(self, now: float, seconds: float) -> None:
        """The driver could not run this node for `seconds` (up to `now`).

        Timeouts that ran out meanwhile say nothing about the others: acks and refutations
        may have arrived unread. The running probe and every suspicion get that time back,
        and local health worsens, as Lifeguard does for a node that misses its own deadlines."""
        for probe in self._running_probes():
            probe.indirect_at += seconds
            probe.ends_at += seconds
        for suspicion in self._suspicions.values():
            suspicion.started += seconds
            if suspicion.verify_until is not None:
                suspicion.verify_until += seconds
        self.awareness = min(self.config.awareness_max - 1, self.awareness + 1)

    def receive(self, now: float, sender: str, frame: Frame) -> None:
        """Handle a frame whose sender the transport authenticated as `sender`."""
        if frame.sender != sender:
            return  # the transport counts and drops these; defence in depth
        if (
            sender not in self.members
            and now - self._introduced.get(sender, -INTRODUCE_INTERVAL) >= INTRODUCE_INTERVAL
            and not any(isinstance(m, PushPull) and not m.reply for m in frame.messages)  # answered anyway
        ):
            # A member we never heard of talks to us (we joined late, or healed from a
            # partition): exchange full state with it so both views converge now. Without
            # its address, the transport answers on the connection the frame came in on.
            self._introduced[sender] = now
            self._outbox.append(
                Outgoing(sender, frame.addr, self._frame([PushPull(self._states(), revoked=self._revocations())]))
            )
        known = self.members.get(sender)
        if known is not None:
            known.heard_at = now
        for message in frame.messages:
            self._handle(now, sender, message)

    def tick(self, now: float) -> None:
        """Run every timer that is due."""
        self._retry_join(now)
        self._expire_relays(now)
        self._advance_probes(now)
        self._start_round(now)
        self._stand_in(now)
        self._expire_suspicions(now)
        if now >= self._join_relay_at:
            self._relay_joins(now)
        if now >= self._next_gossip:
            self._gossip(now)
            self._last_gossip = now
            self._next_gossip = now + self.config.gossip_interval
        if now >= self._next_push_pull:
            self._push_pull(now)
            self._next_push_pull = now + self._push_pull_interval()
        if now >= self._next_reconnect:
            self._reconnect(now)
            self._next_reconnect = now + self.config.reconnect_interval
        if now >= self._next_reap:
            self._reap(now)
            self._next_reap = now + self.config.left_reap_after / 4

    # -- outputs --------------------------------------------------------------------------

    def next_deadline(self) -> float:
        candidates = [
            self._next_gossip,
            self._next_push_pull,
            self._next_reap,
            self._next_reconnect,
            self._join_relay_at,
        ]
        if not self._joined:
            candidates.append(self._next_join)
        candidates.append(self._round_start(self._round + 1))
        candidates.extend(self._standby.values())
        for probe in self._running_probes():
            candidates.append(probe.indirect_at if probe.indirect_sent == 0 else probe.ends_at)
        candidates.extend(r.nack_at for r in self._relays.values())
        for name, suspicion in self._suspicions.items():
            candidates.append(self._suspicion_deadline(name, suspicion))
            candidates.append(suspicion.nudged_at + self.config.suspect_remind_interval)
        return min(candidates)

    def take_outbox(self) -> list[Outgoing]:
        out, self._outbox = self._outbox, []
        return out

    def take_events(self) -> list[Event]:
        events, self._events = self._events, []
        return events

    def live_count(self) -> int:
        return len(self._live_others()) + 1

    def _live_others(self) -> list[Member]:
        if self._others is None:
            self._others = [
                m for n, m in self.members.items() if n != self.name and m.status in (Status.ALIVE, Status.SUSPECT)
            ]
            self._roster = None
        return self._others

    def pending_broadcasts(self) -> int:
        return len(self._broadcasts)

    # -- message handling -----------------------------------------------------------------

    def _handle(self, now: float, sender: str, message: Message) -> None:
        match message:
            case Ping(seq=seq, target=target, clock=clock):
                if target == self.name:
                    self._on_ping(now, sender, seq, clock)
            case PingReq(seq=seq, target=target, target_addr=target_addr):
                self._relay(now, sender, seq, target, target_addr)
            case Ack(seq=seq):
                self._on_ack(seq)
            case Nack(seq=seq):
                self._on_nack(seq)
            case Alive():
                self._on_alive(now, message)
            case Suspect(node=node, incarnation=incarnation, accuser=accuser):
                self._on_suspect(now, node, incarnation, accuser, sender)
            case Dead(node=node, incarnation=incarnation, accuser=accuser):
                self._on_dead(now, node, incarnation, accuser, sender)
            case Revoke():
                self._apply_revoke(now, message)
            case PushPull():
                self._on_push_pull(now, sender, message)
            case PushPullSummary(digest=digest):
                self._on_push_pull_summary(sender, digest)

    def _on_ping(self, now: float, sender: str, seq: int, clock: float | None) -> None:
        member = self.members.get(sender)
        if member is not None:
            self._send(member, [Ack(seq)])
        else:
            # A sender we have not heard of yet (it learnt of us first, from a seed) is answered
            # over the connection its ping came in on: unanswered, its probe would fail and
            # accuse us while the cluster forms.
            self._outbox.append(Outgoing(sender, "", self._frame([Ack(seq)])))
        self._pinged_by(now, sender)
        self._keep_in_step(now, clock)

    def _on_ack(self, seq: int) -> None:
        for probe in self._running_probes():
            if probe.seq == seq:
                probe.acked = True
                return
        relay = self._relays.pop(seq, None)
        if relay is not None:
            self._send_named(relay.requester, [Ack(relay.requester_seq)])

    def _on_nack(self, seq: int) -> None:
        for probe in self._running_probes():
            if probe.seq == seq:
                probe.nacks += 1

    def _relay(self, now: float, requester: str, seq: int, target: str, target_addr: str) -> None:
        local = self._next_seq()
        self._relays[local] = _Relay(requester, seq, now + self.config.probe_timeout * 0.8, target)
        member = self.members.get(target)
        addr = member.addr if member is not None else target_addr
        self._outbox.append(Outgoing(target, addr, self._frame([Ping(local, target)])))

    def _expire_relays(self, now: float) -> None:
        for seq, relay in list(self._relays.items()):
            if now >= relay.nack_at:
                del self._relays[seq]
                self._send_named(relay.requester, [Nack(relay.requester_seq)])

    def _on_alive(self, now: float, alive: Alive, *, spread: bool = True) -> None:
        """Take news of a live member; `spread=False` takes it without gossiping it on."""
        spread = spread and not alive.told_all
        if alive.node == self.name:
            if alive.incarnation > self.incarnation and not self.leaving:
                self._refute(now, alive.incarnation)
            return
        member = self.members.get(alive.node)
        cert = alive.meta.get("cert") or (member.meta.get("cert") if member is not None else None)
        if cert is not None and cert in self.revoked:
            return  # news about a certificate that was revoked: that node stays out
        if member is None:
            self.members[alive.node] = Member(
                alive.node, alive.addr, alive.incarnation, Status.ALIVE, dict(alive.meta), now
            )
            self._others = None
            self._events.append(Event(EventKind.JOINED, alive.node, now, alive.incarnation))
            if spread:
                self._queue(alive.node, alive)
            return
        if alive.incarnation <= member.incarnation:
            return
        previous = member.status
        member.incarnation, member.addr, member.meta = alive.incarnation, alive.addr, dict(alive.meta)
        member.status, member.changed_at = Status.ALIVE, now
        self._others = None
        self._suspicions.pop(alive.node, None)
        if previous == Status.SUSPECT:
            kind = EventKind.ALIVE
        elif previous in (Status.DEAD, Status.LEFT):
            kind = EventKind.JOINED
        else:
            kind = EventKind.UPDATED
        self._events.append(Event(kind, alive.node, now, alive.incarnation))
        if spread:
            self._queue(alive.node, alive)

    def _on_suspect(self, now: float, node: str, incarnation: int, accuser: str, sender: str = "") -> None:
        if node == self.name:
            if self.leaving:
                return
            if incarnation >= self.incarnation:
                self._refute(now, incarnation)
            else:
                # Someone still holds a suspicion we already refuted: answer them directly, since
                # an epidemic broadcast can miss a node and that node's timer would then fire.
                alive = Alive(self.name, self.incarnation, self.addr, self.meta)
                # In a defined order, not a set's: the send order reaches the simulator's seeded RNG,
                # and a set's order changes with PYTHONHASHSEED.
                for name in dict.fromkeys((sender, accuser)):
                    if name not in ("", self.name):
                        self._send_named(name, [alive])
            return
        member = self.members.get(node)
        if member is None or member.status in (Status.DEAD, Status.LEFT):
            return
        if incarnation < member.incarnation:
            if member.status == Status.ALIVE:
                self._correct(sender, member)
            return
        if member.status == Status.SUSPECT:
            suspicion = self._suspicions.get(node)
            if suspicion is not None and accuser != suspicion.accuser and accuser not in suspicion.confirmers:
                suspicion.confirmers.add(accuser)
                self._queue_urgent(now, node, Suspect(node, incarnation, accuser))
            return
        self._suspect(now, member, incarnation, accuser)
        self._check_suspect(now, member)

    def _on_dead(self, now: float, node: str, incarnation: int, accuser: str, sender: str = "") -> None:
        if node == self.name:
            if accuser != self.name and not self.leaving and incarnation >= self.incarnation:
                self._refute(now, incarnation)
            return
        member = self.members.get(node)
        if member is None:
            return
        if incarnation < member.incarnation and member.status == Status.ALIVE:
            self._correct(sender, member)
            return
        gone = member.status in (Status.DEAD, Status.LEFT)
        # A member already dead may still be reported as having left: that is news.
        now_left = member.status == Status.DEAD and accuser == node and incarnation >= member.incarnation
        if incarnation < member.incarnation or (gone and not now_left):
            return
        self._declare_dead(now, member, incarnation, accuser)

    def _correct(self, sender: str, member: Member) -> None:
        """`sender` gossiped a suspicion or death of `member` that a newer incarnation already
        refuted: hand it that incarnation now, over the connection the stale news came in on.
        The refutation then follows the very paths the accusation takes, instead of racing it
        through random gossip targets and new connections while the sender's timer runs."""
        if sender and sender not in (self.name, member.name):
            self._send_named(sender, [Alive(member.name, member.incarnation, member.addr, member.meta)])

    def _on_push_pull(self, now: float, sender: str, push: PushPull) -> None:
        # The answer to our join request is the seed's view, which the seed has gossiped
        # already: its live members are taken without gossiping each of them on. (Otherwise
        # every joiner re-broadcasts the whole membership, n * n * retransmit-limit messages
        # when n nodes join at once.) Any other push-pull may heal a partition: news spreads.
        if push.join:
            if now - self._joins_answered.get(sender, -math.inf) < JOIN_RETRY_INTERVAL / 2:
                # A retry that waited in the joiner's queue (its dials to us failed meanwhile)
                # behind the request just answered: that answer is on its way. Answering each
                # again cost the seed of 31 joiners ~3 full states and 31 relays per joiner.
                return
            self._joins_answered[sender] = now
        answers_join = push.reply and not self._joined
        self._joined = True
        if answers_join:
            # Members that join just after us are news we can only hear through gossip, and in
            # a big formation an epidemic now and then misses a node: sync once a few seconds
            # after joining rather than at the first periodic push-pull, 15 to 30 s after start.
            self._next_push_pull = min(self._next_push_pull, now + POST_JOIN_SYNC * self._rng.uniform(1.0, 1.5))
        if not self._in_step and push.clock is not None:
            self._in_step = True
            self._set_clock(now, push.clock)
        for revoke in push.revoked:
            self._apply_revoke(now, revoke)
        for state in push.members:
            self._merge_state(now, state, spread=not answers_join)
        if not push.reply:
            answer = PushPull(self._states(), reply=True, revoked=self._revocations(), clock=self._clock(now))
            self._send_named(sender, [answer])
        if push.join:
            self._joins_to_relay[sender] = None
            self._join_relay_at = min(self._join_relay_at, max(now, self._last_join_relay + JOIN_RELAY_GAP))
            if now >= self._join_relay_at:
                self._relay_joins(now)

    def _relay_joins(self, now: float) -> None:
        """Tell up to JOIN_RELAY_FANOUT members about the joiners answered since the last relay.

        When that is every live member, the news is marked so that nobody gossips it on, and
        this node drops it from its own gossip: in a formation, every member re-gossiping
        every joiner to three random members made each node dial most of the others at once,
        a storm of TLS handshakes (about 450 at 32 nodes) for news everyone already had.
        """
        told_all = len(self._live_others()) <= JOIN_RELAY_FANOUT
        news = []
        for name in self._joins_to_relay:
            joiner = self.members.get(name)
            if joiner is not None and joiner.status == Status.ALIVE:
                news.append(Alive(joiner.name, joiner.incarnation, joiner.addr, joiner.meta, told_all=told_all))
                if told_all:
                    self._unqueue(name)
        self._joins_to_relay.clear()
        self._join_relay_at = math.inf
        self._last_join_relay = now
        if not news:
            return
        for member in self._pick(JOIN_RELAY_FANOUT, live_only=True):
            messages: list[Message] = [alive for alive in news if alive.node != member.name]
            if messages:
                self._send(member, messages)

    def _on_push_pull_summary(self, sender: str, digest: bytes) -> None:
        if digest != self._state_digest() and sender in self.members:
            # Our views differ: a full exchange (the sender answers with its own state).
            self._send_named(sender, [PushPull(self._states(), revoked=self._revocations())])

    def _merge_state(self, now: float, state: MemberState, *, spread: bool = True) -> None:
        if state.status == Status.ALIVE:
            self._on_alive(now, Alive(state.name, state.incarnation, state.addr, state.meta), spread=spread)
        elif state.status == Status.LEFT:
            if state.name not in self.members and state.name != self.name:
                self._on_alive(now, Alive(state.name, state.incarnation, state.addr, state.meta))
            self._on_dead(now, state.name, state.incarnation, state.name)
        else:
            # A remote view of "dead" becomes our suspicion, not an instant death (memberlist).
            if state.name not in self.members and state.name != self.name:
                return
            self._on_suspect(now, state.name, state.incarnation, self.name)

    def _apply_revoke(self, now: float, revoke: Revoke) -> None:
        if revoke.fingerprint in self.revoked:
            return
        self.revoked[revoke.fingerprint] = revoke.name
        self._events.append(Event(EventKind.REVOKED, revoke.name, now, detail=revoke.fingerprint))
        self._queue(f"revoke:{revoke.fingerprint}", revoke)  # "|" never occurs in a fingerprint
        member = self.members.get(revoke.name)
        if (
            member is not None
            and member.meta.get("cert") == revoke.fingerprint
            and member.status not in (Status.DEAD, Status.LEFT)
        ):
            # Every node that learns of the revocation declares the member dead at once, so its
            # refutations (relayed by a node that has not heard yet) cannot keep it alive.
            self._declare_dead(now, member, member.incarnation, self.name)

    # -- probing --------------------------------------------------------------------------

    def _clock(self, now: float) -> float:
        return now + self.clock_offset

    def _clock_sample(self, now: float) -> float | None:
        """This node's round clock for a ping to carry, in one round of CLOCK_SAMPLE_ROUNDS:
        enough to keep the nodes in step, and the other pings go without its 9 bytes."""
        return self._clock(now) if self._round % CLOCK_SAMPLE_ROUNDS == 0 else None

    def _keep_in_step(self, now: float, clock: float | None) -> None:
        """Move this node's round clock towards a peer's, so that all start rounds together.

        A joining node takes its seed's clock with the answer to its join (`_on_push_pull`).
        Then each ping pulls the receiver halfway towards its sender, at most a quarter of a
        round at a time: the nodes' clocks converge on their average (as in gossip-based
        clock synchronisation), crystal drift is corrected as it arises, and one node with a
        wild clock moves the others only a little while it is pulled in."""
        if clock is None or not self._in_step:
            return
        limit = self.config.probe_interval / 4
        ahead = self._clock(now) - clock
        self._set_clock(now, self._clock(now) - max(-limit, min(limit, ahead / 2)))

    def _set_clock(self, now: float, clock: float) -> None:
        self.clock_offset = clock - now
        # Set back, a round that already ran is not run again; set forward, the next tick
        # starts the round it is now.
        self._round = min(self._round, math.floor(clock / self.config.probe_interval))

    def _round_start(self, round_: int) -> float:
        return round_ * self.config.probe_interval - self.clock_offset

    def _start_round(self, now: float) -> None:
        """Start the probe round that `now` falls in, if this node has not yet.

        The round's partner is pinged now by one side of the pair; the other waits
        `probe_standby` for that ping and pings itself if it has not come. A node whose local
        health is poor (awareness a) pings in one round of a + 1 and waits in the others, as
        Lifeguard stretches its probe interval; its partners then ping it."""
        round_ = math.floor(self._clock(now) / self.config.probe_interval)
        if round_ <= self._round:
            return
        self._round = round_
        self._standby.clear()
        resting = round_ % (self.awareness + 1) != 0
        for name, first in self._partners(round_):
            member = self.members.get(name)
            if member is None:
                continue
            if first and not resting:
                self._probe_member(now, member)
            elif not resting and now - member.pinged_at > self.config.probe_interval / 2:
                self._standby[name] = self._round_start(round_) + self.config.probe_standby

    def _partners(self, round_: int) -> list[tuple[str, bool]]:
        """This node's partners in a round, each with whether this node pings first.

        The circle method: with m members (one more, a bye, if m is odd), round r pairs
        member m-1 with r and each other i with 2r - i (mod m-1). Over m-1 rounds every
        member meets every other once, and in every round each member meets one. With an odd
        count the member drawn against the bye meets the next member in the order as well,
        so that no member goes a round unchecked. Of a pair, i pings first when i - r is odd
        (its partner's difference is then even), and the pair with m-1 alternates by round:
        so each member pings in half its rounds."""
        others = self._live_others()  # rebuilding it after a change also drops the roster
        if self._roster is None:
            self._roster = sorted([self.name, *(m.name for m in others)])
        roster = self._roster
        m = len(roster)
        if m < 2:
            return []
        me = bisect.bisect_left(roster, self.name)
        size = m + m % 2
        r = round_ % (size - 1)
        partner = r if me == size - 1 else size - 1 if me == r else (2 * r - me) % (size - 1)
        if me in (r, size - 1):
            first = (me == r) == (round_ % 2 == 0)
        else:
            first = (me - r) % (size - 1) % 2 == 1
        pairs = [(roster[partner], first)] if partner < m else []
        if m % 2:
            bye, extra = r, (r + 1) % m  # the bye's member pings the next one
            if me == bye:
                pairs.append((roster[extra], True))
            elif me == extra:
                pairs.append((roster[bye], False))
        return pairs

    def _pinged_by(self, now: float, name: str) -> None:
        """`name` pinged us: that exchange is this round's check of it too."""
        member = self.members.get(name)
        if member is not None:
            member.pinged_at = now
        self._standby.pop(name, None)

    def _stand_in(self, now: float) -> None:
        """Ping the partners whose ping this round has not come in time."""
        for name, at in list(self._standby.items()):
            if now >= at:
                del self._standby[name]
                member = self.members.get(name)
                if member is not None and member.status in (Status.ALIVE, Status.SUSPECT):
                    self._probe_member(now, member)

    def _probe_member(self, now: float, member: Member) -> None:
        if member.name not in self._probes and member.name != self.name:
            self._probes[member.name] = self._ping(now, member, self.awareness + 1)

    def _ping(self, now: float, target: Member, scale: int, *, check: bool = False) -> _Probe:
        seq = self._next_seq()
        ends_at = now + min(self.config.probe_deadline, self.config.probe_interval) * scale
        probe = _Probe(
            target=target.name,
            seq=seq,
            started=now,
            indirect_at=now + self.config.probe_timeout * scale,
            ends_at=ends_at,
            check=check,
        )
        self._send(target, [Ping(seq, target.name, self._clock_sample(now))], piggyback=True)
        return probe

    def _running_probes(self) -> list[_Probe]:
        return list(self._probes.values())

    def _advance_probes(self, now: float) -> None:
        for name, probe in list(self._probes.items()):
            if self._advance(now, probe):
                del self._probes[name]

    def _check_suspect(self, now: float, member: Member) -> None:
        """Probe a suspect that someone else accused, now rather than when its turn comes.

        Lifeguard's suspicion timeout shrinks with independent confirmations, and these arrive
        half a second after the news instead of after several probe rounds. In a big cluster
        only about `suspicion_checkers` members check (each with that chance in n - 2), so a
        suspicion does not bring the whole cluster down on one node."""
        if member.name in self._probes:
            return
        others = max(1, self.live_count() - 2)
        if self.config.suspicion_checkers <= 0 or self._rng.random() * others >= self.config.suspicion_checkers:
            return
        self._probes[member.name] = self._ping(now, member, self.awareness + 1, check=True)

    def _advance(self, now: float, probe: _Probe) -> bool:
        """Move a probe on (indirect pings, failure); True once it is over."""
        target = self.members.get(probe.target)
        if probe.acked or target is None or target.status in (Status.DEAD, Status.LEFT):
            if probe.acked:
                self.awareness = max(0, self.awareness - 1)
            return True
        if probe.indirect_sent == 0 and now >= probe.indirect_at:
            helpers = self._pick(self.config.indirect_checks, live_only=True, exclude=target.name)
            for helper in helpers:
                self._send(helper, [PingReq(probe.seq, target.name, target.addr)])
            probe.indirect_sent = max(1, len(helpers))
            probe.expected_nacks = len(helpers)
        if now < probe.ends_at:
            return False
        # Lifeguard: without the nacks we asked for, the fault may be ours; be slower to accuse.
        if probe.nacks < probe.expected_nacks:
            self.awareness = min(self.config.awareness_max - 1, self.awareness + 1)
            if probe.dial_allowed:
                # Our ping waited on a new connection and the helpers did not answer either:
                # nothing says the target is gone rather than this node too slow to tell. The
                # next rounds bring other partners, already connected to it, to check it.
                return True
        if target.status == Status.ALIVE and not probe.check:  # a checked suspect that refuted stays alive
            self._suspect(now, target, target.incarnation, self.name)
        elif target.status == Status.SUSPECT:
            # Our own failed probe of a suspect is an independent confirmation (memberlist).
            self._on_suspect(now, target.name, target.incarnation, self.name)
        return True

    # -- suspicion ------------------------------------------------------------------------

    def _suspect(self, now: float, member: Member, incarnation: int, accuser: str) -> None:
        member.status, member.incarnation, member.changed_at = Status.SUSPECT, incarnation, now
        self._suspicions[member.name] = _Suspicion(now, incarnation, accuser, nudged_at=now)
        self._events.append(Event(EventKind.SUSPECT, member.name, now, incarnation, detail=f"by {accuser}"))
        message = Suspect(member.name, incarnation, accuser)
        self._queue_urgent(now, member.name, message)
        # Tell the suspect at once so it can refute long before the timeout.
        self._send(member, [message])

    def _suspicion_bounds(self) -> tuple[float, float]:
        n = max(1, self.live_count())
        low = self.config.suspicion_mult * max(1.0, math.log10(n)) * self.config.probe_interval
        # Over TCP a lost segment costs a retransmission timeout (200 ms or more); suspicions
        # must outlast a few of them, or a refutation stuck in a retransmit becomes a death.
        low = max(low, self.config.suspicion_floor)
        return low, low * self.config.suspicion_max_mult

    def _suspicion_deadline(self, name: str, suspicion: _Suspicion) -> float:
        deadline = suspicion.started + self._suspicion_timeout(name, suspicion)
        if suspicion.verify_until is not None:
            deadline = max(deadline, suspicion.verify_until)
        if suspicion.refused_at is not None:
            deadline = min(deadline, suspicion.refused_at + self.config.refused_timeout)
        return deadline

    def _suspicion_timeout(self, name: str, suspicion: _Suspicion) -> float:
        low, high = self._suspicion_bounds()
        expected = self.config.suspicion_confirmations
        if self.live_count() - 2 < expected:
            expected = 0
        if expected < 1:
            return low
        confirmed = min(len(suspicion.confirmers), expected)
        return max(low, high - (high - low) * math.log(confirmed + 1) / math.log(expected + 1))

    def _expire_suspicions(self, now: float) -> None:
        for name, suspicion in list(self._suspicions.items()):
            # Same expression as in next_deadline, so a tick at that instant always expires it.
            if now < self._suspicion_deadline(name, suspicion):
                if now - suspicion.nudged_at >= self.config.suspect_remind_interval:
                    # Remind the suspect every suspect_remind_interval; if it refuted already, it answers us.
                    suspicion.nudged_at = now
                    member = self.members.get(name)
                    if member is not None:
                        self._send(member, [Suspect(name, suspicion.incarnation, suspicion.accuser)], piggyback=False)
                continue
            member = self.members.get(name)
            if member is not None and suspicion.refused_at is None and member.heard_at > suspicion.started:
                # The suspect's own frames reached us after we suspected it, so its process
                # lives: a refutation is stuck somewhere (over TCP, behind a retransmission).
                # Start the timeout again and remind it now instead of declaring a false death.
                suspicion.started = suspicion.nudged_at = now
                suspicion.verify_until = None
                self._send(member, [Suspect(name, suspicion.incarnation, suspicion.accuser)], piggyback=False)
                continue
            if (
                member is not None
                and suspicion.refused_at is None
                and not suspicion.confirmers
                and suspicion.verify_until is None
            ):
                # Nobody else confirmed: before declaring a death on our own word, ask two
                # witnesses for their whole view. If the suspect refuted and only our path to it
                # is stuck, their answer carries its newer incarnation and clears the suspicion.
                witnesses = self._pick(VERIFY_WITNESSES, live_only=True, exclude=name)
                if witnesses:
                    suspicion.verify_until = now + self.config.probe_deadline
                    for witness in witnesses:
                        self._send(witness, [PushPull(self._states(), revoked=self._revocations())], piggyback=False)
                    continue
            del self._suspicions[name]
            if member is not None and member.status == Status.SUSPECT:
                self._declare_dead(now, member, member.incarnation, self.name)

    def _declare_dead(self, now: float, member: Member, incarnation: int, accuser: str) -> None:
        left = accuser == member.name
        member.status = Status.LEFT if left else Status.DEAD
        self._others = None
        if not left:
            self._recently_dead[member.name] = now
        member.incarnation, member.changed_at = incarnation, now
        self._suspicions.pop(member.name, None)
        self._events.append(
            Event(EventKind.LEFT if left else EventKind.DEAD, member.name, now, incarnation, detail=f"by {accuser}")
        )
        self._queue_urgent(now, member.name, Dead(member.name, incarnation, accuser))

    def _refute(self, now: float, incarnation: int) -> None:
        self.incarnation = max(self.incarnation, incarnation) + 1
        me = self.members[self.name]
        me.incarnation, me.status, me.changed_at = self.incarnation, Status.ALIVE, now
        self.awareness = min(self.config.awareness_max - 1, self.awareness + 1)
        self._events.append(Event(EventKind.REFUTED, self.name, now, self.incarnation))
        alive = Alive(self.name, self.incarnation, self.addr, self.meta)
        self._queue(self.name, alive)
        for member in self._pick(self.config.gossip_nodes, live_only=True):
            self._send(member, [alive])

    # -- dissemination --------------------------------------------------------------------

    def _retransmit_limit(self) -> int:
        return self.config.retransmit_mult * max(1, math.ceil(math.log10(len(self.members) + 1)))

    def _queue_urgent(self, now: float, subject: str, message: Message) -> None:
        """Queue news that times a death (a suspicion, a confirmation, a death) and gossip it now,
        not at the next gossip tick."""
        self._queue(subject, message)
        self._next_gossip = min(self._next_gossip, max(now, self._last_gossip + URGENT_GOSSIP_GAP))

    def _queue(self, subject: str, message: Message) -> None:
        """Queue a broadcast about `subject`, superseding older news about it.

        Suspicions are kept one per accuser (each independent accusation is a confirmation
        others must hear); an alive or dead message replaces everything queued about the subject.
        """
        keys = self._broadcast_keys.setdefault(subject, set())
        if isinstance(message, Suspect):
            key = f"{subject}|suspect|{message.accuser}"
        else:
            key = f"{subject}|state"
            for old in keys:
                self._broadcasts.pop(old, None)
            keys.clear()
        keys.add(key)
        self._broadcasts[key] = _Broadcast(key, message, message_size(message))

    def _unqueue(self, subject: str) -> None:
        """Drop the queued news about `subject`'s state (its suspicions stay)."""
        key = f"{subject}|state"
        if self._broadcasts.pop(key, None) is not None:
            keys = self._broadcast_keys[subject]
            keys.discard(key)
            if not keys:
                del self._broadcast_keys[subject]

    def _take_broadcasts(self, budget: int) -> list[Message]:
        limit = self._retransmit_limit()
        chosen: list[Message] = []
        for broadcast in sorted(self._broadcasts.values(), key=lambda b: b.transmits):
            if broadcast.size > budget:
                continue
            budget -= broadcast.size
            chosen.append(broadcast.message)
            broadcast.transmits += 1
            if broadcast.transmits >= limit:
                del self._broadcasts[broadcast.key]
                subject = broadcast.key.partition("|")[0]
                keys = self._broadcast_keys.get(subject)
                if keys is not None:
                    keys.discard(broadcast.key)
                    if not keys:
                        del self._broadcast_keys[subject]
        return chosen

    def _gossip(self, now: float) -> None:
        if not self._broadcasts:
            return
        targets = self._pick(self.config.gossip_nodes, live_only=False, now=now)
        for member in targets:
            messages = self._take_broadcasts(self.config.max_gossip_bytes)
            if not messages:
                break
            # Not piggybacked again: that took every broadcast a second time for the same frame,
            # so the retransmit limit ran out after two targets and the third (in a small
            # cluster, always the member that joined last) never heard the news from us.
            self._send(member, messages, piggyback=False)

    def _push_pull(self, now: float) -> None:
        """Periodic anti-entropy with one member: a hash of our full state, which costs the same
        whatever the cluster's size; full states are exchanged only if the partner's differs."""
        partners = self._pick(1, live_only=True)
        if partners:
            self._send(partners[0], [PushPullSummary(self._state_digest())])

    def _state_digest(self) -> bytes:
        """A hash of everything a full push-pull carries, independent of dict order."""
        members = sorted(
            (m.name, m.addr, m.incarnation, int(m.status), sorted(m.meta.items())) for m in self.members.values()
        )
        data = msgspec.msgpack.encode([members, sorted(self.revoked.items())])
        return hashlib.blake2b(data, digest_size=16).digest()

    def _push_pull_interval(self) -> float:
        # memberlist's scaling: clusters beyond 32 members sync proportionally less often.
        n = len(self.members)
        scale = max(1.0, math.ceil(math.log2(n) - math.log2(32)) + 1) if n > 32 else 1.0
        return self.config.push_pull_interval * scale

    def _reconnect(self, now: float) -> None:
        """Try a full-state exchange with one dead member: how the two sides of a healed partition
        find each other again (the side that answers learns it was declared dead and refutes)."""
        dead = [m for m in self.members.values() if m.status == Status.DEAD and m.name != self.name]
        if dead:
            member = self._rng.choice(dead)
            self._send(member, [PushPull(self._states(), revoked=self._revocations())], piggyback=False)

    def _reap(self, now: float) -> None:
        for name, at in list(self._joins_answered.items()):
            if now - at >= JOIN_RETRY_INTERVAL:
                del self._joins_answered[name]
        for name, member in list(self.members.items()):
            if name == self.name or member.status not in (Status.DEAD, Status.LEFT):
                continue
            keep = self.config.left_reap_after if member.status == Status.LEFT else self.config.dead_reap_after
            if now - member.changed_at >= keep:
                del self.members[name]
                self._others = None
                self._events.append(Event(EventKind.REAPED, name, now, member.incarnation))

    # -- helpers --------------------------------------------------------------------------

    def _pick(self, count: int, *, live_only: bool, now: float | None = None, exclude: str = "") -> list[Member]:
        """Up to `count` random other live members; with live_only False, maybe a recently dead one.

        Gossiping now and then to members that just died helps one that was wrongly declared
        dead hear it and refute (memberlist's "gossip to the dead").
        """
        pool = self._live_others()
        if exclude:
            pool = [m for m in pool if m.name != exclude]
        chosen = list(pool) if len(pool) <= count else self._rng.sample(pool, count)
        if not live_only and now is not None and self._recently_dead:
            window = self.config.probe_interval * 10
            for name, since in list(self._recently_dead.items()):
                if now - since >= window or self.members.get(name) is None:
                    del self._recently_dead[name]
            if self._recently_dead and self._rng.random() < 0.2:
                member = self.members.get(self._rng.choice(list(self._recently_dead)))
                if member is not None and member.status == Status.DEAD:
                    chosen.append(member)
        return chosen

    def _send(self, member: Member, messages: list[Message], *, piggyback: bool = True) -> None:
        if piggyback:
            budget = self.config.max_piggyback_bytes - sum(message_size(m) for m in messages)
            messages = messages + self._take_broadcasts(budget)
        self._outbox.append(Outgoing(member.name, member.addr, self._frame(messages)))

    def _send_named(self, name: str, messages: list[Message]) -> None:
        member = self.members.get(name)
        if member is not None:
            self._send(member, messages)

    def _send_to_addr(self, addr: str, messages: list[Message]) -> None:
        self._outbox.append(Outgoing(None, addr, self._frame(messages)))

    def _frame(self, messages: list[Message]) -> Frame:
        # Our address only where the receiver may not know us yet (a join, a full sync):
        # everything else is answered by name over the connection it came in on.
        full_sync = any(isinstance(m, PushPull) for m in messages)
        return Frame(self.name, messages, self.addr if full_sync else "")

    def _states(self) -> list[MemberState]:
        return [m.state() for m in self.members.values()]

    def _revocations(self) -> list[Revoke]:
        return [Revoke(fp, name) for fp, name in self.revoked.items()]

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq
