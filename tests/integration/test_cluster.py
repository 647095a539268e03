"""Five real nodes in five network namespaces: join, kill, cut off, restart, remove.

Each node is a real `debvisor serve` in its own namespace on a bridge; clients talk to them
from inside the namespaces. One cluster serves the tests of this module, in order.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.clusterlab import ClusterLab, join_token, running_cluster
from tests.kit.wait import check_for, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.privileged]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterLab]:
    with running_cluster(tmp_path_factory, 5, hosts=6) as cluster:
        print(f"\n5 nodes joined and seen alive everywhere in {cluster.join_seconds:.2f} s")
        yield cluster


def test_five_nodes_see_each_other_alive(cluster: ClusterLab) -> None:
    for node in cluster.nodes:
        members = node.client().get("/api/v1/nodes").json()
        assert {m["name"]: m["state"] for m in members} == {f"n{i}": "alive" for i in range(5)}
        assert all(m["api_address"].endswith(":8443") and m["version"] for m in members)


def test_users_reach_joined_nodes(cluster: ClusterLab) -> None:
    # the admin token was created on n0 before the others joined: they received it
    assert cluster.nodes[4].client().get("/api/v1/node").json()["name"] == "n4"


def test_user_created_on_one_node_logs_in_on_another(cluster: ClusterLab) -> None:
    n0, n4 = cluster.nodes[0], cluster.nodes[4]
    created = n0.client().post("/api/v1/users", json={"name": "ops", "role": "operator", "password": "replicated pass"})
    assert created.status_code == 201, created.text

    def logs_in() -> bool:
        response = n4.client().post("/api/v1/auth/login", json={"username": "ops", "password": "replicated pass"})
        return response.status_code == 200

    took = wait_until(logs_in, timeout=10, interval=0.1)
    print(f"\nuser created on n0 -> login on n4: {took:.2f} s")


def test_token_revoked_on_one_node_is_refused_on_another(cluster: ClusterLab) -> None:
    n1, n3 = cluster.nodes[1], cluster.nodes[3]

    def make_token(client: object) -> dict[str, object]:
        login = client.post("/api/v1/auth/login", json={"username": "ops", "password": "replicated pass"})  # type: ignore[attr-defined]
        csrf = {"X-CSRF-Token": login.json()["csrf_token"]}
        return dict(client.post("/api/v1/tokens", json={"name": "ci"}, headers=csrf).json())  # type: ignore[attr-defined]

    from tests.nsclient import NamespaceClient

    with NamespaceClient(n1.host.netns, n1.url, n1.data_dir / "pki" / "ca.crt") as browser:
        created = browser.call(make_token)
    secret = str(created["secret"])
    token_id = created["token"]["id"]  # type: ignore[index]
    with NamespaceClient(n3.host.netns, n3.url, n3.data_dir / "pki" / "ca.crt", secret) as program:
        wait_until(lambda: program.get("/api/v1/node").status_code == 200, timeout=10, interval=0.1)
        assert n1.client().delete(f"/api/v1/tokens/{token_id}").status_code == 204
        revoked = time.monotonic()
        took = wait_until(lambda: program.get("/api/v1/node").status_code == 401, timeout=10, interval=0.05)
        print(f"\ntoken revoked on n1 -> refused on n3: {took:.2f} s")
        assert time.monotonic() - revoked < 10


def test_requests_for_another_node_are_forwarded(cluster: ClusterLab) -> None:
    n0 = cluster.nodes[0]
    for target in ("n0", "n2", "n4"):
        response = n0.client().get(f"/api/v1/nodes/{target}")
        assert response.status_code == 200, response.text
        assert response.json()["name"] == target
    missing = n0.client().get("/api/v1/nodes/nobody")
    assert missing.status_code == 404
    assert missing.headers["content-type"].startswith("application/problem+json")
    # the target audits nothing for a read, but it saw the caller as the forwarded admin
    whoami = n0.client().get("/api/v1/auth/whoami").json()
    assert whoami["user"] == "admin"


def test_forged_forwarding_is_refused(cluster: ClusterLab) -> None:
    import base64

    import msgspec

    from appliance.api.forward import ForwardedIdentity
    from appliance.identity import pki

    n2 = cluster.nodes[2]
    claim = msgspec.json.encode(
        ForwardedIdentity(
            node="n0", target="n2", user="admin", role="admin", via="token", credential_id="x",  # type: ignore[arg-type]
            source="192.0.2.1", method="GET", path="/api/v1/node", at=time.time(), nonce="abc",
        )
    )  # fmt: skip
    outsider_key = pki.new_key()
    outsider_ca_key, outsider_ca = pki.new_ca("outsider", dt.datetime.now(dt.UTC))
    cert = pki.issue_node_cert(
        outsider_ca_key, outsider_ca, outsider_key.public_key(), name="n0", addresses=[],
        now=dt.datetime.now(dt.UTC),
    )  # fmt: skip
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).decode().rstrip("=")

    headers = {
        "x-debvisor-forwarded": b64(claim),
        "x-debvisor-signature": b64(outsider_key.sign(claim, ec.ECDSA(hashes.SHA256()))),
        "x-debvisor-forwarder-cert": b64(cert.public_bytes(serialization.Encoding.DER)),
    }
    from tests.nsclient import NamespaceClient

    with NamespaceClient(n2.host.netns, n2.url, n2.data_dir / "pki" / "ca.crt") as anonymous:
        response = anonymous.get("/api/v1/node", headers=headers)
    assert response.status_code == 401
    assert "not from this cluster" in response.json()["detail"]


def test_audit_of_all_nodes_is_merged(cluster: ClusterLab) -> None:
    for node in cluster.nodes[1:3]:
        assert node.client().put("/api/v1/node", json={"description": f"audited on {node.name}"}).status_code == 200
    merged = cluster.nodes[0].client().get("/api/v1/audit", params={"node": "all", "action": "put /api/v1/node"}).json()
    assert merged["unreachable"] == []
    assert {e["node"] for e in merged["entries"]} >= {"n1", "n2"}
    times = [e["ts"] for e in merged["entries"]]
    assert times == sorted(times)
    one = cluster.nodes[0].client().get("/api/v1/audit", params={"node": "n2", "action": "put /api/v1/node"}).json()
    assert {e["node"] for e in one["entries"]} == {"n2"}


def test_sigkilled_node_is_declared_dead_by_all(cluster: ClusterLab) -> None:
    victim = cluster.nodes[4]
    observers = cluster.nodes[:4]

    # Its last word must be out before it dies: a node publishes its facts once it has started
    # and they spread by rumour and anti-entropy rounds (1 s) in the next seconds, while the
    # tests before this one can take well under a second after the cluster formed. Killing it
    # earlier tested nothing about the dead but a race (CI once killed n4 0.6 s after it joined).
    def everyone_has_its_facts() -> bool:
        return all("n4" in n.client().get("/api/v1/cluster").json()["facts"] for n in observers)

    wait_until(everyone_has_its_facts, timeout=30, interval=0.1)
    victim.kill()
    killed = time.monotonic()
    took = cluster.wait_all_see({"n4": "dead"}, timeout=10, observers=observers)
    print(f"\nSIGKILL -> dead on all observers: {took:.2f} s")
    # The target (all within 1 s; ~0.26 s measured) is bench/gossip's to report; the bound here
    # only catches a broken fast path (a refused reconnect) without flaking on a busy machine.
    assert took < 2.5, f"SIGKILL took {took:.2f} s to be seen everywhere"
    assert time.monotonic() - killed < 10
    started = time.monotonic()
    dead = cluster.nodes[0].client().get("/api/v1/nodes/n4")
    assert dead.status_code == 503
    assert "dead" in dead.json()["detail"]
    assert time.monotonic() - started < 2.0  # answered at once from gossip state, not after a timeout
    summary = cluster.nodes[1].client().get("/api/v1/cluster", params={"fresh": "true"}).json()
    assert summary["states"] == {"alive": 4, "dead": 1}
    assert summary["totals"]["nodes"] == 4
    # Every member's published facts reached n1, the dead one's included (its last word).
    assert sorted(summary["facts"]) == ["n0", "n1", "n2", "n3", "n4"]
    assert summary["totals"]["cpus"] == 4 * summary["facts"]["n0"]["cpu"]["count"]
    answered = {a["name"]: a["answered"] for a in summary["fresh"]}
    assert answered == {"n0": True, "n1": True, "n2": True, "n3": True, "n4": False}


def test_restarted_node_rejoins(cluster: ClusterLab) -> None:
    node = cluster.nodes[4]
    node.start()
    node.wait_ready()
    took = cluster.wait_all_see({f"n{i}": "alive" for i in range(5)}, timeout=20)
    print(f"\nrestart -> alive everywhere: {took:.2f} s")


def test_silent_node_is_declared_dead_then_heals(cluster: ClusterLab) -> None:
    victim = cluster.nodes[3]
    observers = [n for n in cluster.nodes if n is not victim]
    victim.host.isolate()
    try:
        took = cluster.wait_all_see({"n3": "dead"}, timeout=15, observers=observers)
        print(f"\ncut off -> dead on all observers: {took:.2f} s")
        assert took < 6.0  # the target (3 s; ~1.5-2.2 s measured) is bench/gossip's to report
    finally:
        victim.host.heal()
    healed = cluster.wait_all_see({f"n{i}": "alive" for i in range(5)}, timeout=30)
    print(f"\nhealed -> alive everywhere: {healed:.2f} s")


def test_partitioned_node_keeps_working_and_converges_after_heal(cluster: ClusterLab) -> None:
    island, mainland = cluster.nodes[2], cluster.nodes[0]
    island.host.isolate()
    try:
        cluster.wait_all_see({"n2": "dead"}, timeout=15, observers=[mainland])
        body = {"role": "viewer", "password": "partition pass"}
        assert mainland.client().post("/api/v1/users", json={"name": "mainland", **body}).status_code == 201
        assert island.client().post("/api/v1/users", json={"name": "island", **body}).status_code == 201
        # the same record changed on both sides: the later write wins everywhere
        assert mainland.client().patch("/api/v1/users/ops", json={"role": "viewer"}).status_code == 200
        time.sleep(0.05)
        assert island.client().patch("/api/v1/users/ops", json={"role": "developer"}).status_code == 200
    finally:
        island.host.heal()

    def converged() -> bool:
        for node in cluster.nodes:
            users = {u["name"]: u["role"] for u in node.client().get("/api/v1/users").json()}
            if not {"mainland", "island"} <= set(users) or users.get("ops") != "developer":
                return False
        return True

    took = wait_until(converged, timeout=30, interval=0.2)
    print(f"\nheal -> users from both sides everywhere: {took:.2f} s")
    cluster.wait_all_see({f"n{i}": "alive" for i in range(5)}, timeout=30)


def test_no_false_deaths_under_ten_percent_loss(cluster: ClusterLab) -> None:
    cluster.wait_all_see({f"n{i}": "alive" for i in range(5)}, timeout=30)  # settled before the loss
    started = time.time()
    for node in cluster.nodes:
        node.host.set_loss(10)
    try:

        def nobody_dead() -> None:
            for name, states in cluster.views(cluster.nodes[:1]).items():
                assert "dead" not in states.values(), (name, states)

        check_for(nobody_dead, 20, 0.5)
    finally:
        for node in cluster.nodes:
            node.host.set_loss(0)
    audit = cluster.nodes[0].client().get("/api/v1/audit", params={"action": "cluster.member.dead"}).json()
    recent = [e for e in audit["entries"] if e["ts"] >= started]
    assert recent == []


def test_join_refusals_are_clear_and_write_nothing(cluster: ClusterLab, tmp_path: Path) -> None:
    import subprocess
    import sys

    import msgspec

    from appliance.cluster.join import decode_token, encode_token

    founder = cluster.nodes[0]
    spare = cluster.lab.host(5)

    def attempt(name: str, token: str) -> subprocess.CompletedProcess[str]:
        return spare.run(
            [sys.executable, "-m", "appliance", "serve", "--data-dir", str(tmp_path / name), "--name", name,
             "--api", f"{spare.address}:8443", "--gossip", f"{spare.address}:7946", "--join", token],
            timeout=30,
        )  # fmt: skip

    def refused(name: str, token: str, reason: str) -> None:
        result = attempt(name, token)
        assert result.returncode == 1, result.stderr
        lines = result.stderr.strip().splitlines()
        assert lines[-1].startswith("debvisor: cannot join the cluster: "), result.stderr
        assert reason in lines[-1], lines[-1]
        assert not (tmp_path / name).exists()

    good = decode_token(join_token(founder))
    refused("n1", encode_token(good), "already a member")
    refused("x1", encode_token(msgspec.structs.replace(good, secret="not-the-secret")), "wrong secret")
    refused("x2", encode_token(msgspec.structs.replace(good, ca_fingerprint="ab" * 32)), "another cluster")
    short = subprocess.run(
        [sys.executable, "-m", "appliance", "token", "create", "--data-dir", str(founder.data_dir), "--ttl", "0.0001"],
        capture_output=True, text=True, check=True, timeout=30,
    ).stdout.strip()  # fmt: skip
    time.sleep(0.5)
    refused("x3", short, "expired")

    # A used token stays used: redeem one through the API, then present it again.
    from cryptography.hazmat.primitives import serialization

    from appliance.identity import pki

    csr = pki.new_csr(pki.new_key(), "x4").public_bytes(serialization.Encoding.PEM).decode()
    body = {
        "token_id": good.id, "secret": good.secret, "name": "x4", "csr_pem": csr,
        "gossip_address": "10.97.0.99:7946", "api_address": "10.97.0.99:8443",
    }  # fmt: skip
    assert founder.client().post("/api/v1/cluster/join", json=body).status_code == 200
    refused("x5", encode_token(good), "already used")
    audit = founder.client().get("/api/v1/audit", params={"action": "cluster.join"}).json()["entries"]
    outcomes = [(e["target"], e["outcome"]) for e in audit]
    assert ("x1", "denied") in outcomes
    assert ("x4", "success") in outcomes
    assert ("x5", "denied") in outcomes


def test_removed_node_is_refused_everywhere(cluster: ClusterLab) -> None:
    admin = cluster.nodes[0]
    assert admin.client().delete("/api/v1/nodes/n2").status_code == 204
    others = [n for n in cluster.nodes if n.name != "n2"]
    cluster.wait_all_see({"n2": "dead"}, timeout=10, observers=others)

    def refused_somewhere() -> bool:
        metrics = admin.client().get("/metrics").text
        line = next(
            x for x in metrics.splitlines() if x.startswith('debvisor_gossip_total{counter="refused_handshakes"}')
        )
        return float(line.split()[-1]) > 0

    wait_until(refused_somewhere, timeout=15)
    time.sleep(2)  # n2 keeps trying; it must stay dead everywhere
    assert all(n.members()["n2"] == "dead" for n in others)
    entries = admin.client().get("/api/v1/audit", params={"action": "cluster."}).json()["entries"]
    assert any(e["action"] == "cluster.node.remove" and e["target"] == "n2" for e in entries)
    assert any(e["action"] == "cluster.member.revoked" and e["target"] == "n2" for e in entries)
