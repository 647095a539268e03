"""Web UI benchmark: the login page and the dashboard in Debian's headless Chromium against a
real `debvisor serve` node on loopback, and the delay from an event on the node to the screen.

This is a benchmark, not a test: it prints figures and asserts nothing (the targets are printed
beside them). It needs Node.js, `webui/node_modules` (`.ci/setup`), the built UI and
`/usr/bin/chromium`; `.venv/bin/python -m bench.webui` takes about a minute.

    .venv/bin/python -m bench.webui [--loads 10] [--events 50] [--waterfall]

It starts one node on loopback (a temporary data dir), makes the bootstrap admin's password
final, creates a `bench` admin for the browser (its forced first change done through the API)
and an API token of `admin` for the changes, so that the browser's per-user rate budget only
pays for what the page itself asks. The browser side is webui/bench/load.mjs (playwright-core,
`--headless --no-sandbox --disable-gpu --disable-background-networking
--disable-component-update --disable-sync --no-first-run`):

1. Loads, for the login page (no session) and the dashboard (a session cookie), `--loads`
   times each: cold (a new browser context: empty cache) and warm (a reload in one context).
   FCP is the browser's first-contentful-paint; "fully loaded" is when the page's initial data
   is on screen (dashboard: a member's state in the members table and the recent audit events;
   login: the form, after the session check answered), seen by a MutationObserver installed
   before the page's scripts; both from the navigation's start. Bytes: Resource Timing's
   `transferSize` of the document and every resource (headers plus compressed body; 0 for a
   cached file). Targets: dashboard fully loaded < 300 ms warm, < 600 ms cold.
2. The initial JS+CSS (what index.html loads before anything else), gzip-compressed, from the
   build on disk. Target: <= 350 KiB.
3. Event to screen: `--events` times, `PUT /api/v1/node` with the admin's token; the audit
   entry it appends is published on the node's bus (the event's `at`, the node's clock) and
   the dashboard's "Recent audit events" table changes (MutationObserver; the same machine's
   clock). The floor is the same event reaching a plain WebSocket in the same page; the ratio
   screen/floor says what the UI adds. Target: < 100 ms.

The node, the browser and this process share the machine's cores, so the figures are an
upper bound of what a browser on another machine would see on a LAN.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from tests.nodeproc import NodeProcess

ROOT = Path(__file__).resolve().parents[1]
WEBUI = ROOT / "webui"
DIST = ROOT / "appliance" / "webui" / "dist"
DRIVER = WEBUI / "bench" / "load.mjs"
CHROMIUM = "/usr/bin/chromium"
BENCH_PASSWORD = "a bench password, long enough"
INITIAL_PASSWORD = "an initial one, long"

TARGET_WARM_MS = 300.0
TARGET_COLD_MS = 600.0
TARGET_INITIAL_KIB = 350.0
TARGET_EVENT_MS = 100.0


def pct(values: list[float], q: float) -> float:
    """The q-quantile (nearest rank) of `values`."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def initial_kib() -> tuple[float, int]:
    """gzip size of the JS and CSS index.html loads first, and how many files that is."""
    index = (DIST / "index.html").read_text()
    names = re.findall(r'(?:src|href)="/(assets/[^"]+\.(?:js|css))"', index)
    total = sum(len(gzip.compress((DIST / n).read_bytes(), compresslevel=9)) for n in names)
    return total / 1024, len(names)


def prepare(node: NodeProcess) -> str:
    """Make the node's users: returns an admin API token (for the changes). The `bench` user
    (admin) gets BENCH_PASSWORD, its forced first change done."""
    token = node.admin_token()
    with node.client() as client:
        client.headers["Authorization"] = f"Bearer {token}"
        made = client.post("/api/v1/users", json={"name": "bench", "role": "admin", "password": INITIAL_PASSWORD})
        made.raise_for_status()
    with node.client() as client:
        login = client.post("/api/v1/auth/login", json={"username": "bench", "password": INITIAL_PASSWORD})
        login.raise_for_status()
        client.post(
            "/api/v1/users/bench/password",
            json={"current_password": INITIAL_PASSWORD, "new_password": BENCH_PASSWORD},
            headers={"X-CSRF-Token": login.json()["csrf_token"]},
        ).raise_for_status()
    return token


def drive(node: NodeProcess, token: str, loads: int, events: int, ab: bool) -> dict[str, Any]:
    env = {
        **os.environ,
        "DEBVISOR_URL": node.url,
        "BENCH_USER": "bench",
        "BENCH_PASSWORD": BENCH_PASSWORD,
        "BENCH_CHANGE_TOKEN": token,
        "BENCH_LOADS": str(loads),
        "BENCH_EVENTS": str(events),
        "BENCH_AB": "1" if ab else "0",
        "CHROMIUM": CHROMIUM,
        "NODE_EXTRA_CA_CERTS": str(node.data_dir / "pki" / "ca.crt"),
    }
    done = subprocess.run(
        ["node", str(DRIVER)], cwd=WEBUI, env=env, capture_output=True, text=True, timeout=600, check=False
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise SystemExit(f"bench.webui: the browser driver failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def row(label: str, values: list[float], unit: str, target: float | None = None) -> str:
    p50, p95 = statistics.median(values), pct(values, 0.95)
    verdict = "" if target is None else ("  ok" if p50 < target else f"  OVER target {target:g} {unit}")
    return f"  {label:<34} p50 {p50:8.1f} {unit}  p95 {p95:8.1f} {unit}  max {max(values):8.1f}{verdict}"


def report_loads(page: str, figures: dict[str, list[dict[str, Any]]], target: dict[str, float]) -> None:
    for kind in ("cold", "warm"):
        samples = figures[kind]
        print(f"{page}, {kind} ({len(samples)} loads, {samples[0]['protocol']}):")
        print(row("first contentful paint", [s["fcp_ms"] for s in samples if s["fcp_ms"] is not None], "ms"))
        print(row("fully loaded", [s["ready_ms"] for s in samples], "ms", target.get(kind)))
        kib = [s["bytes"] / 1024 for s in samples]
        reqs = statistics.median([s["requests"] for s in samples])
        cached = statistics.median([s["from_cache"] for s in samples])
        kib_p50 = statistics.median(kib)
        print(f"  {'transferred':<34} p50 {kib_p50:8.1f} KiB  ({reqs:g} requests, {cached:g} from cache)")
        doc = {k: statistics.median([s["document"][k] for s in samples]) for k in samples[0]["document"]}
        print("  document (p50): " + ", ".join(f"{k} {v:g}" for k, v in doc.items()))
        cpu = {k: statistics.median([s["cpu_ms"][k] for s in samples]) for k in samples[0]["cpu_ms"]}
        kinds = ", ".join(f"{k.removesuffix('Duration')} {v:g}" for k, v in cpu.items())
        print(f"  main thread to fully loaded (p50, ms): {kinds}")


def waterfall(sample: dict[str, Any]) -> None:
    for entry in sorted(sample["waterfall"], key=lambda e: e["start"]):
        print(f"    {entry['start']:5d} - {entry['end']:5d} ms  {entry['bytes']:7d} B  {entry['name'][:90]}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--loads", type=int, default=10, help="cold and warm loads per page")
    parser.add_argument("--events", type=int, default=50, help="event-to-screen samples")
    parser.add_argument("--ab", action="store_true", help="cold dashboard with and without the whoami preload")
    parser.add_argument("--waterfall", action="store_true", help="print the requests of a cold and a warm dashboard")
    args = parser.parse_args()
    if not (DIST / "index.html").is_file() or not (WEBUI / "node_modules" / "playwright-core").is_dir():
        print("bench.webui: the web UI is not built or webui/node_modules is missing (.ci/setup)", file=sys.stderr)
        return 2
    if not Path(CHROMIUM).exists():
        print(f"bench.webui: {CHROMIUM} is missing (apt-get install chromium)", file=sys.stderr)
        return 2
    print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs (the figures grow with it)")
    with tempfile.TemporaryDirectory(prefix="bench-webui-") as tmp, NodeProcess(Path(tmp) / "node") as node:
        node.wait_ready()
        token = prepare(node)
        result = drive(node, token, args.loads, args.events, args.ab)
    size, files = initial_kib()
    verdict = "ok" if size <= TARGET_INITIAL_KIB else "OVER"
    print(f"initial JS+CSS: {size:.1f} KiB gzip ({files} files)  {verdict} target {TARGET_INITIAL_KIB:g} KiB")
    report_loads("login page", result["login"], {})
    report_loads("dashboard", result["dashboard"], {"cold": TARGET_COLD_MS, "warm": TARGET_WARM_MS})
    samples = result["events"]
    print(f"event to screen ({len(samples)} of {args.events} changes seen):")
    if samples:
        screen = [s["screen_ms"] for s in samples]
        floor = [s["socket_ms"] for s in samples]
        print(row("event at node -> on screen", screen, "ms", TARGET_EVENT_MS))
        print(row("event at node -> plain socket", floor, "ms"))
        print(row("API call sent -> on screen", [s["from_call_ms"] for s in samples], "ms"))
        ratio = statistics.median(screen) / max(statistics.median(floor), 0.1)
        print(f"  on screen / plain socket (p50): {ratio:.1f}x")
    if result.get("preload"):
        ab = result["preload"]
        kept = statistics.median([s["ready_ms"] for s in ab["kept"]])
        stripped = statistics.median([s["ready_ms"] for s in ab["stripped"]])
        print(f"cold dashboard, fully loaded, alternated ({len(ab['kept'])} each), p50:")
        print(f"  without the whoami preload {stripped:.1f} ms, as built {kept:.1f} ms: ratio {kept / stripped:.2f}")
    if args.waterfall:
        print("cold dashboard, first load:")
        waterfall(result["dashboard"]["cold"][0])
        print("warm dashboard, last reload:")
        waterfall(result["dashboard"]["warm"][-1])
    return 0


if __name__ == "__main__":
    sys.exit(main())
