"""Journal benchmark: pages of a large journal through the API, and the node's memory meanwhile.

This is a benchmark, not a test: it prints figures and asserts nothing. It needs root (a
systemd-nspawn container, tests/kit/nspawn.py); `.venv/bin/python -m bench.journal` takes
about a minute.

    .venv/bin/python -m bench.journal [--lines 300000] [--samples 20]

A node manages a container from outside (`--system-bus`, `--host-root`). journald's rate
limit is lifted in the container and `--lines` lines of 100 bytes are written into its
journal. Then, through the API, `--samples` times each: the newest page of 100 entries, the
page before a cursor in the middle of the journal, and a text match no line holds (journalctl
scans the whole journal). Printed: the p50 and max of each, the journal's size on disk, and
the node's resident memory before and after (a page must not grow with the journal).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from tests.kit.nspawn import Container, debian_root
from tests.managedpair import managing
from tests.nodeproc import NodeProcess

JOURNAL = "/api/v1/nodes/n1/journal"
NO_RATE_LIMIT = "[Journal]\nRateLimitIntervalSec=0\nRateLimitBurst=0\n"


def _timed(node: NodeProcess, params: dict[str, str], samples: int) -> tuple[list[float], int]:
    seconds: list[float] = []
    count = 0
    with node.admin_client(timeout=120) as client:
        for _ in range(samples):
            started = time.perf_counter()
            answer = client.get(JOURNAL, params=params)
            seconds.append(time.perf_counter() - started)
            answer.raise_for_status()
            count = len(answer.json()["entries"])
    return seconds, count


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=300_000)
    parser.add_argument("--samples", type=int, default=20)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-journal-"))
    with Container(debian_root(), work) as box:
        box.run(["mkdir", "-p", "/etc/systemd/journald.conf.d"])
        box.run(["sh", "-c", f"printf '{NO_RATE_LIMIT}' > /etc/systemd/journald.conf.d/bench.conf"])
        box.run(["systemctl", "restart", "systemd-journald"])
        started = time.monotonic()
        filler = "x" * 80
        box.run(
            ["sh", "-c", f"seq -f 'bench line %07.0f {filler}' 1 {args.lines} | systemd-cat -t jbench"],
            timeout=600,
        )
        print(f"wrote {args.lines} lines in {time.monotonic() - started:.1f} s")
        size = box.run(["du", "-sh", "/var/log/journal", "/run/log/journal"], check=False).stdout.split()
        print(f"journal on disk: {' '.join(size)}")
        node = NodeProcess(work / "n1", name="n1", extra_args=[*managing(box), "--rate-limit", "1000"]).start()
        try:
            node.wait_ready()
            node.admin_token()
            rss_before = node.rss_bytes()
            with node.admin_client(timeout=120) as client:
                middle = client.get(JOURNAL, params={"identifier": "jbench", "match": f"line {args.lines // 2:07d} "})
                cursor = middle.json()["entries"][0]["cursor"]
            cases = {
                "newest 100": {"limit": "100"},
                "100 before a cursor mid-journal": {"identifier": "jbench", "before": cursor, "limit": "100"},
                "a match no line holds (whole scan)": {"match": "no line holds this", "limit": "100"},
            }
            for name, params in cases.items():
                samples = args.samples if "scan" not in name else max(3, args.samples // 5)
                seconds, count = _timed(node, params, samples)
                print(
                    f"{name}: p50 {statistics.median(seconds) * 1000:.1f} ms, max {max(seconds) * 1000:.1f} ms "
                    f"({count} entries, {samples} samples)"
                )
            rss_after = node.rss_bytes()
            print(f"node RSS: {rss_before / 2**20:.1f} MiB before, {rss_after / 2**20:.1f} MiB after")
        finally:
            node.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
