"""`debvisor node history`'s rendering: units for people, sparklines with gaps, the parser."""

from __future__ import annotations

import pytest

from appliance.cli import _build_parser
from appliance.cli_history import human, render, sparkline


@pytest.mark.parametrize(
    ("value", "unit", "text"),
    [
        (None, "bytes", "-"),
        (12.345, "percent", "12.3 %"),
        (512.0, "bytes", "512 B"),
        (1536.0, "bytes/s", "1.5 KiB/s"),
        (3 * 1024**3, "bytes", "3.0 GiB"),
    ],
)
def test_values_for_people(value: float | None, unit: str, text: str) -> None:
    assert human(value, unit) == text


def test_a_sparkline_scales_to_its_range_and_leaves_gaps_blank() -> None:
    assert sparkline([0.0, 50.0, None, 100.0], 0.0, 100.0) == "▁▅ █"
    assert sparkline([10.0] * 120, 0.0, 100.0, width=4) == "▁▁▁▁"  # each character averages its share
    assert sparkline([2.0, 3.0, 4.0], 2.0, 4.0) == "▁▅█"
    assert sparkline([7.0, None], 7.0, 7.0) == "▅ "  # flat
    assert sparkline([], 0.0, 1.0) == ""


def test_the_table_has_one_line_per_column() -> None:
    body = {
        "node": "n2",
        "range": "1d",
        "step": 60,
        "times": [0, 60, 120],
        "series": [
            {"name": "cpu", "unit": "percent", "avg": [10.0, None, 30.0], "max": [15.0, None, 90.0]},
            {"name": "net_rx", "unit": "bytes/s", "avg": [None, None, None], "max": [None, None, None]},
        ],
    }
    lines = render(body).splitlines()
    assert lines[0] == "n2: last 1d in 60 s buckets"
    assert lines[1].split() == ["COLUMN", "LAST", "AVG", "MAX"]
    assert lines[2].split()[:7] == ["cpu", "30.0", "%", "20.0", "%", "90.0", "%"]
    assert lines[3].split() == ["net_rx", "-", "-", "-"]


def test_the_parser_takes_range_and_repeated_metrics() -> None:
    args = _build_parser().parse_args(["node", "history", "n2", "--range", "1w", "--metric", "cpu", "--metric", "net"])
    assert (args.name, args.span, args.metric) == ("n2", "1w", ["cpu", "net"])
    with pytest.raises(SystemExit):
        _build_parser().parse_args(["node", "history", "n2", "--metric", "gpu"])
