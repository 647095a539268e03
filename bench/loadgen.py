"""Load generators for the benchmarks: wrk for saturation, an open-loop generator for fixed rates.

wrk is closed-loop: at saturation that is what we want (how many requests per second the
server completes). At a fixed rate a closed-loop tool under-reports latency when the server
stalls (coordinated omission), and wrk2 is not packaged in Debian, so `open_loop` schedules
each request at t0 + i/rate and measures from that scheduled time, queueing included.
"""

from __future__ import annotations

import asyncio
import re
import ssl
import statistics
import subprocess
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class LoadResult:
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    errors: int


_WRK_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _wrk_latency(text: str, percentile: str) -> float:
    match = re.search(rf"^\s+{percentile}%\s+([\d.]+)(us|ms|s)\s*$", text, re.MULTILINE)
    if not match:
        raise RuntimeError(f"wrk printed no {percentile}% latency:\n{text}")
    return float(match.group(1)) * _WRK_UNITS[match.group(2)]


def wrk(
    url: str,
    *,
    connections: int,
    seconds: int,
    cpu: int | None,
    headers: dict[str, str] | None = None,
    prefix: list[str] | None = None,
) -> LoadResult:
    """Saturate `url` with wrk (one thread) and return its throughput and latency percentiles.

    `prefix` runs wrk through another command, e.g. `ip netns exec NS` to load from inside a
    network namespace."""
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency"]
    for name, value in (headers or {}).items():
        cmd += ["-H", f"{name}: {value}"]
    if cpu is not None:
        cmd = ["taskset", "-c", str(cpu), *cmd]
    cmd = [*(prefix or []), *cmd]
    out = subprocess.run([*cmd, url], capture_output=True, text=True, check=True, timeout=seconds + 30).stdout
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", out, re.MULTILINE)
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if rps is None:
        raise RuntimeError(f"wrk printed no throughput:\n{out}")
    failed = int(errors.group(1)) if errors else 0
    if socket_errors:
        failed += sum(int(g) for g in socket_errors.groups())
    return LoadResult(float(rps.group(1)), _wrk_latency(out, "50"), _wrk_latency(out, "99"), failed)


async def _request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, raw: bytes) -> int:
    writer.write(raw)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    await reader.readexactly(length)
    return status


async def open_loop(
    host: str,
    port: int,
    path: str,
    *,
    rate: int,
    seconds: float,
    connections: int,
    ssl_context: ssl.SSLContext,
    headers: dict[str, str] | None = None,
    method: str = "GET",
    body: bytes = b"",
) -> LoadResult:
    """Send `rate` requests/s for `seconds` over keep-alive TLS connections, open-loop."""
    all_headers = dict(headers or {})
    if body:
        all_headers |= {"Content-Type": "application/json", "Content-Length": str(len(body))}
    extra = "".join(f"{k}: {v}\r\n" for k, v in all_headers.items())
    raw = f"{method} {path} HTTP/1.1\r\nHost: {host}\r\n{extra}\r\n".encode() + body
    queue: asyncio.Queue[float | None] = asyncio.Queue()
    latencies: list[float] = []
    errors = 0

    async def worker() -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection(host, port, ssl=ssl_context)
        try:
            while (scheduled := await queue.get()) is not None:
                try:
                    status = await _request(reader, writer, raw)
                except (OSError, asyncio.IncompleteReadError):
                    errors += 1
                    writer.close()
                    reader, writer = await asyncio.open_connection(host, port, ssl=ssl_context)
                    continue
                if status >= 400:
                    errors += 1
                latencies.append(time.perf_counter() - scheduled)
        finally:
            writer.close()

    workers = [asyncio.create_task(worker()) for _ in range(connections)]
    total = int(rate * seconds)
    start = time.perf_counter() + 0.2  # let the connections open first
    for i in range(total):
        scheduled = start + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        queue.put_nowait(scheduled)
    for _ in workers:
        queue.put_nowait(None)
    await asyncio.gather(*workers)
    elapsed = time.perf_counter() - start
    latencies.sort()
    return LoadResult(
        requests_per_second=len(latencies) / elapsed,
        p50_ms=statistics.median(latencies) * 1000,
        p99_ms=latencies[int(len(latencies) * 0.99) - 1] * 1000,
        errors=errors,
    )
