"""A simulated network for configuration replication: how fast a change reaches a big cluster.

The real `ConfigReplicator` of every node runs here on virtual time, each over an in-memory
map with the same last-writer-wins rule as `ConfigStore`, on a network with latency, jitter
and loss (every message dropped independently: harsher than the TCP connections it rides on
in production). It answers one question for tests and `bench/cluster.py`: the time from a
write on one node until a given share of all nodes holds it, for sizes that real processes
cannot reach on one machine.

Left out: membership (every node knows every other from the start; `sim.Simulator` covers
SWIM), crashes and partitions (the integration tests cover those with real nodes), and
message sizes and bandwidth.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
from collections.abc import Callable
from dataclasses import dataclass

from appliance.cluster.messages import Message
from appliance.cluster.replication import ConfigReplicator, Peer
from appliance.cluster.sim import NetworkModel


class MemoryConfigMap:
    """The configuration map in a dict: last writer wins on version strings, tombstones kept."""

    def __init__(self) -> None:
        self._entries: dict[tuple[str, str], tuple[bytes, str, bool]] = {}
        self._listeners: list[Callable[[str, str, bool], None]] = []

    def versions(self) -> list[tuple[str, str, str]]:
        return [(kind, key, version) for (kind, key), (_, version, _) in sorted(self._entries.items())]

    def entry(self, kind: str, key: str) -> tuple[bytes, str, bool] | None:
        return self._entries.get((kind, key))

    def merge(self, kind: str, key: str, value: bytes, version: str, *, deleted: bool = False) -> bool:
        current = self._entries.get((kind, key))
        if current is not None and current[1] >= version:
            return False
        self._entries[(kind, key)] = (b"" if deleted else value, version, deleted)
        for listener in self._listeners:
            listener(kind, key, False)
        return True

    def put(self, kind: str, key: str, value: bytes, version: str) -> None:
        """A local write (the caller supplies the version)."""
        self._entries[(kind, key)] = (value, version, False)
        for listener in self._listeners:
            listener(kind, key, True)

    def on_change(self, listener: Callable[[str, str, bool], None]) -> None:
        self._listeners.append(listener)


@dataclass(frozen=True)
class SpreadResult:
    seconds: float | None  # None: the share was not reached before the time limit
    messages: int  # every message sent, delivered or not, until then


class ConfigSimulator:
    """`size` replicators on a simulated network, all knowing each other."""

    def __init__(self, size: int, *, network: NetworkModel | None = None, seed: int = 1) -> None:
        self.network = network or NetworkModel()
        self.rng = random.Random(seed)  # noqa: S311 - a seeded simulation, not security
        self.now = 0.0
        self.names = [f"n{i:04d}" for i in range(size)]
        self.maps: dict[str, MemoryConfigMap] = {}
        self.replicators: dict[str, ConfigReplicator] = {}
        self.sent = 0
        self._queue: list[tuple[float, int, str, str, Message | None]] = []
        self._order = itertools.count()
        for name in self.names:
            self.maps[name] = MemoryConfigMap()
            self.replicators[name] = ConfigReplicator(
                self.maps[name],
                send=self._sender(name),
                peers=self._peers_of(name),
                rng=random.Random(self.rng.random()),  # noqa: S311
                now=self.now,
            )
            self._push(self.replicators[name].next_sync, "tick", name, "", None)

    def _sender(self, name: str) -> Callable[[Peer, list[Message]], None]:
        def send(peer: Peer, messages: list[Message]) -> None:
            for message in messages:
                self.sent += 1
                if self.rng.random() < self.network.loss:
                    continue
                delay = self.network.latency + self.rng.uniform(0, self.network.jitter)
                self._push(self.now + delay, "deliver", peer[0], name, message)

        return send

    def _peers_of(self, name: str) -> Callable[[], list[Peer]]:
        peers = [(other, other) for other in self.names if other != name]
        return lambda: peers

    def _push(self, at: float, kind: str, node: str, sender: str, message: Message | None) -> None:
        heapq.heappush(self._queue, (at, next(self._order), kind, node + "\0" + sender, message))

    def write(self, origin: str, key: str) -> None:
        """A local write of `user/key` on `origin`, versioned by virtual time."""
        version = f"{int(self.now * 1000) + 1:013x}.0000.{origin}"
        self.maps[origin].put("user", key, b"value", version)

    def holders(self, key: str) -> int:
        return sum(1 for m in self.maps.values() if m.entry("user", key) is not None)

    def spread_time(self, origin: str, key: str, *, coverage: float = 0.9999, limit: float = 60.0) -> SpreadResult:
        """Write on `origin`, then run until `coverage` of the nodes hold the write."""
        needed = math.ceil(coverage * len(self.names))
        start, sent_before = self.now, self.sent
        self.write(origin, key)
        have = {origin}
        while self._queue and self._queue[0][0] <= start + limit:
            at, _, kind, nodes, message = heapq.heappop(self._queue)
            self.now = at
            node, sender = nodes.split("\0")
            replicator = self.replicators[node]
            if kind == "tick":
                replicator.tick(at)
                self._push(replicator.next_sync, "tick", node, "", None)
                continue
            assert message is not None
            replicator.handle(at, (sender, sender), message)
            if node not in have and self.maps[node].entry("user", key) is not None:
                have.add(node)
                if len(have) >= needed:
                    return SpreadResult(self.now - start, self.sent - sent_before)
        return SpreadResult(None, self.sent - sent_before)
