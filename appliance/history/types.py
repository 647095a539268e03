"""The history API's wire types: one time axis and a few columns, compact enough for a chart.

A `History` is what uPlot and a sparkline want: `times` (each bucket's start, seconds since
the epoch) and per column the bucket averages, `null` where nothing was recorded (the node
was down or had just started). The day and week ranges carry each bucket's maximum too.
"""

from __future__ import annotations

import msgspec

# What each column counts, for a chart's axis.
UNITS: dict[str, str] = {
    "cpu": "percent",
    "mem_used": "bytes",
    "mem_available": "bytes",
    "net_rx": "bytes/s",
    "net_tx": "bytes/s",
    "disk_read": "bytes/s",
    "disk_write": "bytes/s",
}


class Series(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One column over the window: averages per bucket, and the maxima on coarse ranges."""

    name: str  # cpu, mem_used, mem_available, net_rx, net_tx, disk_read, disk_write
    unit: str  # percent, bytes, bytes/s
    avg: list[float | None]
    max: list[float | None] | None = None


class History(msgspec.Struct, frozen=True, kw_only=True):
    """A node's resource history over one range (`GET /api/v1/nodes/{name}/history`)."""

    node: str
    range: str  # 1h, 1d, 1w
    step: int  # seconds per bucket
    times: list[int]  # each bucket's start, seconds since the epoch, oldest first
    series: list[Series]
