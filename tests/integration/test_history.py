"""Resource history on real nodes: it fills, survives a restart with the downtime shown as a
gap, and is served for one node through another (two `debvisor serve` in namespaces).

The nodes sample the real /proc of their namespace every 5 s: CPU and memory are the host's,
the network columns count the namespace's own link, which gossip between the two keeps busy.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.clusterlab import ClusterLab, running_cluster
from tests.kit.wait import wait_until
from tests.nodeproc import DEBVISOR, NodeProcess
from tests.nswebsocket import open_websocket, receive

pytestmark = [pytest.mark.integration, pytest.mark.privileged]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterLab]:
    with running_cluster(tmp_path_factory, 2, label="history") as cluster:
        yield cluster


def history(cluster: ClusterLab, asked: int, about: str, **params: str) -> dict[str, Any]:
    response = cluster.nodes[asked].client().get(f"/api/v1/nodes/{about}/history", params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def column(body: dict[str, Any], name: str) -> list[float | None]:
    values: list[float | None] = next(s for s in body["series"] if s["name"] == name)["avg"]
    return values


def filled(body: dict[str, Any], name: str) -> int:
    return sum(v is not None for v in column(body, name))


def test_history_fills_and_is_served_through_another_node(cluster: ClusterLab) -> None:
    def enough() -> bool:
        body = history(cluster, 0, "n1", metrics="cpu,net")
        return filled(body, "cpu") >= 2 and any(v for v in column(body, "net_rx") if v)

    took = wait_until(enough, timeout=40, interval=1.0, what="n1's history to hold two samples with rates")
    print(f"\ntwo samples with rates in n1's history after {took:.1f} s more")
    body = history(cluster, 0, "n1", metrics="cpu,memory,net,disk")
    assert body["node"] == "n1"
    assert (body["step"], len(body["times"])) == (5, 720)
    assert all(0.0 <= v <= 100.0 for v in column(body, "cpu") if v is not None)
    used, available = column(body, "mem_used")[-3:], column(body, "mem_available")[-3:]
    assert any(u is not None and a is not None and u > 0 and a > 0 for u, a in zip(used, available, strict=True))
    day = history(cluster, 1, "n1", range="1d", metrics="cpu")
    assert day["step"] == 60
    assert filled(day, "cpu") >= 1
    bad = cluster.nodes[0].client().get("/api/v1/nodes/n1/history", params={"metrics": "gpu"})
    assert bad.status_code == 422  # answered by n1, passed back by n0
    assert bad.headers["content-type"] == "application/problem+json"


def test_each_sample_reaches_an_events_client_on_another_node(cluster: ClusterLab) -> None:
    n0 = cluster.nodes[0]
    url = f"wss://{n0.host.address}:8443/api/v1/events?type=history&node=n1"
    with open_websocket(n0.host.netns, url, n0.data_dir / "pki" / "ca.crt", token=n0.token) as ws:
        samples: list[dict[str, Any]] = []
        deadline = time.monotonic() + 20
        while len(samples) < 2 and time.monotonic() < deadline:
            samples += [m for m in receive(ws, max(0.01, deadline - time.monotonic())) if m["type"] == "history"]
    assert len(samples) >= 2, samples
    first, second = samples[:2]
    assert (first["node"], first["permission"]) == ("n1", "node:read")
    assert second["time"] - first["time"] == 5  # one per 5 s bucket
    assert second["mem_used"] > 0
    assert second["cpu"] is not None
    assert 0.0 <= second["cpu"] <= 100.0
    # the same bucket, as the history route reports it
    body = history(cluster, 0, "n1", metrics="cpu")
    cpu = dict(zip(body["times"], column(body, "cpu"), strict=True))
    assert cpu[second["time"]] == second["cpu"]


def test_history_survives_a_restart_and_shows_the_downtime_as_a_gap(cluster: ClusterLab) -> None:
    node = cluster.nodes[1]
    before = history(cluster, 1, "n1", metrics="cpu")
    samples_before = filled(before, "cpu")
    assert samples_before >= 2
    node.stop()  # SIGTERM: the history is saved at stop
    saved = node.data_dir / "history" / "history.bin"
    assert saved.exists()
    assert saved.stat().st_mode & 0o777 == 0o600
    time.sleep(16)  # three 5 s buckets with nobody sampling
    node.start()
    node.wait_ready()
    cluster.wait_all_see({"n0": "alive", "n1": "alive"}, timeout=20)

    def resumed() -> bool:
        return filled(history(cluster, 0, "n1", metrics="cpu"), "cpu") > samples_before

    wait_until(resumed, timeout=30, interval=1.0, what="n1 to sample again after its restart")
    cpu = column(history(cluster, 0, "n1", metrics="cpu"), "cpu")
    first = next(i for i, v in enumerate(cpu) if v is not None)
    last = max(i for i, v in enumerate(cpu) if v is not None)
    inside = cpu[first : last + 1]
    gaps = [len(run) for run in "".join("x" if v is None else "." for v in inside).split(".") if run]
    assert gaps, inside
    assert max(gaps) >= 3, inside  # the downtime, not interpolated
    assert sum(v is not None for v in cpu[:last]) >= samples_before  # what was recorded before is back


def test_the_command_line_prints_a_nodes_history(tmp_path: Path) -> None:
    with NodeProcess(tmp_path / "node") as node:
        node.wait_ready()
        env = {**os.environ, "DEBVISOR_URL": node.url, "DEBVISOR_CA": str(node.data_dir / "pki" / "ca.crt")}
        env["DEBVISOR_TOKEN"] = node.admin_token()

        def cli(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([*DEBVISOR, *args], capture_output=True, text=True, env=env, timeout=30, check=False)

        def has_cpu() -> bool:
            body = json.loads(cli("node", "history", "n1", "--metric", "cpu", "--json").stdout)
            return filled(body, "cpu") >= 1

        wait_until(has_cpu, timeout=30, interval=1.0, what="a CPU sample in n1's history")
        table = cli("node", "history", "n1", "--metric", "cpu", "--metric", "memory")
        assert table.returncode == 0, table.stderr
        lines = table.stdout.splitlines()
        assert lines[0] == "n1: last 1h in 5 s buckets"
        assert lines[1].split() == ["COLUMN", "LAST", "AVG", "MAX"]
        assert [line.split()[0] for line in lines[2:]] == ["cpu", "mem_used", "mem_available"]
        assert lines[2].split()[2] == "%"  # "cpu  12.5 %  ..."
        assert any(ch in lines[3] for ch in "▁▂▃▄▅▆▇█")  # the sparkline
        unknown = cli("node", "history", "nobody")
        assert unknown.returncode == 1
        assert unknown.stderr.strip().startswith("debvisor: 404")
