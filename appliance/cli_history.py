"""`debvisor node history NAME`: a node's resource history in the terminal.

Asks any node for `GET /api/v1/nodes/NAME/history` and prints one line per column: the latest
value, the average and the maximum over the range, and a sparkline of the whole range (each
character the average of its share of the buckets, a blank where nothing was recorded: the
node was down). `--json` prints the API's answer as it came.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from typing import Any

import msgspec

from appliance.cli_connect import ClientError, call, connection_parent, open_client
from appliance.cli_journal import add_node_power

METRICS = ("cpu", "memory", "net", "disk")
RANGES = ("1h", "1d", "1w")
BARS = "▁▂▃▄▅▆▇█"
WIDTH = 60  # sparkline characters

_EPILOG = """\
examples:
  debvisor node history n2                        every metric over the last hour
  debvisor node history n2 --range 1d --metric cpu --metric net
  debvisor node history n2 --range 1w --json      the API's answer (times and columns)
"""


def add_node_history(node_actions: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`history` among the `node` command's actions."""
    history = node_actions.add_parser(
        "history",
        parents=[connection_parent()],
        help="a node's CPU, memory, network and disk I/O over the last hour, day or week",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    history.add_argument("name", help="the node")
    history.add_argument("--range", dest="span", choices=RANGES, default="1h", help="how far back (default: 1h)")
    history.add_argument(
        "--metric", action="append", choices=METRICS, default=None, help="one metric (repeatable; default: all)"
    )
    history.set_defaults(func=node_history)


def add_history_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The `node` command (one node's actions): `history`, `reboot`, `poweroff`."""
    node = commands.add_parser("node", help="one node: resource history, reboot, poweroff")
    actions = node.add_subparsers(dest="node_action", required=True, metavar="ACTION")
    add_node_history(actions)
    add_node_power(actions)


def node_history(args: argparse.Namespace) -> int:
    metrics = ",".join(dict.fromkeys(args.metric or METRICS))
    params = {"metrics": metrics, "range": args.span}
    with open_client(args) as client:
        body = call(client, "GET", f"/api/v1/nodes/{args.name}/history", params=params)
    if args.json:
        print(msgspec.json.format(msgspec.json.encode(body)).decode())
    else:
        print(render(body))
    return 0


def render(body: dict[str, Any]) -> str:
    """The answer as a small table with a sparkline per column."""
    try:
        times: list[int] = body["times"]
        rows = [_row(series) for series in body["series"]]
    except (KeyError, TypeError) as exc:
        raise ClientError(f"unexpected answer from the node: {exc}") from exc
    header = f"{body.get('node', '?')}: last {body.get('range', '?')} in {body.get('step', '?')} s buckets"
    if not times:
        return header
    titles = ("COLUMN", "LAST", "AVG", "MAX", "")
    widths = [max(len(t), *(len(r[i]) for r in rows)) for i, t in enumerate(titles)]
    lines = [header, "  ".join(t.ljust(w) for t, w in zip(titles, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    return "\n".join(lines)


def _row(series: dict[str, Any]) -> tuple[str, str, str, str, str]:
    unit = str(series["unit"])
    avg: list[float | None] = series["avg"]
    peaks: list[float | None] = series.get("max") or avg
    known = [v for v in avg if v is not None]
    known_peaks = [v for v in peaks if v is not None]
    last = next((v for v in reversed(avg) if v is not None), None)
    mean = sum(known) / len(known) if known else None
    top = max(known_peaks) if known_peaks else None
    # Percentages from 0 to 100; anything else from its lowest to its highest average of the range.
    floor, ceiling = (0.0, 100.0) if unit == "percent" else (min(known, default=0.0), max(known, default=0.0))
    line = sparkline(avg, floor, ceiling)
    return (str(series["name"]), human(last, unit), human(mean, unit), human(top, unit), line)


def human(value: float | None, unit: str) -> str:
    """A value for people: `12.5 %`, `1.5 GiB`, `320 KiB/s`; `-` for nothing recorded."""
    if value is None:
        return "-"
    if unit == "percent":
        return f"{value:.1f} %"
    suffix = "/s" if unit.endswith("/s") else ""
    for name in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or name == "TiB":
            return f"{value:.0f} {name}{suffix}" if name == "B" else f"{value:.1f} {name}{suffix}"
        value /= 1024
    raise AssertionError("unreachable")


def sparkline(values: Sequence[float | None], floor: float, ceiling: float, width: int = WIDTH) -> str:
    """`width` characters over `values` scaled from `floor` to `ceiling`: each the average of its
    share, blank where none was recorded (a flat line when floor and ceiling are the same)."""
    if not values:
        return ""
    count = min(width, len(values))
    spread = ceiling - floor
    chars: list[str] = []
    for k in range(count):
        share = [v for v in values[k * len(values) // count : (k + 1) * len(values) // count] if v is not None]
        if not share:
            chars.append(" ")
            continue
        level = (sum(share) / len(share) - floor) / spread if spread > 0 else 0.5
        chars.append(BARS[min(len(BARS) - 1, max(0, math.floor(level * len(BARS))))])
    return "".join(chars)
