"""When this node republishes its facts to the cluster: the rule that keeps idle gossip flat.

A node checks its facts every 30 s (`appliance.app`) and publishes them into its replicated
key space (`appliance.cluster.nodestate`); every publish is rumoured to a few members, who
pass it on, so each one costs every node in the cluster a few copies of the facts. Most
facts (version, kernel, CPUs, totals, addresses, description, labels) rarely change, and
when they do the change goes out at once. Two are gauges that move at nearly every check:
`memory.available_bytes` and `disk.free_bytes`. Republishing every wiggle made every node
publish every 30 s, so each node's idle traffic grew with the cluster's size. A change of
the gauges alone is therefore published only when

- one of them moved by more than `GAUGE_STEP` of its total since the last publish, and
  that publish is at least `GAUGE_MIN_INTERVAL` old (a workload that swings memory back
  and forth costs one publish a minute, not one per check); or
- the last publish is `REFRESH_INTERVAL` old.

So a gauge as the cluster sees it is off by at most 5 % of the total, or at most about
ten minutes old (`published_at` says how old); `GET /api/v1/cluster?fresh=true` asks every
member for its current values. Left out: hysteresis per gauge or smoothing; a step is
measured from the value last published, which is what the other nodes hold.
"""

from __future__ import annotations

import msgspec

from appliance.node.types import NodeFacts

GAUGE_STEP = 0.05  # of the gauge's total
GAUGE_MIN_INTERVAL = 60.0  # seconds between publishes caused by gauges alone
REFRESH_INTERVAL = 600.0  # seconds after which the gauges are published even if they barely moved


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
    moved = max(
        abs(current.memory.available_bytes - published.memory.available_bytes) / max(current.memory.total_bytes, 1),
        abs(current.disk.free_bytes - published.disk.free_bytes) / max(current.disk.total_bytes, 1),
    )
    return moved > GAUGE_STEP and age >= GAUGE_MIN_INTERVAL
