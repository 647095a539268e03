"""The configuration map merges last-writer-wins on HLC versions, whatever the delivery order."""

from __future__ import annotations

import itertools
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appliance.store.config import ConfigStore
from appliance.store.database import Database
from appliance.store.hlc import HybridClock, Timestamp

Entry = tuple[str, bytes, str, bool]  # key, value, version, deleted

versions = st.builds(
    lambda ms, c, node: Timestamp(ms, c, node).encode(),
    st.integers(1_700_000_000_000, 1_700_000_000_050),
    st.integers(0, 3),
    st.sampled_from(["n1", "n2", "n3"]),
)
entries = st.lists(
    st.tuples(st.sampled_from(["alice", "bob"]), st.binary(min_size=1, max_size=4), versions, st.booleans()),
    min_size=1,
    max_size=8,
    unique_by=lambda e: e[2] + e[0],
)


def _store(path: Path) -> ConfigStore:
    # Wall time 0: no tombstone is ever past its grace period here (test_replication covers that).
    return ConfigStore(Database.create(path), HybridClock("local"), wall=lambda: 0.0)


def _apply(store: ConfigStore, delivered: list[Entry]) -> dict[str, tuple[bytes, str, bool]]:
    for key, value, version, deleted in delivered:
        store.merge("user", key, value, version, deleted=deleted)
    return {k: (v, ver, d) for k, v, ver, d in store.versioned_items("user")}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=entries, seed=st.randoms(use_true_random=False))
def test_any_delivery_order_and_duplicates_give_the_same_map(
    tmp_path_factory: object, batch: list[Entry], seed: object
) -> None:
    import random

    assert isinstance(seed, random.Random)
    root = Path(tmp_path_factory.mktemp("m"))  # type: ignore[attr-defined]
    shuffled = list(batch)
    seed.shuffle(shuffled)
    duplicated = shuffled + [seed.choice(batch) for _ in range(3)]
    first = _apply(_store(root / "a.db"), batch)
    second = _apply(_store(root / "b.db"), duplicated)
    assert first == second
    for key, (_, version, deleted) in first.items():
        newest = max((e for e in batch if e[0] == key), key=lambda e: e[2])
        assert (version, deleted) == (newest[2], newest[3])  # the newest version wins, deletes included


def test_merge_is_associative_across_three_replicas(tmp_path: Path) -> None:
    batch: list[Entry] = [
        ("alice", b"v1", Timestamp(1, 0, "n1").encode(), False),
        ("alice", b"", Timestamp(2, 0, "n2").encode(), True),
        ("alice", b"v3", Timestamp(2, 0, "n1").encode(), False),
        ("bob", b"b1", Timestamp(5, 1, "n3").encode(), False),
    ]
    results = []
    for i, order in enumerate(itertools.permutations(batch)):
        results.append(_apply(_store(tmp_path / f"{i}.db"), list(order)))
    assert all(r == results[0] for r in results)
    assert results[0]["alice"][2] is True  # deleted at (2, n2) beats (2, n1): ties break on node


def test_a_deleted_key_stays_deleted_when_old_writes_arrive_late(tmp_path: Path) -> None:
    store = _store(tmp_path / "x.db")
    store.merge("user", "alice", b"v", Timestamp(10, 0, "n1").encode())
    store.merge("user", "alice", b"", Timestamp(20, 0, "n2").encode(), deleted=True)
    assert not store.merge("user", "alice", b"resurrected", Timestamp(15, 0, "n3").encode())
    assert store.get("user", "alice") is None


def test_local_writes_after_merging_are_newer_than_what_was_seen(tmp_path: Path) -> None:
    store = _store(tmp_path / "x.db")
    future = Timestamp(4_000_000_000_000, 5, "n9").encode()
    store.merge("user", "alice", b"remote", future)
    store.put("user", "alice", b"local")
    assert store.get("user", "alice") == b"local"
