"""API benchmark: `GET /api/v1/node` on a real node against the bare-granian ceiling, same run.

The node and the bare ASGI app each run pinned to core 0; the load generators run on core 1.
For both it prints throughput at saturation (wrk, 16 connections) and latency at a fixed
1000 req/s (open-loop), then the ratios (of throughput, and of CPU time per request, which
varies far less on a shared machine), and the node's resident memory when idle. The node
is measured anonymous-equivalent (no auth header would be refused, so: with an admin API
token) and the per-user rate limit is turned off (`--rate-limit 0`): with it on, one user is
held to 10 req/s and the figure would measure the limiter. Login is measured open-loop at a
fixed rate, since each login costs an argon2id hash by design.

Then the memory phase: 100 distinct users (viewers) are created, all log in at once (each
login is an argon2id hash of 19 MiB), and every session then polls `GET /api/v1/node` for the
load duration. It prints the node's resident size fresh (idle after start), after the logins
and after that load; the target is under 100 MiB after the load (issue 20). The nodes run
with `GLIBC_TUNABLES=glibc.malloc.hugetlb=1`, as the image's unit starts them
(appliance/memory.py says why).

Targets: p99 under 5 ms at 1000 req/s; throughput at least half the ceiling; idle RSS under
100 MB (issue 2); login p99 under 200 ms (the seed's web login target).

    .venv/bin/python -m bench.api [--seconds 10] [--rate 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import msgspec

from bench.loadgen import LoadResult, open_loop, wrk
from tests.nodeproc import NodeProcess, free_port

SERVER_CPU = 0
CLIENT_CPU = 1


def _start_bare(cert: Path, key: Path, body_file: Path, port: int) -> subprocess.Popen[bytes]:
    granian = Path(sys.executable).parent / "granian"
    return subprocess.Popen(
        [
            "taskset", "-c", str(SERVER_CPU), str(granian),
            "--interface", "asgi", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
            "--ssl-certificate", str(cert), "--ssl-keyfile", str(key), "--log-level", "warning",
            "bench.bare_asgi:app",
        ],
        env={**os.environ, "BENCH_BODY_FILE": str(body_file), "PYTHONPATH": str(Path(__file__).parent.parent)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip


def _wait_http(url: str, context: ssl.SSLContext, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, verify=context, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    raise TimeoutError(url)


def _cpu_seconds(pid: int) -> float:
    """CPU time (user and system) of a process and its children so far (granian's workers are
    children). Unlike requests per second, CPU per request hardly moves with what else runs
    on the machine."""
    total = 0.0
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    for process in (pid, *map(int, children)):
        fields = Path(f"/proc/{process}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def _pin_current_process(cpu: int) -> None:
    os.sched_setaffinity(0, {cpu})


def _row(name: str, sat: LoadResult, fixed: LoadResult) -> str:
    return (
        f"{name:<22} {sat.requests_per_second:>10.0f} {sat.p50_ms:>8.2f} {sat.p99_ms:>8.2f}"
        f" {fixed.requests_per_second:>8.0f} {fixed.p50_ms:>8.2f} {fixed.p99_ms:>8.2f} {sat.errors + fixed.errors:>6}"
    )


USERS = 100
HUGETLB = "glibc.malloc.hugetlb=1"
USER_PASSWORD = "bench-user-password-1"


async def _log_in(client: httpx.AsyncClient, name: str) -> None:
    for _ in range(50):  # the login throttle may ask a burst from one address to wait
        answer = await client.post("/api/v1/auth/login", json={"username": name, "password": USER_PASSWORD})
        if answer.status_code != 429:
            answer.raise_for_status()
            return
        await asyncio.sleep(float(answer.headers.get("retry-after", "1")))
    raise RuntimeError(f"{name} could not log in")


async def _poll(client: httpx.AsyncClient, until: float) -> tuple[int, int]:
    done = errors = 0
    while time.monotonic() < until:
        try:
            errors += (await client.get("/api/v1/node")).status_code != 200
        except httpx.TransportError:
            errors += 1
        done += 1
        await asyncio.sleep(0.05)
    return done, errors


async def _users_phase(node: NodeProcess, seconds: float, rss: list[int]) -> tuple[float, int, int]:
    """Log USERS users in at once, note the RSS, then poll with every session for `seconds`;
    return (seconds the logins took, polls, failed polls)."""
    context = node.ssl_context()
    clients = [httpx.AsyncClient(base_url=node.url, verify=context, timeout=60) for _ in range(USERS)]
    try:
        start = time.monotonic()
        await asyncio.gather(*(_log_in(client, f"bench{i}") for i, client in enumerate(clients)))
        logged_in = time.monotonic() - start
        await asyncio.sleep(1)
        rss.append(node.rss_bytes())
        until = time.monotonic() + seconds
        counts = await asyncio.gather(*(_poll(client, until) for client in clients))
    finally:
        await asyncio.gather(*(client.aclose() for client in clients))
    return logged_in, sum(c[0] for c in counts), sum(c[1] for c in counts)


def _mib(size: int) -> str:
    return f"{size / 2**20:.1f} MiB"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=10, help="duration of each load (default: %(default)s)")
    parser.add_argument("--rate", type=int, default=1000, help="fixed rate in req/s (default: %(default)s)")
    parser.add_argument("--login-rate", type=int, default=20, help="fixed login rate per s (default: %(default)s)")
    args = parser.parse_args()
    # The node runs with the allocator setting the image's unit gives it (appliance/memory.py).
    os.environ["GLIBC_TUNABLES"] = HUGETLB
    _pin_current_process(CLIENT_CPU)

    with tempfile.TemporaryDirectory(prefix="debvisor-bench-") as tmp:
        node = NodeProcess(
            Path(tmp) / "node",
            name="bench",
            prefix=["taskset", "-c", str(SERVER_CPU)],
            extra_args=["--rate-limit", "0"],
        )
        bare: subprocess.Popen[bytes] | None = None
        try:
            node.start()
            node.wait_ready()
            context = node.ssl_context()
            time.sleep(2)
            idle_rss = node.rss_bytes()
            token = node.admin_token()
            auth = {"Authorization": f"Bearer {token}"}
            with node.admin_client() as client:
                body = client.get("/api/v1/node").content
            password = (node.data_dir / "initial-admin-password").read_text().strip() + "-changed"
            body_file = Path(tmp) / "body.json"
            body_file.write_bytes(body)
            bare_port = free_port()
            pki = node.data_dir / "pki"
            bare = _start_bare(pki / "node.crt", pki / "node.key", body_file, bare_port)
            _wait_http(f"https://127.0.0.1:{bare_port}/api/v1/node", context)

            results: dict[str, tuple[LoadResult, LoadResult]] = {}
            cpu_per_request: dict[str, float] = {}
            assert node.proc is not None
            targets: tuple[tuple[str, int, dict[str, str], int], ...] = (
                ("bare granian ASGI", bare_port, {}, bare.pid),
                ("debvisor /api/v1/node", node.api_port, auth, node.proc.pid),
            )
            for name, port, headers, pid in targets:
                url = f"https://127.0.0.1:{port}/api/v1/node"
                used = _cpu_seconds(pid)
                sat = wrk(url, connections=16, seconds=args.seconds, cpu=CLIENT_CPU, headers=headers)
                cpu_per_request[name] = (_cpu_seconds(pid) - used) / (sat.requests_per_second * args.seconds)
                fixed = asyncio.run(
                    open_loop(
                        "127.0.0.1", port, "/api/v1/node", headers=headers,
                        rate=args.rate, seconds=args.seconds, connections=16, ssl_context=context,
                    )
                )  # fmt: skip
                results[name] = (sat, fixed)
            login_body = msgspec.json.encode({"username": "admin", "password": password})
            logins = asyncio.run(
                open_loop(
                    "127.0.0.1", node.api_port, "/api/v1/auth/login", method="POST", body=login_body,
                    rate=args.login_rate, seconds=args.seconds, connections=8, ssl_context=context,
                )
            )  # fmt: skip
            loaded_rss = node.rss_bytes()

            # A fresh node for the memory phase: its figures do not depend on the runs above.
            node.stop()
            node = NodeProcess(
                Path(tmp) / "users",
                name="bench",
                prefix=["taskset", "-c", str(SERVER_CPU)],
                extra_args=["--rate-limit", "0"],
            )
            node.start()
            node.wait_ready()
            time.sleep(2)
            rss = [node.rss_bytes()]  # fresh
            with node.admin_client(timeout=30) as client:
                for i in range(USERS):
                    user = {"name": f"bench{i}", "role": "viewer", "password": USER_PASSWORD}
                    client.post("/api/v1/users", json=user).raise_for_status()
            time.sleep(1)
            rss.append(node.rss_bytes())  # with the users created
            login_seconds, polls, poll_errors = asyncio.run(_users_phase(node, args.seconds, rss))
            time.sleep(1)
            rss.append(node.rss_bytes())  # after the load
        finally:
            if bare is not None:
                bare.send_signal(signal.SIGTERM)
                bare.wait(10)
            node.stop()

    print(
        f"\nGET /api/v1/node over HTTPS, {len(body)}-byte body; server on core {SERVER_CPU}, load on core {CLIENT_CPU}"
    )
    print(f"saturation: wrk 16 connections {args.seconds}s; fixed: open-loop {args.rate} req/s, 16 connections\n")
    columns = ("sat rps", "p50 ms", "p99 ms", "fix rps", "p50 ms", "p99 ms", "errors")
    widths = (10, 8, 8, 8, 8, 8, 6)
    print(f"{'target':<22} " + " ".join(f"{c:>{w}}" for c, w in zip(columns, widths, strict=True)))
    for name, (sat, fixed) in results.items():
        print(_row(name, sat, fixed))
    bare_sat, bare_fixed = results["bare granian ASGI"]
    node_sat, node_fixed = results["debvisor /api/v1/node"]
    print(
        f"\nthroughput ratio debvisor/bare: {node_sat.requests_per_second / bare_sat.requests_per_second:.2f}"
        f" (target >= 0.50)"
    )
    bare_cpu, node_cpu = cpu_per_request["bare granian ASGI"], cpu_per_request["debvisor /api/v1/node"]
    print(
        f"CPU per request at saturation: bare {bare_cpu * 1e6:.0f} us, debvisor {node_cpu * 1e6:.0f} us;"
        f" ratio {bare_cpu / node_cpu:.2f} (what the throughput ratio is on a core of its own)"
    )
    print(f"p99 at {args.rate} req/s: {node_fixed.p99_ms:.2f} ms (target < 5 ms; bare {bare_fixed.p99_ms:.2f} ms)")
    print(f"node RSS idle: {idle_rss / 2**20:.1f} MiB (target < 100 MiB); after load: {loaded_rss / 2**20:.1f} MiB")
    print(
        f"login at {args.login_rate}/s (argon2id, 19 MiB, t=2): p50 {logins.p50_ms:.1f} ms,"
        f" p99 {logins.p99_ms:.1f} ms (target < 200 ms), errors {logins.errors}"
    )
    print(
        f"\n{USERS} users: all log in at once ({login_seconds:.1f} s until the last is in), then each"
        f" polls GET /api/v1/node every 50 ms for {args.seconds} s ({polls} polls, {poll_errors} errors)"
    )
    fresh, created, logged_in, loaded = rss
    print(
        f"node RSS fresh: {_mib(fresh)}; {USERS} users created: {_mib(created)}; all logged in: {_mib(logged_in)};"
        f" after their load: {_mib(loaded)} (target < 100 MiB)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
