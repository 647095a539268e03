"""Resource-history benchmark: what sampling costs a node, and what the archives weigh.

This is a benchmark, not a test: it prints figures and asserts nothing.

    .venv/bin/python -m bench.history [--samples 200] [--settle 20] [--base REV]

1. Sampling: `--samples` readings of this machine's /proc (appliance/history/sampler.py)
   turned into samples and added to the archives, as the node does every 5 s: CPU time per
   sample (mean and p99) and what that is as a share of one core at one sample per 5 s.
2. The archives: their fixed size (`HistoryStore.nbytes`), the Python heap a store takes
   (tracemalloc, arrays and all), the file a full week makes, and the time to save and load
   it; the API's answer for a full day and week of every metric (build + JSON, and its size).
3. A real idle node: its resident size (VmRSS) `--settle` seconds after it is ready, with
   the history sampling. With `--base REV` (a commit before the history subsystem), the same
   for a node run from that revision's tree (exported with `git archive` into a temporary
   dir, never checked out here), so the difference is what the history costs. Target: the
   idle node well under 100 MiB.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import time
import tracemalloc
from pathlib import Path

import msgspec

from appliance.history.sampler import COLUMNS, Sources, rates
from appliance.history.store import HistoryStore
from appliance.history.subsystem import SAMPLE_SECONDS, answer
from tests.nodeproc import NodeProcess

ROOT = Path(__file__).resolve().parents[1]
WEEK = 7 * 86400 / SAMPLE_SECONDS  # samples in a week


def sampling(samples: int) -> None:
    sources = Sources()
    with tempfile.TemporaryDirectory() as tmp:
        store = HistoryStore(Path(tmp) / "h.bin", COLUMNS)
        previous = sources.read(time.monotonic())
        costs: list[float] = []
        now = time.time()
        for k in range(samples):
            started = time.process_time()
            counters = sources.read(time.monotonic())
            store.add(now + k * SAMPLE_SECONDS, rates(previous, counters))
            costs.append(time.process_time() - started)
            previous = counters
    costs.sort()
    mean = statistics.fmean(costs)
    p99 = costs[min(len(costs) - 1, int(len(costs) * 0.99))]
    print(f"sampling: {mean * 1e6:.0f} us CPU per sample (p99 {p99 * 1e6:.0f} us) over {samples} samples;")
    print(f"          {mean / SAMPLE_SECONDS * 100:.4f} % of one core at one sample per {SAMPLE_SECONDS:g} s")


def archives() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "h.bin"
        tracemalloc.start()
        store = HistoryStore(path, COLUMNS)
        heap, _ = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        now = time.time()
        start = now - 7 * 86400
        started = time.perf_counter()
        for k in range(int(7 * 86400 / SAMPLE_SECONDS)):  # a full week of 5 s samples
            store.add(start + k * SAMPLE_SECONDS, [float(k % 100), 2e9, 6e9, 1e6, 2e5, 3e5, 4e6])
        fill = time.perf_counter() - started
        started = time.perf_counter()
        store.save()
        saved = time.perf_counter() - started
        started = time.perf_counter()
        HistoryStore(path, COLUMNS).load()
        loaded = time.perf_counter() - started
        print(
            f"archives: {store.nbytes / 1024:.0f} KiB of arrays (fixed); {heap / 1024:.0f} KiB of Python heap per store"
        )
        print(f"          file {path.stat().st_size >> 10} KiB; save {saved * 1e3:.1f} ms, load {loaded * 1e3:.1f} ms")
        print(f"          a week of samples added in {fill:.1f} s ({fill / WEEK * 1e6:.0f} us each)")
        for span in ("1h", "1d", "1w"):
            started = time.perf_counter()
            body = msgspec.json.encode(answer(store, "n1", span, ["cpu", "memory", "net", "disk"], now))
            took = time.perf_counter() - started
            print(f"answer {span}, every metric: {took * 1000:.1f} ms, {len(body) / 1024:.0f} KiB of JSON")


def idle_rss(tree: Path | None, settle: float, label: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        node = NodeProcess(Path(tmp) / "node")
        popen = {"cwd": str(tree)} if tree is not None else {"cwd": str(ROOT)}
        node.start(**popen)
        try:
            node.wait_ready()
            time.sleep(settle)
            rss = node.rss_bytes()
            has_history = (node.data_dir / "history").exists() or _serves_history(node)
        finally:
            node.stop()
        print(f"idle node RSS ({label}, history {'on' if has_history else 'off'}): {rss / 2**20:.1f} MiB")


def _serves_history(node: NodeProcess) -> bool:
    with node.admin_client() as client:
        return client.get("/api/v1/nodes/n1/history", params={"metrics": "cpu"}).status_code == 200


def exported(rev: str, into: Path) -> Path:
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--settle", type=float, default=20.0, help="seconds idle before the RSS is read")
    parser.add_argument("--base", default=None, help="a revision without history, for the RSS before")
    args = parser.parse_args()
    sampling(args.samples)
    archives()
    if args.base:
        with tempfile.TemporaryDirectory() as tmp:
            idle_rss(exported(args.base, Path(tmp)), args.settle, f"at {args.base}")
    idle_rss(None, args.settle, "this tree")


if __name__ == "__main__":
    main()
