"""docs/monitoring.md walked through: Debian's Prometheus scrapes two real nodes.

Two `debvisor serve` nodes (rate limit on, as shipped) in two network namespaces, and
Debian's `prometheus` in a third, configured with the scrape job copied from
docs/monitoring.md (only the addresses, file paths and intervals are replaced, so the doc
and the test cannot drift) with a viewer token made as the doc says. Prometheus finds the
nodes through `GET /api/v1/metrics/targets` and scrapes them every second for about 40 s,
while the token's owner keeps their own request bucket drained from elsewhere. Every scrape
must succeed: no 429, no failed scrape. `promtool` checks the scraped text and the config,
and every metric the shipped Grafana dashboard queries must be one a node exports.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.clusterlab import ClusterNode, bootstrap_admin_token, join_token
from tests.kit.need import require_available, require_tool
from tests.kit.wait import wait_until
from tests.netns import Host, Lab, available
from tests.nsclient import NamespaceClient, enter_netns

pytestmark = [pytest.mark.integration, pytest.mark.privileged]

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "monitoring.md"
DASHBOARD = REPO / "docs" / "grafana-dashboard.json"
PROMETHEUS_PORT = 9090
SCRAPE_SECONDS = 40  # "a minute" compressed: at a 1 s interval that is ~40 scrapes per node
# What the doc's example uses, replaced by the test's own values.
DOC_NODES = ("10.0.0.11:8443", "10.0.0.12:8443")
DOC_TOKEN_FILE = "/etc/prometheus/debvisor.token"
DOC_CA_FILE = "/etc/prometheus/debvisor-ca.crt"


def documented_job() -> str:
    """The scrape configuration block of docs/monitoring.md, as written there."""
    blocks = re.findall(r"```yaml\n(.*?)```", DOC.read_text(), re.S)
    jobs = [b for b in blocks if "job_name: debvisor" in b]
    assert len(jobs) == 1, "docs/monitoring.md must hold exactly one debvisor scrape job"
    return str(jobs[0])


def scrape_config(nodes: list[str], token_file: Path, ca_file: Path) -> str:
    text = documented_job()
    for placeholder in (*DOC_NODES, DOC_TOKEN_FILE, DOC_CA_FILE, "scrape_interval: 15s", "refresh_interval: 60s"):
        assert placeholder in text, f"the doc's scrape job no longer says {placeholder!r}"
    for placeholder, value in zip(DOC_NODES, nodes, strict=True):
        text = text.replace(placeholder, value)
    text = text.replace(DOC_TOKEN_FILE, str(token_file)).replace(DOC_CA_FILE, str(ca_file))
    text = text.replace("scrape_interval: 15s", "scrape_interval: 1s")
    return "global:\n  evaluation_interval: 1s\n" + text.replace("refresh_interval: 60s", "refresh_interval: 2s")


class PlainClient:
    """Plain HTTP from inside a namespace (Prometheus's own API)."""

    def __init__(self, netns: str, base_url: str) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, initializer=enter_netns, initargs=(netns,))
        self._client = self._pool.submit(lambda: httpx.Client(base_url=base_url, timeout=5.0)).result()

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self._pool.submit(lambda: self._client.get(path, **kwargs)).result()

    def query(self, promql: str) -> list[dict[str, Any]]:
        response = self.get("/api/v1/query", params={"query": promql})
        response.raise_for_status()
        return list(response.json()["data"]["result"])

    def close(self) -> None:
        self._pool.submit(self._client.close).result()
        self._pool.shutdown()


def viewer_token(node: ClusterNode) -> str:
    """A `viewer` token named prometheus, made from a password session as the doc says."""
    password = (node.data_dir / "initial-admin-password").read_text().strip() + "-changed"  # tests/nodeproc.py

    def make(client: httpx.Client) -> str:
        login = client.post("/api/v1/auth/login", json={"username": "admin", "password": password})
        login.raise_for_status()
        body = {"name": "prometheus", "role": "viewer", "expires_in_seconds": 31536000}
        created = client.post("/api/v1/tokens", json=body, headers={"X-CSRF-Token": login.json()["csrf_token"]})
        created.raise_for_status()
        return str(created.json()["secret"])

    with NamespaceClient(node.host.netns, node.url, node.data_dir / "pki" / "ca.crt") as browser:
        return browser.call(make)


def dashboard_metrics() -> set[str]:
    """Every metric name the shipped dashboard's queries use."""
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel.get("targets", [])]
    assert exprs, "the dashboard has no queries"
    return {name for expr in exprs for name in re.findall(r"\b((?:debvisor|process)_[a-z_]+)\b", expr)}


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Lab, list[ClusterNode], Path]]:
    require_available(available())
    require_tool("prometheus")
    work = tmp_path_factory.mktemp("prometheus")
    with Lab(3) as lab:
        nodes = [ClusterNode(work, lab.host(i), f"n{i}") for i in range(2)]
        try:
            rate_limited = ["--rate-limit", "10"]  # the shipped limit (the lab's default turns it off)
            nodes[0].start(extra=rate_limited)
            nodes[0].wait_ready()
            token = bootstrap_admin_token(nodes[0])
            nodes[1].token = token
            nodes[1].start(join=join_token(nodes[0]), extra=rate_limited)
            nodes[1].wait_ready()
            wait_until(lambda: all(n.members() == {"n0": "alive", "n1": "alive"} for n in nodes), timeout=30)
            yield lab, nodes, work
        finally:
            for node in nodes:
                node.stop()


def test_promtool_accepts_a_real_nodes_metrics(lab: tuple[Lab, list[ClusterNode], Path]) -> None:
    _, nodes, _ = lab
    scraper = viewer_token(nodes[0])
    with NamespaceClient(nodes[1].host.netns, nodes[1].url, nodes[1].data_dir / "pki" / "ca.crt", scraper) as c:
        wait_until(lambda: c.get("/metrics").status_code == 200, timeout=10, interval=0.2)  # token replicated
        response = c.get("/metrics")
    assert response.status_code == 200, response.text
    text = response.text
    checked = subprocess.run(
        ["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=30, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    exported = set(re.findall(r"^# TYPE (\S+) ", text, re.M))
    for family in ("debvisor_http_requests_total", "debvisor_cluster_members", "debvisor_audit_anchored_seq"):
        assert family in exported, sorted(exported)
    # The dashboard's queries name series a node exports (counters end in _total, histograms in _bucket).
    # A labelled gauge with no series yet (no tampering evidence) shows only in its TYPE line.
    series = set(re.findall(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)", text, re.M)) | exported
    missing = sorted(m for m in dashboard_metrics() if m not in series)
    assert not missing, f"docs/grafana-dashboard.json queries metrics no node exports: {missing}"


def test_documented_config_scrapes_both_nodes_without_a_single_refusal(
    lab: tuple[Lab, list[ClusterNode], Path],
) -> None:
    lab_, nodes, work = lab
    prom_host: Host = lab_.host(2)
    token_file = work / "debvisor.token"
    scraper = viewer_token(nodes[0])
    token_file.write_text(scraper)
    for node in nodes:  # the token has reached every node
        with NamespaceClient(node.host.netns, node.url, node.data_dir / "pki" / "ca.crt", scraper) as c:
            wait_until(lambda c=c: c.get("/api/v1/metrics/targets").status_code == 200, timeout=10, interval=0.2)  # type: ignore[misc]
    token_file.chmod(0o600)
    ca_file = work / "debvisor-ca.crt"
    shutil.copy(nodes[0].data_dir / "pki" / "ca.crt", ca_file)
    config = work / "prometheus.yml"
    config.write_text(scrape_config([n.url.removeprefix("https://") for n in nodes], token_file, ca_file))
    checked = subprocess.run(
        ["promtool", "check", "config", str(config)], check=False, capture_output=True, text=True, timeout=30
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr

    # The token's owner keeps their own bucket drained on both nodes the whole time.
    stop = threading.Event()
    owner_answers: list[int] = []

    def drain() -> None:
        clients = [
            NamespaceClient(prom_host.netns, n.url, n.data_dir / "pki" / "ca.crt", nodes[0].token) for n in nodes
        ]
        try:
            while not stop.is_set():
                for client in clients:
                    owner_answers.append(client.get("/api/v1/node").status_code)
                time.sleep(0.04)  # ~12 requests/s per node, over the 10/s the owner may make
        finally:
            for client in clients:
                client.close()

    storage = work / "tsdb"
    log = (work / "prometheus.log").open("wb")
    prometheus = prom_host.popen(
        [
            "prometheus",
            f"--config.file={config}",
            f"--storage.tsdb.path={storage}",
            f"--web.listen-address={prom_host.address}:{PROMETHEUS_PORT}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    drainer = threading.Thread(target=drain, daemon=True)
    api = PlainClient(prom_host.netns, f"http://{prom_host.address}:{PROMETHEUS_PORT}")
    try:
        wait_until(lambda: api.get("/-/ready").status_code == 200, timeout=30, interval=0.2)
        drainer.start()
        wait_until(lambda: len(api.query('up{job="debvisor"} == 1')) == 2, timeout=20, interval=0.5)
        time.sleep(SCRAPE_SECONDS)
        stop.set()
        drainer.join(timeout=10)

        targets = api.get("/api/v1/targets", params={"state": "active"}).json()["data"]["activeTargets"]
        by_node = {t["labels"]["node"]: t for t in targets if t["labels"]["job"] == "debvisor"}
        assert sorted(by_node) == ["n0", "n1"], targets  # two discovery URLs, each node scraped once
        for name, target in by_node.items():
            assert target["health"] == "up", (name, target)
            assert target["lastError"] == "", (name, target)
        window = f"{SCRAPE_SECONDS + 30}s"
        scrapes = {
            r["metric"]["node"]: float(r["value"][1])
            for r in api.query(f'count_over_time(up{{job="debvisor"}}[{window}])')
        }
        worst = {
            r["metric"]["node"]: float(r["value"][1])
            for r in api.query(f'min_over_time(up{{job="debvisor"}}[{window}])')
        }
        assert all(count >= SCRAPE_SECONDS * 0.7 for count in scrapes.values()), scrapes  # many scrapes ...
        assert worst == {"n0": 1.0, "n1": 1.0}, worst  # ... and not one failed
        refused = api.query('debvisor_http_requests_total{route=~"/metrics|/api/v1/metrics/targets",status="429"}')
        assert refused == [], refused
        # Prometheus's own counters: no discovery request failed, no scrape was cut short.
        own = api.get("/metrics").text
        sd_failures = re.findall(r"^prometheus_sd_http_failures_total (\S+)$", own, re.M)
        assert sd_failures == ["0"], sd_failures
        cut = re.findall(r"^(prometheus_target_scrapes_\w+_total) (\S+)$", own, re.M)
        assert cut, "Prometheus no longer exports its prometheus_target_scrapes_* counters"
        assert all(value == "0" for _, value in cut), cut
        assert 429 in owner_answers, "the owner's own bucket was never drained: the test proves nothing"
    finally:
        stop.set()
        api.close()
        prom_host.kill_process(prometheus, signal.SIGTERM, wait=15)
    time.sleep(2.5)  # the owner's bucket refills, so reading the audit is not itself refused
    for node in nodes:
        entries = node.client().get("/api/v1/audit", params={"action": "auth.rate_limited", "limit": 100}).json()
        items = entries["entries"] if isinstance(entries, dict) else entries
        targets_refused = [e["target"] for e in items]
        # The owner's own refusals are audited (once a minute per user and bucket) ...
        assert "/api/v1/node" in targets_refused, (node.name, targets_refused)
        # ... and a refused scrape would be too, even within that minute: there is none.
        assert not [t for t in targets_refused if "metrics" in t], (node.name, targets_refused)
