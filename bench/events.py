"""Events benchmark: `GET /api/v1/events` on real nodes in network namespaces.

This is a benchmark, not a test: it prints figures and asserts nothing. It needs root
(network namespaces); `.venv/bin/python -m bench.events` takes about 2 minutes.

    .venv/bin/python -m bench.events [--nodes 3] [--samples 200] [--idle 1000]
                                     [--fanout-clients 100] [--rate 1200] [--seconds 10]
                                     [--only latency|idle|fanout]

1. Latency: a client on n0 subscribed to n2's audit events; `PUT /api/v1/node` is sent to
   n2 `--samples` times, spaced out; latency is the client's receive time minus the event's
   `at` (stamped by n2's bus when the audit entry was written; all processes share this
   machine's clock). So it covers n2's bus, n2's member stream, the link to n0, n0's
   fan-out and the client's socket. Targets: p50 < 20 ms, p99 < 100 ms.
2. Idle clients: the resident memory of n1 before and after `--idle` clients opened
   `/api/v1/events` on it and stayed idle (heartbeats only). Target: < 30 MiB extra. The
   same clients then open sockets on a bare granian WebSocket app (bench/bare_ws.py) with
   n1's certificate in n1's namespace: granian's own cost per idle WebSocket, so what the
   appliance adds is the difference.
3. Fan-out: `--fanout-clients` clients on n1 subscribed to the cluster's audit and
   configuration events while every node (n1 too) makes and revokes API tokens (4 events per
   request cluster-wide) aiming at `--rate` events per second in total (open loop) for
   `--seconds`. The writes come from one process per node, over keep-alive HTTP/1.1
   connections written by hand (httpx cost more CPU per request than the node answering it),
   and the clients decode only the fields they count: on this 2-core machine the load
   generators, not the fan-out, were the limit. Every client must receive every event
   (counted by node and id), with no `lagged`. Prints the rate reached, the events each
   client got, how many were lost, the CPU time n1 spent per 1000 events delivered to all
   clients, and the CPU time of the other nodes, the clients and the generators.
   `--only fanout` (repeatable, also `latency`, `idle`) runs one part.

All nodes share this machine's two cores with the load generators and the clients, so the
figures are an upper bound on what separate machines would show.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import resource
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import httpx
import msgspec
from websockets.asyncio.client import ClientConnection, connect

from tests.clusterlab import ClusterLab, ClusterNode
from tests.netns import Lab, available
from tests.nsclient import enter_netns

T = TypeVar("T")
BARE_PORT = 9443
GENERATOR_CONNECTIONS = 16  # per node the load is sent to


def in_netns(netns: str, main: Callable[[], Awaitable[T]]) -> T:
    """Run `main()` on an event loop of its own, on a thread inside `netns`."""
    result: list[T] = []
    error: list[BaseException] = []

    def run() -> None:
        enter_netns(netns)
        try:
            result.append(asyncio.run(main()))  # type: ignore[arg-type]
        except BaseException as exc:
            error.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if error:
        raise error[0]
    return result[0]


def context(node: ClusterNode) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(node.data_dir / "pki" / "ca.crt"))
    ctx.check_hostname = False
    return ctx


async def open_client(node: ClusterNode, query: str, token: str, port: int = 8443) -> ClientConnection:
    return await connect(
        f"wss://{node.host.address}:{port}/api/v1/events?{query}",
        ssl=context(node),
        additional_headers={"Authorization": f"Bearer {token}"},
        compression=None,
        ping_interval=None,
        proxy=None,
        open_timeout=60,
        max_size=None,
    )


class Seen(msgspec.Struct):
    """The fields of an event the fan-out clients look at (decoding only these is cheaper)."""

    type: str
    node: str = ""
    id: int = 0
    action: str = ""
    kind: str = ""


SEEN = msgspec.json.Decoder(Seen)


def messages(frame: str | bytes) -> list[dict[str, Any]]:
    text = frame if isinstance(frame, str) else frame.decode()
    return [json.loads(line) for line in text.splitlines() if line]


def rss(node: ClusterNode) -> int:
    assert node.proc is not None
    return rss_of(node.proc.pid)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# -- 1. latency ------------------------------------------------------------------------------


def latency(cluster: ClusterLab, samples: int, token: str) -> list[float]:
    n0, n2 = cluster.nodes[0], cluster.nodes[2]

    async def main() -> list[float]:
        ws = await open_client(n0, "type=audit&node=n2", token)
        await asyncio.sleep(2.0)  # n0 links to n2 when its first client arrives
        found: list[float] = []
        async with httpx.AsyncClient(
            base_url=n2.url, verify=context(n2), headers={"Authorization": f"Bearer {token}"}
        ) as http:

            async def read() -> None:
                while len(found) < samples:
                    for m in messages(await ws.recv()):
                        if m["type"] == "audit" and m["action"] == "put /api/v1/node":
                            found.append(time.time() - m["at"])

            reader = asyncio.create_task(read())
            for i in range(samples):
                response = await http.put("/api/v1/node", json={"description": f"latency {i}"})
                response.raise_for_status()
                await asyncio.sleep(0.02)
            try:
                await asyncio.wait_for(reader, 30)
            except TimeoutError:
                print(f"  latency: only {len(found)} of {samples} events arrived", file=sys.stderr)
        await ws.close()
        return found

    return in_netns(n0.host.netns, main)


# -- 2. idle clients -------------------------------------------------------------------------


def idle_clients(
    cluster: ClusterLab, count: int, token: str, pid: int | None = None, port: int = 8443
) -> tuple[int, int, float]:
    """RSS of the server (the node n1, or process `pid` on `port`) before and after `count`
    idle clients, and how long opening them took."""
    n1 = cluster.nodes[1]
    before = rss(n1) if pid is None else rss_of(pid)
    measured: list[int] = []
    took: list[float] = []

    async def main() -> None:
        start = time.monotonic()
        sockets: list[ClientConnection] = []
        for first in range(0, count, 50):  # 50 handshakes at a time
            batch = range(first, min(count, first + 50))
            sockets += await asyncio.gather(*(open_client(n1, "", token, port) for _ in batch))
        took.append(time.monotonic() - start)
        await asyncio.sleep(5.0)  # settle: heartbeats, allocator
        measured.append(rss(n1) if pid is None else rss_of(pid))
        await asyncio.gather(*(s.close() for s in sockets))

    in_netns(cluster.nodes[0].host.netns, main)
    return before, measured[0], took[0]


def bare_granian(cluster: ClusterLab, count: int, token: str) -> tuple[int, int]:
    """The same idle clients against bare granian (bench/bare_ws.py) with n1's certificate."""
    n1 = cluster.nodes[1]
    pki = n1.data_dir / "pki"
    granian = Path(sys.executable).parent / "granian"
    proc = n1.host.popen(
        [
            str(granian), "--interface", "asgi", "--host", n1.host.address, "--port", str(BARE_PORT),
            "--workers", "1", "--ssl-certificate", str(pki / "node.crt"), "--ssl-keyfile", str(pki / "node.key"),
            "--log-level", "warning", "--ws", "bench.bare_ws:app",
        ],
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        time.sleep(3.0)
        worker = _worker_of(proc.pid)
        before, after, _ = idle_clients(cluster, count, token, pid=worker, port=BARE_PORT)
        return before, after
    finally:
        n1.host.kill_process(proc, signal.SIGTERM, wait=10)


def _worker_of(pid: int) -> int:
    """granian's worker process (the child of its supervisor), or `pid` itself."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return int(children[0]) if children else pid


def rss_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


# -- 3. fan-out ------------------------------------------------------------------------------


def cpu_seconds(node: ClusterNode) -> float:
    assert node.proc is not None
    fields = Path(f"/proc/{node.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def generate(netns: str, url: str, *, cafile: str, password: str, share: float, seconds: float) -> int:
    """Make and revoke API tokens on the node at `url` at `share` requests per second for
    `seconds`, from a process of its own inside `netns` (the clients' process has no spare
    CPU for it: with the generators beside the 100 clients it was the limit, below 1000
    events/s). Returns the requests that succeeded."""
    enter_netns(netns)
    return asyncio.run(_load(url, cafile, password, share, seconds))


async def _load(url: str, cafile: str, password: str, share: float, seconds: float) -> int:
    verify = ssl.create_default_context(cafile=cafile)
    verify.check_hostname = False
    # API tokens are made with a session (a token cannot make tokens): log in once with httpx,
    # then send the writes over plain keep-alive HTTP/1.1 connections (httpx cost about 2.5 ms
    # of CPU per request here, more than the node spent answering it).
    async with httpx.AsyncClient(base_url=url, verify=verify, timeout=30) as http:
        login = await http.post("/api/v1/auth/login", json={"username": "admin", "password": password})
        login.raise_for_status()
        headers = (
            f"Host: {httpx.URL(url).host}\r\nCookie: {'; '.join(f'{k}={v}' for k, v in http.cookies.items())}\r\n"
            f"X-CSRF-Token: {login.json()['csrf_token']}\r\n"
        )
    ok = 0
    interval = 1.0 / share
    scheduled = iter(range(int(share * seconds)))
    made: list[str] = []
    start = time.monotonic()

    async def worker() -> None:
        nonlocal ok
        parsed = httpx.URL(url)
        reader, writer = await asyncio.open_connection(parsed.host, parsed.port, ssl=verify)
        try:
            for i in scheduled:
                await asyncio.sleep(max(0.0, start + i * interval - time.monotonic()))
                if i % 2 == 0 or not made:
                    body = json.dumps({"name": f"fan-out {i}"}).encode()
                    head = f"POST /api/v1/tokens HTTP/1.1\r\n{headers}Content-Type: application/json\r\n"
                else:
                    body = b""
                    head = f"DELETE /api/v1/tokens/{made.pop()} HTTP/1.1\r\n{headers}"
                writer.write(f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body)
                status, answer = await _response(reader)
                if status == 201:
                    made.append(json.loads(answer)["token"]["id"])
                ok += status in (201, 204)
        finally:
            writer.close()

    await asyncio.gather(*(worker() for _ in range(GENERATOR_CONNECTIONS)))
    return ok


async def _response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """Status and body of one HTTP/1.1 response: a 204, or a body with a Content-Length (what
    the node sends)."""
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    status = int(head[0].split()[1])
    fields = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in head[1:] if line)}
    if status == 204:
        return status, b""
    if "content-length" not in fields:
        raise RuntimeError(f"a response without Content-Length: {head[0]} {fields}")
    return status, await reader.readexactly(int(fields["content-length"]))


def fanout(cluster: ClusterLab, clients: int, rate: float, seconds: float, token: str) -> dict[str, Any]:
    """Clients on n1 take the cluster's token events while every node makes and revoke API
    tokens: each request is up to 4 events cluster-wide (its audit entry on the node it was
    sent to, the token record's change there and on each other member as replication merges
    it; a member that merges a made-and-revoked token at once sees only the tombstone). The
    audit events are exactly one per request: those check that nothing was lost on the way;
    `lost` counts what any client missed of what some client received."""
    n1 = cluster.nodes[1]
    sources = list(cluster.nodes)  # n1 too: its own writes are events its clients must get
    initial = (cluster.nodes[0].data_dir / "initial-admin-password").read_text().strip()
    password = initial + "-changed"  # as tests.nodeproc.first_admin_token left it
    sent: list[int] = []
    counts: dict[int, set[tuple[str, int, str]]] = {}
    lagged: list[int] = []
    ready = threading.Event()
    load_done = threading.Event()

    def wanted(m: Seen) -> bool:
        if m.type == "audit":
            return m.action in ("token.create", "token.revoke")
        return m.type == "config" and m.kind == "token"

    async def receive_all() -> None:
        sockets = [await open_client(n1, "type=audit,config", token) for _ in range(clients)]
        await asyncio.sleep(2.0)  # the links to the other members
        stop = asyncio.Event()

        async def read(index: int, ws: ClientConnection) -> None:
            got = counts.setdefault(index, set())
            while not stop.is_set():
                try:
                    frame = await asyncio.wait_for(ws.recv(), 1.0)
                except TimeoutError:
                    continue
                for m in SEEN.decode_lines(frame):
                    if m.type == "lagged":
                        lagged.append(index)
                        return
                    if wanted(m):
                        got.add((m.node, m.id, m.type))

        readers = [asyncio.create_task(read(i, ws)) for i, ws in enumerate(sockets)]
        ready.set()
        await asyncio.to_thread(load_done.wait)
        previous = -1
        for _ in range(30):  # the tail: until no client received anything for 2 s (60 s at most)
            now = sum(len(c) for c in counts.values())
            if now == previous:
                break
            previous = now
            await asyncio.sleep(2.0)
        stop.set()
        await asyncio.gather(*readers)
        await asyncio.gather(*(s.close() for s in sockets))

    receiver = threading.Thread(target=in_netns, args=(n1.host.netns, receive_all), daemon=True)
    receiver.start()
    ready.wait(120)
    requests_per_second = rate / 4  # up to 4 events each
    share = requests_per_second / len(sources)
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    try:
        with ProcessPoolExecutor(len(sources), mp_context=multiprocessing.get_context("spawn")) as pool:
            list(pool.map(time.sleep, [1.0] * len(sources)))  # start the processes before the clock does
            own_before = time.process_time()  # this process: the WebSocket clients
            others_before = [cpu_seconds(n) for n in cluster.nodes if n is not n1]
            cpu_before = cpu_seconds(n1)
            started = time.monotonic()
            runs = [
                pool.submit(
                    generate,
                    n.host.netns,
                    n.url,
                    cafile=str(n.data_dir / "pki" / "ca.crt"),
                    password=password,
                    share=share,
                    seconds=seconds,
                )
                for n in sources
            ]
            sent.extend(run.result() for run in runs)
            elapsed = time.monotonic() - started
    finally:
        load_done.set()  # the clients stop even if a generator failed
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    receiver.join()
    cpu = cpu_seconds(n1) - cpu_before
    others = sum(cpu_seconds(n) for n in cluster.nodes if n is not n1) - sum(others_before)
    own = time.process_time() - own_before
    union: set[tuple[str, int, str]] = set().union(*counts.values()) if counts else set()
    received = [len(v) for v in counts.values()]
    return {
        "requests": sum(sent),
        "audit": sum(kind == "audit" for _, _, kind in union),  # exactly one per request
        "events": len(union),
        "rate": len(union) / elapsed,
        "min": min(received) if received else 0,
        "max": max(received) if received else 0,
        "lost": sum(len(union) - r for r in received),
        "lagged": len(lagged),
        "clients": len(received),
        "cpu": cpu,
        "others": others,
        "own": own,
        "generators": children.ru_utime + children.ru_stime - children_before.ru_utime - children_before.ru_stime,
        "elapsed": elapsed,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--idle", type=int, default=1000)
    parser.add_argument("--fanout-clients", type=int, default=100)
    parser.add_argument("--rate", type=float, default=1200.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument(
        "--only", choices=["latency", "idle", "fanout"], action="append", help="run only these parts (repeatable)"
    )
    args = parser.parse_args()
    parts = set(args.only or ["latency", "idle", "fanout"])
    reason = available()
    if reason is not None:
        print(f"bench.events needs network namespaces: {reason}", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="bench-events-") as tmp, Lab(args.nodes) as lab:
        cluster = ClusterLab(lab, Path(tmp), args.nodes)
        try:
            took = cluster.start()
            token = cluster.nodes[0].token
            assert token is not None
            print(f"{args.nodes} nodes up in {took:.1f} s")

            found = [s * 1000 for s in latency(cluster, args.samples, token)] if "latency" in parts else []
            if found:
                print(
                    f"1. latency n2 -> client on n0 ({len(found)} events): p50 {pct(found, 0.5):.1f} ms, "
                    f"p99 {pct(found, 0.99):.1f} ms, max {max(found):.1f} ms, mean {statistics.mean(found):.1f} ms "
                    "(targets p50 < 20 ms, p99 < 100 ms)"
                )

            if "idle" in parts:
                idle(cluster, args.idle, token)
            if "fanout" in parts:
                fanout_part(cluster, args, token)
        finally:
            cluster.stop()
    return 0


def idle(cluster: ClusterLab, count: int, token: str) -> None:
    before, after, spent = idle_clients(cluster, count, token)
    bare_before, bare_after = bare_granian(cluster, count, token)
    extra, bare = after - before, bare_after - bare_before
    print(
        f"2. {count} idle clients on n1 (opened in {spent:.1f} s): RSS {before / 2**20:.1f} -> "
        f"{after / 2**20:.1f} MiB, +{extra / 2**20:.1f} MiB (target < 30 MiB); bare granian with "
        f"the same TLS: +{bare / 2**20:.1f} MiB ({bare / count / 1024:.0f} KiB per socket), so the "
        f"appliance's own share is +{(extra - bare) / 2**20:.1f} MiB "
        f"({(extra - bare) / count / 1024:.1f} KiB per client)"
    )


def fanout_part(cluster: ClusterLab, args: argparse.Namespace, token: str) -> None:
    result = fanout(cluster, args.fanout_clients, args.rate, args.seconds, token)
    per_thousand = result["cpu"] / max(1, result["events"]) * 1000
    print(
        f"3. fan-out: {result['events']} events ({result['audit']} audit events for {result['requests']} "
        f"requests) at {result['rate']:.0f}/s to {result['clients']} clients on n1: each got "
        f"{result['min']}..{result['max']}, lost {result['lost']}, lagged {result['lagged']}; n1 spent "
        f"{result['cpu']:.1f} CPU s ({per_thousand * 1000:.0f} ms per 1000 events to all clients); in "
        f"{result['elapsed']:.1f} s the other nodes spent {result['others']:.1f} CPU s, the clients "
        f"{result['own']:.1f}, the generators {result['generators']:.1f}"
    )


if __name__ == "__main__":
    sys.exit(main())
