"""Configuration-map replication between nodes: rumours, the cheap summary, digests, tombstone GC.

Each node is a real `ConfigStore` on SQLite in a temporary dir and a `ConfigReplicator`; the
"network" is a queue of (sender, receiver, message) delivered in order, with a switch to drop
everything to or from one node (a partition).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

from appliance.cluster.config_sim import ConfigSimulator
from appliance.cluster.messages import ConfigDigest, ConfigPush, ConfigSummary, Message, message_size
from appliance.cluster.replication import ConfigReplicator, Peer, rumour_fanout
from appliance.cluster.sim import NetworkModel
from appliance.store.config import ConfigStore
from appliance.store.database import Database
from appliance.store.hlc import HybridClock, Timestamp

START = 1_800_000_000.0


@dataclass
class Net:
    """Nodes by name, the frames in flight, and what was sent (for byte counts)."""

    now: float = START
    nodes: dict[str, tuple[ConfigStore, ConfigReplicator]] = field(default_factory=dict)
    queue: list[tuple[str, str, Message]] = field(default_factory=list)
    sent: list[Message] = field(default_factory=list)
    cut: set[str] = field(default_factory=set)

    def add(self, root: Path, name: str, *, grace: float = 3600.0) -> ConfigStore:
        store = ConfigStore(
            Database.create(root / f"{name}.db"), HybridClock(name, self.wall), tombstone_grace=grace, wall=self.wall
        )

        def send(peer: Peer, messages: list[Message]) -> None:
            for message in messages:
                self.sent.append(message)
                self.queue.append((name, peer[0], message))

        def peers() -> list[Peer]:
            return [(other, other) for other in self.nodes if other != name]

        replicator = ConfigReplicator(store, send=send, peers=peers, rng=random.Random(name), now=self.now)
        self.nodes[name] = (store, replicator)
        return store

    def wall(self) -> float:
        return self.now

    def deliver(self, limit: int = 10_000) -> int:
        """Deliver until nothing is in flight; returns how many messages arrived."""
        arrived = 0
        for _ in range(limit):
            if not self.queue:
                return arrived
            sender, receiver, message = self.queue.pop(0)
            if sender in self.cut or receiver in self.cut:
                continue
            self.nodes[receiver][1].handle(self.now, (sender, sender), message)
            arrived += 1
        raise AssertionError("messages still in flight after the delivery limit")

    def run(self, seconds: float, step: float = 0.5) -> None:
        """Advance time, ticking every replicator and delivering after each step."""
        for _ in range(round(seconds / step)):
            self.now += step
            for _, replicator in self.nodes.values():
                replicator.tick(self.now)
            self.deliver()

    def maps(self) -> dict[str, list[tuple[str, bytes, str, bool]]]:
        return {name: store.versioned_items("user") for name, (store, _) in self.nodes.items()}


def test_a_write_reaches_every_node_by_rumour_at_once(tmp_path: Path) -> None:
    net = Net()
    stores = [net.add(tmp_path, f"n{i}") for i in range(5)]
    stores[0].put("user", "alice", b"v1")
    net.deliver()
    assert all(store.get("user", "alice") == b"v1" for store in stores)


def test_in_step_nodes_exchange_only_a_small_summary(tmp_path: Path) -> None:
    net = Net()
    first = net.add(tmp_path, "a")
    net.add(tmp_path, "b")
    for i in range(500):
        first.put("user", f"user-{i:03d}", b"x" * 40)
    net.deliver()
    net.sent.clear()
    net.run(20.0)
    kinds = {type(m) for m in net.sent}
    assert kinds == {ConfigSummary}, kinds
    assert max(message_size(m) for m in net.sent) < 40  # whatever the map's size (500 entries here)


def test_a_node_that_missed_writes_catches_up_through_the_summary(tmp_path: Path) -> None:
    net = Net()
    stores = {name: net.add(tmp_path, name) for name in ("a", "b", "c")}
    net.cut.add("c")
    stores["a"].put("user", "alice", b"from-a")
    stores["c"].put("user", "carol", b"from-c")
    stores["b"].put("user", "bob", b"from-b")
    net.deliver()
    assert stores["c"].get("user", "alice") is None
    net.cut.clear()
    net.run(10.0)
    maps = net.maps()
    assert maps["a"] == maps["b"] == maps["c"]
    assert [key for key, *_ in maps["a"]] == ["alice", "bob", "carol"]
    assert any(isinstance(m, ConfigDigest) for m in net.sent)  # the summary mismatch led to digests
    assert any(isinstance(m, ConfigPush) for m in net.sent)


def test_a_delete_made_during_a_partition_wins_over_the_older_value(tmp_path: Path) -> None:
    net = Net()
    a, b = net.add(tmp_path, "a"), net.add(tmp_path, "b")
    a.put("user", "alice", b"v1")
    net.deliver()
    net.cut.add("b")
    net.now += 1
    a.delete("user", "alice")
    net.deliver()
    assert b.get("user", "alice") == b"v1"
    net.cut.clear()
    net.run(10.0)
    assert a.get("user", "alice") is None
    assert b.get("user", "alice") is None


def test_tombstones_are_collected_after_the_grace_period_and_never_return(tmp_path: Path) -> None:
    net = Net()
    a, b = net.add(tmp_path, "a", grace=60.0), net.add(tmp_path, "b", grace=60.0)
    a.put("user", "alice", b"v1")
    a.put("user", "bob", b"v1")
    net.deliver()
    a.delete("user", "alice")
    net.deliver()
    assert ("user", "alice") in {(k, key) for k, key, _ in b.versions()}  # the tombstone is listed while fresh

    net.run(61.0)
    assert ("user", "alice") not in {(k, key) for k, key, _ in a.versions()}  # expired: not compared any more
    assert a.purge_tombstones() == 1
    assert a.entry("user", "alice") is None
    # b has not purged yet: the maps still compare equal, so nothing is sent back and forth.
    net.sent.clear()
    net.run(10.0)
    assert {type(m) for m in net.sent} == {ConfigSummary}
    assert b.purge_tombstones() == 1
    assert a.get("user", "bob") == b.get("user", "bob") == b"v1"


def test_an_expired_tombstone_from_a_late_peer_is_not_taken(tmp_path: Path) -> None:
    net = Net()
    store = net.add(tmp_path, "a", grace=60.0)
    old = Timestamp(int((net.now - 120) * 1000), 0, "z").encode()
    fresh = Timestamp(int((net.now - 10) * 1000), 0, "z").encode()
    assert store.merge("user", "gone", b"", old, deleted=True) is False
    assert store.entry("user", "gone") is None
    assert store.merge("user", "recent", b"", fresh, deleted=True) is True
    assert store.merge("user", "live", b"v", old) is True  # a live value is never too old


def test_rumour_fanout_grows_with_the_cluster() -> None:
    assert [rumour_fanout(n) for n in (1, 5, 32, 1000, 2000)] == [3, 4, 6, 9, 10]


def test_a_change_reaches_a_thousand_simulated_nodes_even_at_25_percent_loss() -> None:
    for loss in (0.0, 0.25):
        sim = ConfigSimulator(1000, network=NetworkModel(loss=loss), seed=3)
        sim.spread_time("n0000", "warm-up", limit=3.0)
        result = sim.spread_time("n0001", "alice", coverage=1.0, limit=10.0)
        assert result.seconds is not None, f"not everywhere after 10 s at {loss:.0%} loss"
        assert sim.holders("alice") == 1000
        assert result.seconds < (0.05 if loss == 0 else 5.0), result
        assert result.messages < 20 * 1000  # the rumour is O(n log n) messages, not O(n^2)


def test_with_a_ride_the_summary_waits_for_the_next_frame_instead_of_its_own(tmp_path: Path) -> None:
    riders: list[Message] = []
    sent: list[tuple[Peer, list[Message]]] = []
    store = ConfigStore(Database.create(tmp_path / "a.db"), HybridClock("a"))
    replicator = ConfigReplicator(
        store,
        send=lambda peer, messages: sent.append((peer, messages)),
        peers=lambda: [("b", "b:7946")],
        rng=random.Random(1),
        now=0.0,
        ride=riders.append,
    )
    replicator.tick(replicator.next_sync)
    assert sent == []
    assert riders == [replicator.summary()]
