"""Finding 6 replayed against a real cluster: root on a node rewrites its audit chain.

Three real nodes in network namespaces. A node writes audit entries and its signed chain
head reaches its peers; it is stopped, and its SQLite database is changed exactly as an
attacker with root would: drop the append-only triggers, cut the tail (or edit an earlier
entry), recompute the hashes of what remains and the recorded head, so that the local check
passes. After the restart, the documented `debvisor audit verify` and the API check must
report the truncation or rewrite, naming the peers that hold the signed heads; an untouched
chain must verify clean; and the check itself is in the audit trail.
"""

from __future__ import annotations

import base64
import contextlib
import os
import sqlite3
import sys
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest

from appliance.audit.anchor import ChainHead, SignedHead
from appliance.audit.chain import GENESIS, entry_hash
from appliance.identity import pki
from tests.clusterlab import ClusterLab, ClusterNode, running_cluster
from tests.kit.wait import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.privileged]

ANCHOR_WAIT = 20.0  # a moved chain is anchored within about a second, at most every 10 s


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterLab]:
    with running_cluster(tmp_path_factory, 3, label="audit") as cluster:
        yield cluster


def verify_cli(node: ClusterNode, *args: str, token: str | None = "default") -> Any:
    """The documented command, run on the node's host as its operator would (token in the env)."""
    argv = ["env", *(f"-u{k}" for k in os.environ if k.startswith("DEBVISOR_"))]
    if token is not None:
        argv.append(f"DEBVISOR_TOKEN={node.token if token == 'default' else token}")
    argv += [sys.executable, "-m", "appliance", "audit", "verify", "--data-dir", str(node.data_dir), *args]
    return node.host.run(argv, timeout=60)


def held_heads(holder: ClusterNode, about: str) -> list[ChainHead]:
    """The heads of `about` that `holder` keeps (read through its API)."""
    answer = holder.client().get("/api/v1/audit/anchors", params={"node": about})
    answer.raise_for_status()
    heads = []
    for value in answer.json()["heads"]:
        signed = msgspec.json.decode(base64.b64decode(value), type=SignedHead)
        heads.append(msgspec.json.decode(signed.head, type=ChainHead))
    return heads


def last_seq(node: ClusterNode) -> int:
    return int(node.client().get("/api/v1/audit/chain").json()["last_seq"])


def write_and_anchor(cluster: ClusterLab, victim: ClusterNode, changes: int) -> int:
    """Have `victim` write entries, then wait until both peers hold a head at least that far."""
    for i in range(changes):
        response = victim.client().put("/api/v1/node", json={"description": f"change {i} on {victim.name}"})
        assert response.status_code == 200, response.text
    target = last_seq(victim)
    peers = [n for n in cluster.nodes if n is not victim]
    wait_until(lambda: all(max(h.seq for h in held_heads(p, victim.name)) >= target for p in peers), ANCHOR_WAIT, 0.2)
    return min(max(h.seq for h in held_heads(p, victim.name)) for p in peers)


def _rehash_from(conn: sqlite3.Connection, start: int) -> None:
    """Recompute the hash of every entry from `start` on and the recorded head, as an attacker
    who knows the (public) hashing scheme would; every column but `hash` is hashed."""
    conn.row_factory = sqlite3.Row
    rows = conn.execute("SELECT * FROM audit WHERE seq >= ? ORDER BY seq", (start,)).fetchall()
    before = conn.execute("SELECT hash FROM audit WHERE seq = ?", (start - 1,)).fetchone()
    prev = str(before["hash"]) if before else GENESIS
    for row in rows:
        fields = {k: row[k] for k in row.keys() if k != "hash"}  # noqa: SIM118 - sqlite3.Row
        fields["prev_hash"] = prev
        prev = entry_hash(**fields)
        conn.execute("UPDATE audit SET prev_hash = ?, hash = ? WHERE seq = ?", (fields["prev_hash"], prev, row["seq"]))
    last = conn.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
    conn.execute("UPDATE node_meta SET value = ? WHERE key = 'audit_head'", (f"{last['seq']}:{last['hash']}",))


@contextlib.contextmanager
def root_on(node: ClusterNode) -> Iterator[sqlite3.Connection]:
    """The stopped node's database, its append-only triggers dropped, committed on exit."""
    conn = sqlite3.connect(node.data_dir / "debvisor.db")
    try:
        conn.execute("DROP TRIGGER audit_no_update")
        conn.execute("DROP TRIGGER audit_no_delete")
        yield conn
        conn.commit()
    finally:
        conn.close()


def restart(cluster: ClusterLab, node: ClusterNode) -> None:
    node.start()
    node.wait_ready()
    cluster.wait_all_see({n.name: "alive" for n in cluster.nodes}, timeout=30)
    # An authority re-issues its own certificate at start when its addresses changed; the peers
    # take its calls (the verify fan-out is forwarded) once that certificate's registry entry
    # reached them, a second or two later.
    fingerprint = pki.fingerprint(pki.cert_from_pem((node.data_dir / "pki" / "node.crt").read_bytes()))
    peers = [n for n in cluster.nodes if n is not node]

    def registered(peer: ClusterNode) -> bool:
        listed = peer.client().get("/api/v1/cluster/certificates").json()
        return any(c["fingerprint"] == fingerprint for c in listed)

    wait_until(lambda: all(registered(peer) for peer in peers), timeout=20)


def verified_by(checker: ClusterNode, about: str) -> dict[str, Any]:
    answer = checker.client().get("/api/v1/audit/verify", params={"node": about})
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def test_untouched_chains_verify_clean(cluster: ClusterLab) -> None:
    for node in cluster.nodes:
        write_and_anchor(cluster, node, 2)
    for node in cluster.nodes:
        result = verify_cli(node)
        assert result.returncode == 0, result.stderr
        others = ", ".join(n.name for n in cluster.nodes if n is not node)
        assert f"audit chain of {node.name} intact" in result.stdout
        assert f"held by {others}" in result.stdout
    check = verified_by(cluster.nodes[0], "n2")
    assert check["intact"] is True
    assert check["holders"] == ["n0", "n1"]
    assert check["checked_by"] == "n0"
    # Without credentials it says how to authenticate rather than silently checking less.
    bare = verify_cli(cluster.nodes[1], token=None)
    assert bare.returncode == 1
    assert "DEBVISOR_TOKEN" in bare.stderr
    assert len(bare.stderr.strip().splitlines()) == 1


def test_truncated_chain_is_reported_with_the_peers_that_hold_the_evidence(cluster: ClusterLab) -> None:
    victim = cluster.nodes[1]
    anchored = write_and_anchor(cluster, victim, 12)
    victim.stop()
    cut_to = anchored - 10
    with root_on(victim) as conn:
        conn.execute("DELETE FROM audit WHERE seq > ?", (cut_to,))
        _rehash_from(conn, cut_to + 1)  # nothing after the cut: just the recorded head
    local = verify_cli(victim, "--local", token=None)
    assert local.returncode == 0, local.stderr  # what the attacker wanted: the local check passes
    assert "local check only" in local.stdout
    restart(cluster, victim)

    result = verify_cli(victim)
    assert result.returncode == 1, result.stdout
    reason = result.stderr.strip()
    assert len(reason.splitlines()) == 1
    assert reason.startswith("audit chain of n1 was truncated:"), reason
    assert "but n1 signed entry" in reason
    assert "evidence held by n0, n2" in reason

    check = verified_by(cluster.nodes[0], "n1")
    assert check["intact"] is False
    truncated = [f for f in check["findings"] if f["kind"] == "truncated"]
    assert check["findings"][0]["kind"] == "truncated"
    # Both peers hold the head it was waited for (its stop-time head may have reached only some).
    assert any(f["seq"] >= anchored and f["peers"] == ["n0", "n2"] for f in truncated)
    # n1 restarted and signed its shorter chain: the peers recorded that as evidence too.
    wait_until(lambda: any(f["kind"] == "regressed" for f in verified_by(cluster.nodes[2], "n1")["findings"]), 15, 0.5)
    # The check is audited where it ran, as a read of security data.
    entries = cluster.nodes[0].client().get("/api/v1/audit", params={"action": "audit.verify"}).json()["entries"]
    assert any(e["target"] == "audit chain of n1" and "truncated" in e["detail"] for e in entries)


def test_rewritten_earlier_entry_is_reported(cluster: ClusterLab) -> None:
    victim = cluster.nodes[2]
    anchored = write_and_anchor(cluster, victim, 4)
    victim.stop()
    with root_on(victim) as conn:
        conn.execute("UPDATE audit SET user = 'someone-else' WHERE seq = 3")
        _rehash_from(conn, 3)
    local = verify_cli(victim, "--local", token=None)
    assert local.returncode == 0, local.stderr
    restart(cluster, victim)

    result = verify_cli(victim)
    assert result.returncode == 1, result.stdout
    reason = result.stderr.strip()
    assert reason.startswith("audit chain of n2 was rewritten:"), reason
    assert "evidence held by n0, n1" in reason

    check = verified_by(cluster.nodes[1], "n2")
    assert check["intact"] is False
    rewritten = [f for f in check["findings"] if f["kind"] == "rewritten"]
    assert check["findings"][0]["kind"] == "rewritten"
    assert any(f["seq"] >= anchored and f["peers"] == ["n0", "n1"] for f in rewritten)
    # Only what a rewrite leaves (a start-time head may conflict with the stop-time one): no truncation.
    assert {f["kind"] for f in check["findings"]} <= {"rewritten", "forked", "regressed"}
    # The untouched node still verifies clean beside the two tampered ones.
    assert verified_by(cluster.nodes[1], "n0")["intact"] is True
