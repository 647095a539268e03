"""A simulated network for the SWIM core: virtual time, latency, loss, partitions, crashes.

The very `Swim` objects that run in `debvisor serve` are driven here by a discrete-event
loop instead of sockets and clocks, so a thousand-node cluster runs in one process in
seconds. Used by the tests (convergence, detection, no false deaths under loss, partitions)
and by `bench/gossip.py`.

Model: every frame is delivered after `latency` plus uniform jitter, or dropped with
probability `loss` (independently per frame, as if the transport had no retransmission:
harsher than TCP). A node can be *killed* (its process dies: peers holding connections to it
learn at once, as from a TCP reset) or *silenced* (its host vanishes: nothing tells anyone);
partitions drop every frame between groups.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import cast

from appliance.cluster.messages import Frame, Status, encode_frame
from appliance.cluster.swim import Event, EventKind, GossipTuning, Member, Swim


@dataclass
class NetworkModel:
    latency: float = 0.0005
    jitter: float = 0.0005
    loss: float = 0.0


@dataclass
class NodeStats:
    frames_sent: int = 0
    bytes_sent: int = 0


@dataclass(order=True)
class _Item:
    at: float
    order: int
    kind: str = field(compare=False)
    node: str = field(compare=False)
    payload: object = field(compare=False, default=None)


class Simulator:
    """A cluster of `Swim` nodes on a simulated network."""

    def __init__(
        self,
        size: int,
        *,
        config: GossipTuning | None = None,
        network: NetworkModel | None = None,
        seed: int = 1,
        measure_bytes: bool = False,
        on_event: Callable[[str, Event], None] | None = None,
    ) -> None:
        self.config = config or GossipTuning()
        self.network = network or NetworkModel()
        self.rng = random.Random(seed)  # noqa: S311 - a seeded simulation, not security
        self.now = 0.0
        self.measure_bytes = measure_bytes
        self.on_event = on_event
        self.nodes: dict[str, Swim] = {}
        self.stats: dict[str, NodeStats] = {}
        self.down: set[str] = set()
        self.partition_of: dict[str, int] = {}
        self.events: list[tuple[str, Event]] = []
        self._queue: list[_Item] = []
        self._order = 0
        self._scheduled: dict[str, float] = {}
        for i in range(size):
            self.add_node(f"n{i:04d}")

    # -- building the cluster ---------------------------------------------------------------

    def add_node(self, name: str, incarnation: int = 0) -> Swim:
        node = Swim(
            name,
            name,
            config=self.config,
            rng=random.Random(self.rng.random()),  # noqa: S311
            now=self.now,
            incarnation=incarnation,
        )
        self.nodes[name] = node
        self.stats.setdefault(name, NodeStats())
        self.down.discard(name)
        self._schedule(name)
        return node

    def join_all(self, seed: str | None = None, spread: float = 1.0) -> None:
        """Every node joins through `seed` (the first node by default), starting over `spread` s."""
        first = seed or next(iter(self.nodes))
        for name in self.nodes:
            if name != first:
                at = self.now + self.rng.uniform(0, spread)
                self._push(at, "join", name, first)

    def preconverge(self) -> None:
        """Give every node a full, alive view of all others at once, as if they had joined.

        Joining a few thousand nodes through one seed is quadratic work that says nothing
        about dissemination; benchmarks of how fast news spreads start from here instead.
        """
        for name, node in self.nodes.items():
            for other in self.nodes:
                if other != name and other not in node.members:
                    node.members[other] = Member(other, other, 0, Status.ALIVE, {}, self.now)
            node._others = None
            node._joined = True
            self._schedule(name)

    def spread_time(self, origin: str, coverage: float = 0.9999, timeout: float = 60.0) -> float | None:
        """Seconds until `coverage` of the live nodes know `origin`'s next metadata update."""
        marker = f"{self.now:.6f}"
        node = self.nodes[origin]
        node.update_meta(self.now, {"marker": marker})
        self._flush(origin)
        start = self.now
        live = [n for n in self.live_nodes() if n != origin]
        needed = max(1, int(len(live) * coverage + 0.999999))

        def reached() -> bool:
            count = 0
            for name in live:
                member = self.nodes[name].members.get(origin)
                if member is not None and member.meta.get("marker") == marker:
                    count += 1
            return count >= needed

        if self.run_for(timeout, stop=reached, check_every=0.01):
            return self.now - start
        return None

    # -- faults -----------------------------------------------------------------------------

    def kill(self, name: str) -> None:
        """The node's process dies: peers' connections to it break now."""
        self.down.add(name)
        for other in self.nodes:
            if other not in self.down and self._reachable(other, name):
                self._push(self.now + self.network.latency, "lost", other, name)
                # the host still answers: a reconnect is refused a round trip later
                self._push(self.now + 3 * self.network.latency, "refused", other, name)

    def silence(self, name: str) -> None:
        """The node's host vanishes: no frame in or out, and no one is told."""
        self.down.add(name)

    def restart(self, name: str) -> Swim:
        """Bring a killed node back with a higher incarnation (as the service persists it)."""
        old = self.nodes[name]
        node = self.add_node(name, incarnation=old.incarnation + 1)
        self._push(self.now, "join", name, next(n for n in self.nodes if n != name and n not in self.down))
        return node

    def partition(self, groups: Iterable[Iterable[str]]) -> None:
        self.partition_of = {name: i for i, group in enumerate(groups) for name in group}

    def heal(self) -> None:
        self.partition_of = {}

    # -- running ----------------------------------------------------------------------------

    def run_until(self, t: float, stop: Callable[[], bool] | None = None, check_every: float = 0.01) -> bool:
        """Advance virtual time to `t`, or until `stop()` holds (checked every `check_every` s)."""
        next_check = self.now + check_every
        while self._queue and self._queue[0].at <= t:
            item = heapq.heappop(self._queue)
            if stop is not None and item.at >= next_check:
                self.now = next_check
                if stop():
                    return True
                next_check = item.at + check_every
            self.now = item.at
            self._dispatch(item)
        self.now = max(self.now, t)
        return stop() if stop is not None else False

    def run_for(self, seconds: float, stop: Callable[[], bool] | None = None, check_every: float = 0.01) -> bool:
        return self.run_until(self.now + seconds, stop, check_every)

    # -- observations -----------------------------------------------------------------------

    def view(self, name: str) -> dict[str, str]:
        return {n: m.status.name.lower() for n, m in self.nodes[name].members.items()}

    def live_nodes(self) -> list[str]:
        return [n for n in self.nodes if n not in self.down]

    def converged(self, expected_alive: set[str] | None = None) -> bool:
        """Every live node sees exactly `expected_alive` (default: the live nodes) as alive."""
        expected = expected_alive if expected_alive is not None else set(self.live_nodes())
        for name in self.live_nodes():
            alive = {n for n, m in self.nodes[name].members.items() if m.status.name == "ALIVE"}
            if alive != expected:
                return False
        return True

    def all_see(self, subject: str, statuses: set[str]) -> bool:
        return all(self.view(name).get(subject, "unknown") in statuses for name in self.live_nodes() if name != subject)

    def false_deaths(self, since: float = 0.0) -> list[tuple[str, Event]]:
        """Death events about nodes that were up when declared dead."""
        return [
            (observer, e)
            for observer, e in self.events
            if e.kind == EventKind.DEAD and e.at >= since and e.name not in self.down
        ]

    # -- internals --------------------------------------------------------------------------

    def _push(self, at: float, kind: str, node: str, payload: object = None) -> None:
        self._order += 1
        heapq.heappush(self._queue, _Item(at, self._order, kind, node, payload))

    def _schedule(self, name: str) -> None:
        at = max(self.now, self.nodes[name].next_deadline())
        if self._scheduled.get(name) == at:
            return
        if at <= self.now and self._scheduled.get(name) is None:
            at = self.now + 1e-6  # a deadline that a tick did not clear: never spin at one instant
        self._scheduled[name] = at
        self._push(at, "tick", name, at)

    def _dispatch(self, item: _Item) -> None:
        name = item.node
        if name in self.down:
            return
        node = self.nodes[name]
        if item.kind == "tick":
            if self._scheduled.get(name) != item.payload:
                return  # superseded by a later schedule
            del self._scheduled[name]
            node.tick(self.now)
        elif item.kind == "deliver":
            sender, frame = cast("tuple[str, Frame]", item.payload)
            node.receive(self.now, sender, frame)
        elif item.kind == "lost":
            node.connection_lost(self.now, str(item.payload))
        elif item.kind == "refused":
            node.connection_refused(self.now, str(item.payload))
        elif item.kind == "join":
            node.join(self.now, [str(item.payload)])
        self._flush(name)

    def _flush(self, name: str) -> None:
        node = self.nodes[name]
        for event in node.take_events():
            self.events.append((name, event))
            if self.on_event is not None:
                self.on_event(name, event)
        for out in node.take_outbox():
            stats = self.stats[name]
            stats.frames_sent += 1
            if self.measure_bytes:
                stats.bytes_sent += len(encode_frame(out.frame)) + 4
            target = out.name or out.addr
            if target in self.down or not self._reachable(name, target) or target not in self.nodes:
                continue
            if self.network.loss and self.rng.random() < self.network.loss:
                continue
            delay = self.network.latency + self.rng.uniform(0, self.network.jitter)
            self._push(self.now + delay, "deliver", target, (name, out.frame))
        self._schedule(name)

    def _reachable(self, a: str, b: str) -> bool:
        if not self.partition_of:
            return True
        return self.partition_of.get(a, -1) == self.partition_of.get(b, -1)
