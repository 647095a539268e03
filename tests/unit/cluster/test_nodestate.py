"""Per-node key spaces replicated by scuttlebutt: versions, rumours, digests, gap-free deltas."""

from __future__ import annotations

import random
from pathlib import Path

import msgspec

from appliance.cluster.messages import Message, StateDelta, StateDigest, StateEntry, StateSummary
from appliance.cluster.nodestate import NodeStateReplicator, NodeStateStore
from appliance.cluster.replication import Peer
from appliance.store.database import Database


class Net:
    def __init__(self) -> None:
        self.now = 0.0
        self.wall = 1_800_000_000.0
        self.nodes: dict[str, tuple[NodeStateStore, NodeStateReplicator]] = {}
        self.queue: list[tuple[str, str, Message]] = []
        self.sent: list[Message] = []
        self.cut: set[str] = set()

    def add(self, root: Path, name: str, max_delta_bytes: int = 64 * 1024) -> NodeStateStore:
        store = NodeStateStore(Database.create(root / f"{name}.db"), name, wall=lambda: self.wall)

        def send(peer: Peer, messages: list[Message]) -> None:
            for message in messages:
                self.sent.append(message)
                self.queue.append((name, peer[0], message))

        def peers() -> list[Peer]:
            return [(o, o) for o in self.nodes if o != name]

        replicator = NodeStateReplicator(
            store, send=send, peers=peers, rng=random.Random(name), now=self.now, max_delta_bytes=max_delta_bytes
        )
        self.nodes[name] = (store, replicator)
        return store

    def deliver(self) -> None:
        for _ in range(10_000):
            if not self.queue:
                return
            sender, receiver, message = self.queue.pop(0)
            if sender not in self.cut and receiver not in self.cut:
                self.nodes[receiver][1].handle(self.now, (sender, sender), message)
        raise AssertionError("still in flight")

    def run(self, seconds: float) -> None:
        for _ in range(int(seconds / 0.25)):
            self.now += 0.25
            for _, replicator in self.nodes.values():
                replicator.tick(self.now)
            self.deliver()


def test_an_owners_write_reaches_everyone_and_only_changes_spread(tmp_path: Path) -> None:
    net = Net()
    stores = [net.add(tmp_path, f"n{i}") for i in range(4)]
    assert len(stores[0].set({"facts": b"v1", "api": b"10.0.0.1:8443"})) == 2
    net.deliver()
    assert all(s.items("n0") == {"facts": b"v1", "api": b"10.0.0.1:8443"} for s in stores)
    assert stores[0].set({"facts": b"v1"}) == []  # unchanged: nothing written, nothing sent
    net.sent.clear()
    net.run(5.0)
    assert {type(m) for m in net.sent} == {StateSummary}


def test_versions_keep_growing_across_a_restart_and_a_clock_step_back(tmp_path: Path) -> None:
    net = Net()
    store = net.add(tmp_path, "a")
    store.set({"facts": b"1"})
    first = store.versions()["a"]
    net.wall -= 3600  # the clock was stepped back
    reopened = NodeStateStore(Database.open(tmp_path / "a.db"), "a", wall=lambda: net.wall)
    reopened.set({"facts": b"2"})
    assert reopened.versions()["a"] > first
    assert reopened.items("a") == {"facts": b"2"}  # persisted


def test_a_partitioned_node_catches_up_through_summary_and_digest(tmp_path: Path) -> None:
    net = Net()
    a, b, c = (net.add(tmp_path, n) for n in "abc")
    net.cut.add("c")
    a.set({"facts": b"a1"})
    b.set({"facts": b"b1"})
    c.set({"facts": b"c1"})
    net.deliver()
    net.cut.clear()
    net.run(6.0)
    for store in (a, b, c):
        assert {o: s["facts"] for o, s in store.owners().items()} == {"a": b"a1", "b": b"b1", "c": b"c1"}
    assert any(isinstance(m, StateDigest) for m in net.sent)


def test_nobody_overwrites_an_owners_own_keys(tmp_path: Path) -> None:
    net = Net()
    a, b = net.add(tmp_path, "a"), net.add(tmp_path, "b")
    a.set({"facts": b"mine"})
    assert b.merge([StateEntry("a", "facts", b"forged", 1 << 60)])  # b takes it as news about a ...
    assert a.merge([StateEntry("a", "facts", b"forged", 1 << 60)]) == []  # ... but a never does
    assert a.items("a") == {"facts": b"mine"}


def test_deltas_are_cut_into_gap_free_prefixes(tmp_path: Path) -> None:
    net = Net()
    a = net.add(tmp_path, "a", max_delta_bytes=300)
    b = net.add(tmp_path, "b", max_delta_bytes=300)
    net.cut.add("b")
    for i in range(10):
        net.wall += 1
        a.set({f"key{i}": bytes(100)})
    net.deliver()
    net.cut.clear()
    rounds = 0
    while b.items("a") != a.items("a") and rounds < 40:
        held = b.versions().get("a", 0)
        # Whatever b holds is everything a wrote up to b's highest version: no gaps.
        assert {e.key for e in a.deltas("a", 0) if e.version <= held} == set(b.items("a"))
        net.run(1.0)
        rounds += 1
    assert b.items("a") == a.items("a")
    assert max(len(m.entries) for m in net.sent if isinstance(m, StateDelta)) < 10  # it took several pieces


def test_a_removed_members_key_space_is_forgotten(tmp_path: Path) -> None:
    net = Net()
    a, b = net.add(tmp_path, "a"), net.add(tmp_path, "b")
    b.set({"facts": b"b"})
    net.deliver()
    a.forget("b")
    assert "b" not in a.owners()


def test_a_member_that_joins_is_handed_our_own_key_space_at_once(tmp_path: Path) -> None:
    net = Net()
    a = net.add(tmp_path, "a")
    a.set({"facts": b"a-facts"})  # published before anyone else was there: no rumour went out
    b = net.add(tmp_path, "b")
    net.nodes["a"][1].introduce(("b", "b"))
    net.deliver()
    assert b.items("a") == {"facts": b"a-facts"}


def test_a_rumour_is_passed_on_but_a_catch_up_delta_is_merged_quietly(tmp_path: Path) -> None:
    net = Net()
    for name in "abcd":
        net.add(tmp_path, name)
    b_replicator = net.nodes["b"][1]
    entry = StateEntry("x", "facts", b"x1", 1)
    b_replicator.handle(net.now, ("a", "a"), StateDelta([entry], rumour=True))
    passed_on = [(r, m) for s, r, m in net.queue if s == "b"]
    assert passed_on
    assert all(isinstance(m, StateDelta) and m.rumour for _, m in passed_on)
    assert "a" not in {r for r, _ in passed_on}  # not back to whoever told us
    net.queue.clear()
    # A catch-up answer (what a newcomer gets from its seed) brings news too, but everyone
    # else has it already: b merges it and sends nothing.
    b_replicator.handle(net.now, ("a", "a"), StateDelta([StateEntry("y", "facts", b"y1", 1)]))
    assert net.nodes["b"][0].items("y") == {"facts": b"y1"}
    assert net.queue == []


def test_catch_up_deltas_and_hand_overs_are_not_marked_as_rumours(tmp_path: Path) -> None:
    net = Net()
    a, b = net.add(tmp_path, "a"), net.add(tmp_path, "b")
    net.cut.add("b")
    a.set({"facts": b"a1"})
    net.deliver()
    net.cut.clear()
    net.sent.clear()
    net.run(4.0)  # b catches up through summary, digest and delta
    assert b.items("a") == {"facts": b"a1"}
    caught_up = [m for m in net.sent if isinstance(m, StateDelta)]
    assert caught_up
    assert not any(m.rumour for m in caught_up)
    net.sent.clear()
    net.nodes["a"][1].introduce(("b", "b"))
    deltas = [m for m in net.sent if isinstance(m, StateDelta)]
    assert deltas
    assert not any(m.rumour for m in deltas)


def test_a_delta_from_a_node_without_the_rumour_field_still_decodes() -> None:
    old = msgspec.msgpack.encode(["statedelta", [["x", "facts", b"x1", 7]]])
    decoded = msgspec.msgpack.decode(old, type=StateDelta)
    assert decoded == StateDelta([StateEntry("x", "facts", b"x1", 7)], rumour=False)
