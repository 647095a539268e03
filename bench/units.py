"""Units benchmark: a node managing systemd in a systemd-nspawn container, against systemctl.

This is a benchmark, not a test: it prints figures and asserts nothing. It needs root
(network namespaces, systemd-nspawn); `.venv/bin/python -m bench.units` takes about a minute.

    .venv/bin/python -m bench.units [--samples 200] [--process-samples 30] [--changes 40]

Two nodes in network namespaces (tests/clusterlab.py); n0 manages the container's systemd
through its bus socket (`serve --system-bus`), as in tests/integration/test_units.py.

1. List units: `GET /api/v1/nodes/n0/units` on n0 `--samples` times, one after another,
   against `systemctl list-units --all --output=json` run inside the container
   (`nsenter` + systemctl, `--process-samples` times: systemctl is a process start).
   `GET /api/v1/node` (the same client, no systemd involved) is printed as the HTTP stack's
   own cost on this machine at that moment.
   Target: the API's p99 at most 0.1x systemctl's.
2. Start to active: `POST .../units/dvt-bench.service/start` (answered once systemd's job is
   done, so the unit is active) against `systemctl start dvt-bench.service` inside the
   container (which also waits for the job), each followed by a stop. Target: at most 1.1x.
3. A unit change to a WebSocket client on another node: a client on n1 subscribed to n0's
   `unit` events; the unit is started and stopped with systemctl inside the container (not
   through the API), `--changes` times; latency is the client's receive time minus the
   unit's `StateChangeTimestamp` (when systemd changed its state; the container shares this
   machine's clock), so it covers systemd's signal, the bus daemon, n0's coalescing window
   (5 ms), n0's event bus and member stream, n1's link and fan-out. Target: p50 < 20 ms.

Everything shares this machine's two cores, so the figures are an upper bound.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.clusterlab import ClusterLab, bootstrap_admin_token, join_token
from tests.kit.nspawn import Container, debian_root
from tests.netns import Lab, available
from tests.nswebsocket import open_websocket, receive

UNIT = "dvt-bench.service"
UNIT_TEXT = "[Unit]\nDescription=bench\n[Service]\nExecStart=/bin/sleep infinity\n"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def timed(fn: Callable[[], Any], samples: int) -> list[float]:
    seconds = []
    for _ in range(samples):
        started = time.perf_counter()
        fn()
        seconds.append(time.perf_counter() - started)
    return seconds


def show(label: str, seconds: list[float]) -> None:
    ms = [s * 1000 for s in seconds]
    print(f"  {label:<44} p50 {statistics.median(ms):7.2f} ms   p99 {percentile(ms, 0.99):7.2f} ms   n={len(ms)}")


def list_part(cluster: ClusterLab, box: Container, args: argparse.Namespace) -> None:
    client = cluster.nodes[0].client()
    count = len(client.get("/api/v1/nodes/n0/units").json())
    for _ in range(10):  # warm up the connection and the node
        client.get("/api/v1/nodes/n0/units")
    api = timed(lambda: client.get("/api/v1/nodes/n0/units").raise_for_status(), args.samples)
    base = timed(lambda: client.get("/api/v1/node").raise_for_status(), args.samples)
    ctl = timed(lambda: box.run(["systemctl", "list-units", "--all", "--output=json", "--no-pager"]),
                args.process_samples)  # fmt: skip
    print(f"list units ({count} units)")
    show("API GET /api/v1/nodes/n0/units", api)
    show("  baseline: API GET /api/v1/node (no systemd)", base)
    show("systemctl list-units --all --output=json", ctl)
    print(f"  ratio p99 API / systemctl: {percentile(api, 0.99) / percentile(ctl, 0.99):.3f} (target <= 0.1); "
          f"p50 {statistics.median(api) / statistics.median(ctl):.3f}")  # fmt: skip


def start_part(cluster: ClusterLab, box: Container, args: argparse.Namespace) -> None:
    client = cluster.nodes[0].client()
    path = f"/api/v1/nodes/n0/units/{UNIT}"

    def api_start() -> None:
        answer = client.post(f"{path}/start").json()
        assert answer["active_state"] == "active", answer

    api: list[float] = []
    ctl: list[float] = []
    for _ in range(args.process_samples):
        api += timed(api_start, 1)
        client.post(f"{path}/stop")
        ctl += timed(lambda: box.run(["systemctl", "start", UNIT]), 1)
        box.run(["systemctl", "stop", UNIT])
    print("start to active")
    show("API POST .../start (answered when active)", api)
    show("systemctl start", ctl)
    print(f"  ratio p50 API / systemctl: {statistics.median(api) / statistics.median(ctl):.3f} (target <= 1.1)")


def wait_for(ws: Any, state: str) -> float | None:
    """When the client received the unit's event with `state` (None after 10 s)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            messages = receive(ws, max(0.01, deadline - time.monotonic()))
        except TimeoutError:
            return None
        for message in messages:
            if message.get("unit") == UNIT and message.get("active_state") == state:
                return time.time()
    return None


def event_part(cluster: ClusterLab, box: Container, args: argparse.Namespace) -> None:
    n0, n1 = cluster.nodes
    url = f"wss://{n1.host.address}:8443/api/v1/events?type=unit&node=n0"
    ws = open_websocket(n1.host.netns, url, n1.data_dir / "pki" / "ca.crt", token=n1.token)
    latencies: list[float] = []
    try:
        time.sleep(1.5)  # n1 links to n0 once it has a client
        for n in range(args.changes):
            box.run(["systemctl", "start", UNIT])
            arrived = wait_for(ws, "active")
            if arrived is None:
                print(f"  change {n}: no active event within 10 s", file=sys.stderr)
                continue
            latencies.append(arrived - n0.client().get(f"/api/v1/nodes/n0/units/{UNIT}").json()["since"])
            box.run(["systemctl", "stop", UNIT])  # a stopped unit may be unloaded at once: its time is gone
            wait_for(ws, "inactive")
    finally:
        ws.close()
    print("unit change (systemctl inside the container) to a WebSocket client on n1")
    show("systemd state change -> client on n1", latencies)
    print(f"  p50 {statistics.median(latencies) * 1000:.2f} ms (target < 20 ms)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--process-samples", type=int, default=30)
    parser.add_argument("--changes", type=int, default=40)
    args = parser.parse_args()
    reason = available()
    if reason is not None:
        print(f"bench.units needs network namespaces: {reason}", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="bench-units-") as tmp:
        work = Path(tmp)
        with Container(debian_root(), work) as box:
            box.path(f"/etc/systemd/system/{UNIT}").write_text(UNIT_TEXT)
            box.run(["systemctl", "daemon-reload"])
            with Lab(2) as lab:
                cluster = ClusterLab(lab, work, 2)
                n0, n1 = cluster.nodes
                try:
                    n0.start(extra=["--system-bus", box.bus_address(), "--host-root", str(box.path("/"))])
                    n0.wait_ready()
                    n1.token = bootstrap_admin_token(n0)
                    n1.start(join=join_token(n0))
                    n1.wait_ready()
                    cluster.wait_all_see({"n0": "alive", "n1": "alive"}, timeout=30)
                    list_part(cluster, box, args)
                    start_part(cluster, box, args)
                    event_part(cluster, box, args)
                finally:
                    cluster.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
