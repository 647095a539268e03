"""Join-token records do not pile up: a day after expiry they are deleted, used or not."""

from __future__ import annotations

from appliance.bootstrap import OpenedNode
from appliance.cluster.hlc import HybridClock
from appliance.cluster.join import JOIN_TOKEN_KIND, USED_TOKEN_RETENTION, JoinService
from appliance.store.config import ConfigStore
from tests.unit.appliance.conftest import FakeClock


def test_expired_join_tokens_are_pruned_a_day_after_expiry(node: OpenedNode, clock: FakeClock) -> None:
    store = ConfigStore(node.db, HybridClock(node.node_id, clock), wall=clock)
    joins = JoinService(
        store=store, identity=node.identity, cluster_id=node.cluster_id, api_seeds=lambda: ["127.0.0.1:1"], clock=clock
    )
    short = joins.create_token(created_by="admin", ttl=60)
    long = joins.create_token(created_by="admin", ttl=3 * 24 * 3600)
    assert joins.prune() == 0
    clock.advance(60 + USED_TOKEN_RETENTION - 1)
    assert joins.prune() == 0  # expired, but kept a day so a late attempt is told why it fails
    clock.advance(2)
    assert joins.prune() == 1
    remaining = [key for key, _ in store.items(JOIN_TOKEN_KIND)]
    assert remaining == [long.id]
    assert store.entry(JOIN_TOKEN_KIND, short.id) is not None  # a tombstone, so other nodes delete it too
