"""A node's facts in the cluster: where they are kept, how they are read, and when this node
republishes its own (the rule that keeps idle gossip flat).

Each node publishes its `NodeFacts` under `FACTS_KEY` in its replicated key space
(`publish_facts`); any node reads every member's with `published_facts`.

A node checks its facts every 30 s (`appliance.app`) and publishes them into its replicated
key space (`appliance.cluster.nodestate`); every publish is rumoured to a few members, who
pass it on, so each one costs every node in the cluster a few copies of the facts. Most
facts (version, kernel, CPUs, totals, addresses, description, labels) rarely change, and
when they do the change goes out at once. Two are gauges that move at nearly every check:
`memory.available_bytes` and `disk.free_bytes`. Republishing every wiggle made every node
publish every 30 s, so each node's idle traffic grew with the cluster's size. A change of
the gauges alone is therefore published only when

- one of them moved, since the last publish, by more than `GAUGE_STEP` of its total or by
  more than `GAUGE_LOW_STEP` of its value (so a disk or memory running low is followed
  closely), and that publish is at least `GAUGE_MIN_INTERVAL` old (a workload that swings
  memory back and forth costs one publish a minute, not one per check); or
- the last publish is `REFRESH_INTERVAL` old.

So a gauge as the cluster sees it is off by at most 5 % of its total, or a quarter of
itself when that is less, from what the node measured at most 90 s earlier; a smaller drift
may be up to 30 minutes old (`published_at` says when the facts were published). `GET /api/v1/cluster?fresh=true`
asks every member for its current values. Left out: smoothing or hysteresis; a step is
measured from the value last published, which is what the other nodes hold.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from typing import Protocol

import msgspec

from appliance.node.types import Node, NodeFacts

FACTS_KEY = "facts"  # the key in each node's replicated key space
_FACTS = msgspec.json.Decoder(NodeFacts)

GAUGE_STEP = 0.05  # of the gauge's total
GAUGE_LOW_STEP = 0.25  # of the gauge's value, when that is the smaller step
GAUGE_MIN_INTERVAL = 60.0  # seconds between publishes caused by gauges alone
REFRESH_INTERVAL = 1800.0  # seconds after which the gauges are published even if they barely moved


def should_publish(published: NodeFacts | None, current: NodeFacts) -> bool:
    """Whether `current` must replace the `published` facts (see the module docstring)."""
    if published is None:
        return True
    gauges_as_published = msgspec.structs.replace(
        current,
        memory=msgspec.structs.replace(current.memory, available_bytes=published.memory.available_bytes),
        disk=msgspec.structs.replace(current.disk, free_bytes=published.disk.free_bytes),
        published_at=published.published_at,
    )
    if gauges_as_published != published:
        return True  # something other than a gauge changed
    if current.memory == published.memory and current.disk == published.disk:
        return False
    age = current.published_at - published.published_at
    if age < 0 or age >= REFRESH_INTERVAL:
        return True  # due for a refresh (or the wall clock stepped back: take the new time)
    moved = _moved(
        current.memory.available_bytes, published.memory.available_bytes, current.memory.total_bytes
    ) or _moved(current.disk.free_bytes, published.disk.free_bytes, current.disk.total_bytes)
    return moved and age >= GAUGE_MIN_INTERVAL


def _moved(value: int, published: int, total: int) -> bool:
    """Whether a gauge moved by a step worth publishing."""
    step = min(GAUGE_STEP * total, GAUGE_LOW_STEP * min(value, published))
    return abs(value - published) > step


class KeySpaces(Protocol):
    """The replicated per-node key spaces, as the facts need them (the cluster service)."""

    def published(self) -> dict[str, dict[str, bytes]]: ...

    def publish(self, values: dict[str, bytes]) -> None: ...


def published_facts(spaces: KeySpaces, names: set[str]) -> dict[str, NodeFacts]:
    """The facts each of `names` published, as replicated to this node (unreadable ones skipped)."""
    facts: dict[str, NodeFacts] = {}
    for owner, space in spaces.published().items():
        raw = space.get(FACTS_KEY)
        if owner in names and raw is not None:
            try:
                facts[owner] = _FACTS.decode(raw)
            except msgspec.DecodeError:
                continue  # written by a newer version this one cannot read
    return facts


async def publish_facts(
    spaces: KeySpaces, name: str, node: Callable[[], Awaitable[Node]], clock: Callable[[], float]
) -> None:
    """Publish this node's facts into its key space when `should_publish` says so (a change
    other than the memory and disk gauges, a gauge step, a refresh, or a restart)."""
    facts = NodeFacts.of(await node(), clock())
    current = spaces.published().get(name, {}).get(FACTS_KEY)
    published = None
    if current is not None:
        with contextlib.suppress(msgspec.DecodeError):
            published = _FACTS.decode(current)
    if should_publish(published, facts):
        spaces.publish({FACTS_KEY: msgspec.json.encode(facts)})
