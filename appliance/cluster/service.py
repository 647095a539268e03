"""Cluster membership on a running node: the SWIM core driven by the mTLS transport.

`ClusterService` owns one `Swim` and one `GossipTransport`. It ticks the core when its next
deadline comes, feeds it every frame and lost connection, sends what it queues, and acts on
what it reports: membership changes are logged, audited and counted; revocations are
persisted and cut at the transport; a peer's certificate is accepted at the handshake only if
the certificate registry (`identity/registry.py`) holds it and it is not revoked, where a
certificate this node has not heard of yet waits for a fresh pull of the configuration
before it is refused (a node admitted a moment ago dials before the rumour of its
registration reached everyone); this node's incarnation is persisted so that a restart
comes back with a higher one (peers then accept it at once instead of waiting for a refute),
and so are the gossip addresses of the members, the seeds of the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import msgspec
from cryptography import x509
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from appliance.audit.log import AuditLog
from appliance.cluster.authority import Authorities
from appliance.cluster.messages import (
    ConfigMessage,
    Frame,
    Message,
    Ping,
    StateDelta,
    StateDigest,
    StateSummary,
    Status,
    encode_frame,
)
from appliance.cluster.nodestate import NodeStateReplicator, NodeStateStore
from appliance.cluster.replication import ConfigReplicator
from appliance.cluster.swim import Event, EventKind, GossipTuning, Member, Swim
from appliance.cluster.transport import GossipTransport, PeerCert
from appliance.identity.registry import REVOCATION_KIND, UNKNOWN, CertRegistry
from appliance.store.config import ConfigStore
from appliance.store.database import Database

log = logging.getLogger(__name__)

INCARNATION_KEY = "incarnation"
SEEDS_KEY = "gossip_seeds"
# How long a handshake with a certificate this node has not heard of waits for the registry
# entry (a pull is asked for at once; rumours usually bring it within milliseconds).
REGISTRY_WAIT_SECONDS = 3.0
REGISTRY_POLL_SECONDS = 0.02
LEAVE_GRACE_SECONDS = 0.5
_AUDITED = {EventKind.JOINED, EventKind.DEAD, EventKind.LEFT, EventKind.REVOKED, EventKind.REAPED}


class NodeMember(msgspec.Struct, frozen=True, kw_only=True):
    """A cluster member as `GET /api/v1/nodes` reports it."""

    name: str
    state: str
    incarnation: int
    gossip_address: str
    api_address: str
    version: str
    last_change: float


@dataclass(frozen=True)
class ClusterSettings:
    name: str
    cluster_id: str
    listen_host: str
    listen_port: int
    advertise: str  # host:port peers dial for gossip
    meta: dict[str, str]
    seeds: list[str]
    gossip: GossipTuning  # SWIM timings and fan-outs


STALL_SECONDS = 0.1  # a wake-up this late means the process was not running
STALL_LOG_SECONDS = 0.5
# How long a summary waits for a membership frame to ride along with. A node sends ~1.4
# membership frames a second at idle (its probes and its answers to others'), so a summary
# almost never goes alone, which would cost two packets (a frame and its TCP ACK).
RIDE_WAIT_SECONDS = 2.0


class ClusterService(Collector):
    """Runs membership for this node; also a Prometheus collector of its state."""

    def __init__(
        self,
        settings: ClusterSettings,
        *,
        server_context: ssl.SSLContext,
        client_context: ssl.SSLContext,
        db: Database,
        config_store: ConfigStore,
        audit: AuditLog,
        ca_cert: x509.Certificate,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.settings = settings
        self._db = db
        self._store = config_store
        self._audit = audit
        self._loop_time = time.monotonic
        self.registry = CertRegistry(config_store)
        self.authorities = Authorities(config_store, ca_cert, settings.cluster_id)
        stored = db.get_meta(INCARNATION_KEY)
        incarnation = int(stored) + 1 if stored is not None else 0
        self.swim = Swim(
            settings.name,
            settings.advertise,
            config=settings.gossip,
            rng=random.SystemRandom(),
            now=self._loop_time(),
            incarnation=incarnation,
            meta=settings.meta,
        )
        # Probe rounds start on the wall clock (alike across nodes where NTP runs); the nodes
        # then keep them in step among themselves.
        self.swim.clock_offset = time.time() - self._loop_time()
        for fingerprint, raw in config_store.items(REVOCATION_KIND):
            self.swim.revoked[fingerprint] = raw.decode()
        self._save_incarnation()
        self.transport = GossipTransport(
            name=settings.name,
            server_context=server_context,
            client_context=client_context,
            on_frame=self._on_frame,
            on_lost=self._on_lost,
            is_revoked=self.is_revoked,
            admit=self._admit_peer,
            write_deadline=min(0.2, settings.gossip.probe_timeout * 0.8),
        )
        self.replicator = ConfigReplicator(
            config_store,
            send=self._send_messages,
            peers=self._live_peers,
            rng=random.SystemRandom(),
            now=self._loop_time(),
            ride=self._ride,
        )
        self.node_state = NodeStateStore(db, settings.name)
        self.state_replicator = NodeStateReplicator(
            self.node_state,
            send=self._send_messages,
            peers=self._live_peers,
            rng=random.SystemRandom(),
            now=self._loop_time(),
            ride=self._ride,
        )
        # Anti-entropy summaries waiting to ride along with the next membership frame.
        self._riders: list[Message] = []
        self._riders_since = 0.0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopped = False
        self._checks: set[asyncio.Task[None]] = set()
        self._event_counts: Counter[str] = Counter()
        self._sent_counts: Counter[str | int | None] = Counter()  # messages sent, by wire tag
        self._stalls = 0
        self._listeners: list[Callable[[Event], None]] = []
        if registry is not None:
            registry.register(self)

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        await self.transport.start(self.settings.listen_host, self.settings.listen_port)
        seeds = list(self.settings.seeds)
        stored = self._db.get_meta(SEEDS_KEY)
        if stored:
            seeds.extend(s for s in stored.split(",") if s and s not in seeds)
        if seeds:
            self.swim.join(self._loop_time(), seeds)
        self._task = asyncio.create_task(self._run(), name="cluster-membership")
        log.info(
            "gossip listening",
            extra={
                "address": f"{self.settings.listen_host}:{self.transport.port}",
                "advertise": self.settings.advertise,
                "seeds": ",".join(seeds),
            },
        )

    async def stop(self, *, leave: bool = True) -> None:
        """Leave (announced, unless alone) and stop; a second call does nothing (a node about to
        reboot leaves early, appliance/node/power.py, and its service stops later as usual)."""
        if self._stopped:
            return
        self._stopped = True
        self._save_seeds()
        if leave and self._task is not None and self.swim.live_count() > 1:
            self.swim.leave(self._loop_time())
            self._flush()
            self._save_incarnation()
            await asyncio.sleep(LEAVE_GRACE_SECONDS)
        for task in [self._task, *self._checks]:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self.transport.stop()

    async def _run(self) -> None:
        woke_for = self._loop_time()
        while True:
            now = self._loop_time()
            lag = now - woke_for
            if lag > STALL_SECONDS:
                # This process did not run for `lag` seconds (CPU starvation, a blocking call,
                # a paused VM). Answers that arrived meanwhile are still unread: let them in
                # first, and do not judge probe or suspicion timeouts that ran out while this
                # node could not listen.
                for _ in range(3):
                    await asyncio.sleep(0)
                self.swim.stalled(self._loop_time(), lag)
                self._stalls += 1
                if lag > STALL_LOG_SECONDS:
                    log.warning("event loop stalled", extra={"seconds": round(lag, 3)})
                now = self._loop_time()
            self.swim.tick(now)
            self.replicator.tick(now)
            self.state_replicator.tick(now)
            self._flush()
            deadline = min(self.swim.next_deadline(), self.replicator.next_sync, self.state_replicator.next_sync)
            delay = max(0.0, deadline - self._loop_time())
            woke_for = self._loop_time() + delay  # an early wake by the event only lowers the lag
            self._wake.clear()
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a cancellation
            # that races with the event, and this loop would then never stop.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._wake.wait()

    # -- queries and commands -------------------------------------------------------------

    @property
    def cluster_id(self) -> str:
        return self.settings.cluster_id

    @property
    def joined(self) -> bool:
        return self.swim.joined

    def is_revoked(self, fingerprint: str) -> bool:
        return fingerprint in self.swim.revoked

    def cert_refusal(self, fingerprint: str, name: str | None, key: str | None = None) -> str | None:
        """Why a member certificate is refused (unregistered, revoked, removed name), or None."""
        if fingerprint in self.swim.revoked:
            return "revoked"
        return self.registry.refusal(fingerprint, name, time.time(), key)

    async def _admit_peer(self, peer: PeerCert) -> bool:
        """Accept a handshake's certificate? An unknown one waits for a pull of the configuration."""
        reason = self.cert_refusal(peer.fingerprint, peer.name, peer.key_id)
        if reason == UNKNOWN:
            self._pull_config()
            deadline = self._loop_time() + REGISTRY_WAIT_SECONDS
            while reason == UNKNOWN and self._loop_time() < deadline:
                await asyncio.sleep(REGISTRY_POLL_SECONDS)
                reason = self.cert_refusal(peer.fingerprint, peer.name, peer.key_id)
        if reason is not None:
            log.warning("refused a gossip peer's certificate", extra={"peer": peer.name, "reason": reason})
        return reason is None

    def _pull_config(self) -> None:
        """Ask a live peer (an authority if one is up) to compare configurations with us now."""
        peers = self._live_peers()
        if not peers:
            return
        authorities = set(self.authorities.names())
        preferred = [p for p in peers if p[0] in authorities] or peers
        self._send_messages(random.choice(preferred), [self.replicator.summary()])  # noqa: S311 - peer choice

    def member(self, name: str) -> Member | None:
        return self.swim.members.get(name)

    def live_names(self) -> list[str]:
        return sorted(m.name for m in self.swim.members.values() if m.status in (Status.ALIVE, Status.SUSPECT))

    def member_api(self, name: str) -> tuple[str, str] | None:
        """(state, API address) of a member, for forwarding; None if it is not one."""
        member = self.swim.members.get(name)
        if member is None:
            return None
        return member.status.name.lower(), member.meta.get("api", "")

    def members(self) -> list[NodeMember]:
        now_mono = self._loop_time()
        now_wall = time.time()
        return [
            NodeMember(
                name=m.name,
                state=m.status.name.lower(),
                incarnation=m.incarnation,
                gossip_address=m.addr,
                api_address=m.meta.get("api", ""),
                version=m.meta.get("version", ""),
                last_change=round(now_wall - (now_mono - m.changed_at), 3),
            )
            for m in sorted(self.swim.members.values(), key=lambda m: m.name)
        ]

    def remove(self, name: str) -> list[str]:
        """Revoke every certificate of a member everywhere, and its name, and declare it dead;
        it leaves the authority set. Returns the fingerprints revoked."""
        member = self.swim.members.get(name)
        announced = member.meta.get("cert", "") if member is not None else ""
        fingerprints = self.registry.fingerprints_of(name)
        if announced and announced not in fingerprints:
            fingerprints.append(announced)
        if not fingerprints:
            raise KeyError(name)
        self.registry.revoke_name(name, by=self.settings.name, now=time.time())
        self.authorities.withdraw(name)
        for fingerprint in fingerprints:
            self.swim.revoke(self._loop_time(), fingerprint, name)
        self._flush()
        self._wake.set()
        return fingerprints

    def on_event(self, listener: Callable[[Event], None]) -> None:
        """Call `listener(event)` after each membership event (joined, dead, left...); it must be
        quick and must not raise (reconcilers just note that they should run)."""
        self._listeners.append(listener)

    def publish(self, values: dict[str, bytes]) -> None:
        """Update keys of this node's own key space; peers hear of changes at once."""
        self.node_state.set(values)
        self._flush()

    def published(self) -> dict[str, dict[str, bytes]]:
        """Every member's key space as this node holds it (its own included)."""
        return self.node_state.owners()

    def name_in_use(self, name: str) -> bool:
        member = self.swim.members.get(name)
        if member is None or member.status == Status.LEFT:
            return False
        return not self.is_revoked(member.meta.get("cert", ""))

    def gossip_seeds(self) -> list[str]:
        return [m.addr for m in self.swim.members.values() if m.status in (Status.ALIVE, Status.SUSPECT)]

    # -- transport callbacks --------------------------------------------------------------

    def _on_frame(self, sender: str, frame: Frame) -> None:
        now = self._loop_time()
        joining = not self.swim.joined
        membership: list[Message] = [m for m in frame.messages if not isinstance(m, ConfigMessage)]
        if len(membership) == len(frame.messages):
            self.swim.receive(now, sender, frame)
        else:
            if membership:
                self.swim.receive(now, sender, Frame(frame.sender, membership, frame.addr))
            member = self.swim.members.get(sender)
            if member is not None:
                for message in frame.messages:
                    if isinstance(message, StateDelta | StateDigest | StateSummary):
                        self.state_replicator.handle(now, (sender, member.addr), message)
                    elif isinstance(message, ConfigMessage):
                        self.replicator.handle(now, (sender, member.addr), message)
        if joining and self.swim.joined:
            sent_at = self.swim.join_sent_at
            log.info(
                "gossip joined",
                extra={
                    "via": sender,
                    "attempts": self.swim.join_attempts,
                    # How long ago the answered request went out: when this join began.
                    "request_age": round(now - sent_at, 3) if sent_at is not None else None,
                },
            )
        self._flush()
        self._wake.set()

    def _live_peers(self) -> list[tuple[str, str]]:
        return [
            (m.name, m.addr)
            for m in self.swim.members.values()
            if m.name != self.settings.name and m.status in (Status.ALIVE, Status.SUSPECT)
        ]

    def _send_messages(self, peer: tuple[str, str], messages: list[Message]) -> None:
        name, addr = peer
        self._send(name, addr, Frame(self.settings.name, messages))

    def _send(self, name: str | None, addr: str, frame: Frame) -> None:
        for message in frame.messages:
            self._sent_counts[type(message).__struct_config__.tag] += 1
        self.transport.send(name, addr, encode_frame(frame))

    def _on_lost(self, name: str) -> None:
        self.swim.connection_lost(self._loop_time(), name)
        self._flush()
        self._wake.set()
        member = self.swim.members.get(name)
        if member is not None:
            task = asyncio.create_task(self._check_refused(name, member.addr), name=f"refused-{name}")
            self._checks.add(task)
            task.add_done_callback(self._checks.discard)

    async def _check_refused(self, name: str, addr: str) -> None:
        if await self.transport.refused(addr):
            self.swim.connection_refused(self._loop_time(), name)
            self._flush()
            self._wake.set()

    def _ride(self, message: Message) -> None:
        if not self._riders:
            self._riders_since = self._loop_time()
        # A newer summary of the same map supersedes one still waiting.
        self._riders = [m for m in self._riders if type(m) is not type(message)]
        self._riders.append(message)

    def _flush(self) -> None:
        for out in self.swim.take_outbox():
            frame = out.frame
            if self._riders and out.name is not None and out.name != self.settings.name:
                member = self.swim.members.get(out.name)
                if member is not None and member.status in (Status.ALIVE, Status.SUSPECT):
                    frame = Frame(frame.sender, [*frame.messages, *self._riders], frame.addr)
                    self._riders = []
            if (
                out.name is not None
                and not self.transport.connected(out.name)
                and any(isinstance(m, Ping) for m in frame.messages)
            ):
                self.swim.dialling(out.name, self.transport.dial_timeout)
            self._send(out.name, out.addr, frame)
        if self._riders and self._loop_time() - self._riders_since > RIDE_WAIT_SECONDS:
            peers = self._live_peers()  # no membership frame went out meanwhile: send them alone
            if peers:
                self._send_messages(random.choice(peers), self._riders)  # noqa: S311 - peer choice
            self._riders = []
        for event in self.swim.take_events():
            self._handle_event(event)

    def _handle_event(self, event: Event) -> None:
        self._event_counts[event.kind.value] += 1
        for listener in self._listeners:
            try:
                listener(event)
            except Exception:
                log.exception("a membership event listener failed")
        if event.kind == EventKind.REFUTED:
            self._save_incarnation()
            log.info("refuted a suspicion about this node", extra={"incarnation": event.incarnation})
            return
        if event.kind == EventKind.REVOKED:
            if self._store.get(REVOCATION_KIND, event.detail) is None:
                self._store.put(REVOCATION_KIND, event.detail, event.name.encode())
            self.transport.cut(event.detail)
            self.node_state.forget(event.name)
        if event.kind == EventKind.JOINED:
            self._save_seeds()
            joined = self.swim.members.get(event.name)
            if joined is not None and self.transport.connected(joined.name):
                # Only over a connection that is open anyway. Dialling every member that joins
                # made every node handshake with a newcomer the moment it appeared: when many
                # start at once, a storm of TLS dials that starved the newcomers and led to
                # false suspicions. The newcomer's anti-entropy with its seed brings the rest.
                self.state_replicator.introduce((joined.name, joined.addr))
        level = logging.WARNING if event.kind in (EventKind.DEAD, EventKind.SUSPECT) else logging.INFO
        log.log(level, f"member {event.kind.value}", extra={"member": event.name, "detail": event.detail})
        if event.kind in _AUDITED:
            self._audit.append(
                user="cluster",
                source=self.settings.name,
                action=f"cluster.member.{event.kind.value}",
                target=event.name,
                outcome="success",
                detail=event.detail or f"incarnation {event.incarnation}",
            )

    def _save_incarnation(self) -> None:
        self._db.set_meta(INCARNATION_KEY, str(self.swim.incarnation))

    def _save_seeds(self) -> None:
        seeds = [addr for addr in self.gossip_seeds() if addr != self.settings.advertise]
        if seeds:
            self._db.set_meta(SEEDS_KEY, ",".join(sorted(seeds)[:16]))

    # -- metrics --------------------------------------------------------------------------

    def collect(self) -> Iterator[Metric]:
        by_state: Counter[str] = Counter(m.status.name.lower() for m in self.swim.members.values())
        members = GaugeMetricFamily(
            "debvisor_cluster_members", "Members by state, as this node sees them", labels=["state"]
        )
        for state in ("alive", "suspect", "dead", "left"):
            members.add_metric([state], by_state.get(state, 0))
        yield members
        events = CounterMetricFamily("debvisor_cluster_events", "Membership events seen by this node", labels=["kind"])
        for kind, count in sorted(self._event_counts.items()):
            events.add_metric([kind], count)
        yield events
        transport = CounterMetricFamily("debvisor_gossip", "Gossip transport counters", labels=["counter"])
        for counter, value in vars(self.transport.stats).items():
            transport.add_metric([counter], value)
        yield transport
        sent = CounterMetricFamily(
            "debvisor_gossip_messages_sent", "Gossip messages sent by this node, by type", labels=["type"]
        )
        for tag, count in sorted(self._sent_counts.items(), key=lambda item: str(item[0])):
            sent.add_metric([str(tag)], count)
        yield sent
        yield CounterMetricFamily(
            "debvisor_cluster_loop_stalls", "Times the membership loop woke over 0.1 s late", value=self._stalls
        )
        yield GaugeMetricFamily(
            "debvisor_cluster_awareness", "Lifeguard local health score (0 is healthy)", self.swim.awareness
        )

    def describe(self) -> Iterator[Metric]:
        return iter(())
