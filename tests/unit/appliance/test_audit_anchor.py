"""Signed audit heads: signing and checking them, the keep rule, thinning, and the comparison
of a chain with the heads its peers hold (pure logic, then the book and anchorer on SQLite)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from litestar.testing import TestClient

from appliance.app import Appliance
from appliance.audit import crosscheck
from appliance.audit.anchor import (
    ANCHOR_KEY,
    AnchorError,
    ChainHead,
    Keep,
    SignedHead,
    Witness,
    cluster_trust,
    compare,
    keep,
    sign_head,
    summary,
    thin,
    verify_head,
)
from appliance.audit.anchoring import AnchorBook, Anchorer
from appliance.audit.log import AuditLog, AuditQuery
from appliance.identity import pki
from appliance.store.database import Database

NOW = dt.datetime(2027, 1, 1, tzinfo=dt.UTC)
T0 = NOW.timestamp()
H1, H2, H3 = "a" * 64, "b" * 64, "c" * 64


@dataclass
class Node:
    name: str
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate


@dataclass
class Cluster:
    ca_key: ec.EllipticCurvePrivateKey
    ca: x509.Certificate
    revoked: set[str]

    def node(self, name: str) -> Node:
        key = pki.new_key()
        return Node(
            name, key, pki.issue_node_cert(self.ca_key, self.ca, key.public_key(), name=name, addresses=[], now=NOW)
        )

    def trust(self) -> Any:
        return cluster_trust(self.ca, lambda fp, _name, _key: "revoked" if fp in self.revoked else None)


@pytest.fixture(scope="module")
def cluster() -> Cluster:
    ca_key, ca = pki.new_ca("test", NOW)
    return Cluster(ca_key, ca, set())


def head(node: str = "b", seq: int = 5, digest: str = H1, at: float = T0) -> ChainHead:
    return ChainHead(node=node, seq=seq, hash=digest, at=at)


# -- signing and checking ---------------------------------------------------------------------


def test_a_signed_head_verifies_as_its_signer(cluster: Cluster) -> None:
    b = cluster.node("b")
    signed = sign_head(head(), b.key, b.cert)
    assert verify_head(signed, owner="b", trust=cluster.trust()) == head()


def test_an_altered_head_does_not_verify(cluster: Cluster) -> None:
    b = cluster.node("b")
    signed = msgspec.json.decode(sign_head(head(), b.key, b.cert), type=SignedHead)
    forged = msgspec.structs.replace(signed, head=msgspec.json.encode(head(seq=3)))
    with pytest.raises(AnchorError, match="signature does not verify"):
        verify_head(msgspec.json.encode(forged), owner="b", trust=cluster.trust())


def test_a_head_published_by_another_node_or_naming_another_is_refused(cluster: Cluster) -> None:
    b, c = cluster.node("b"), cluster.node("c")
    with pytest.raises(AnchorError, match="published by 'c'"):
        verify_head(sign_head(head(), b.key, b.cert), owner="c", trust=cluster.trust())
    # c signs a head claiming to be b's and publishes it as b would: its certificate names c.
    with pytest.raises(AnchorError, match="signed by 'c'"):
        verify_head(sign_head(head(node="b"), c.key, c.cert), owner="b", trust=cluster.trust())


def test_a_certificate_from_another_ca_or_revoked_is_not_trusted(cluster: Cluster) -> None:
    outsider_ca_key, outsider_ca = pki.new_ca("outsider", NOW)
    key = pki.new_key()
    cert = pki.issue_node_cert(outsider_ca_key, outsider_ca, key.public_key(), name="b", addresses=[], now=NOW)
    with pytest.raises(AnchorError, match="not trusted"):
        verify_head(sign_head(head(), key, cert), owner="b", trust=cluster.trust())
    b = cluster.node("b")
    revoked = Cluster(cluster.ca_key, cluster.ca, {pki.fingerprint(b.cert)})
    with pytest.raises(AnchorError, match="revoked"):
        verify_head(sign_head(head(), b.key, b.cert), owner="b", trust=revoked.trust())


def test_a_head_outside_its_certificate_validity_or_naming_no_entry_is_refused(cluster: Cluster) -> None:
    b = cluster.node("b")
    late = head(at=b.cert.not_valid_after_utc.timestamp() + 1)
    with pytest.raises(AnchorError, match="not valid when"):
        verify_head(sign_head(late, b.key, b.cert), owner="b", trust=cluster.trust())
    with pytest.raises(AnchorError, match="names no entry"):
        verify_head(sign_head(head(seq=0), b.key, b.cert), owner="b", trust=cluster.trust())
    with pytest.raises(AnchorError, match="not a signed head"):
        verify_head(b"{}", owner="b", trust=cluster.trust())


# -- keeping ----------------------------------------------------------------------------------


def test_the_keep_rule_only_moves_forward() -> None:
    assert keep(None, head(seq=1)) == Keep.ADVANCE
    assert keep(head(seq=5), head(seq=6, digest=H2)) == Keep.ADVANCE
    assert keep(head(seq=5), head(seq=5, at=T0 + 60)) == Keep.SAME
    assert keep(head(seq=5), head(seq=4, digest=H2, at=T0 + 1)) == Keep.REGRESSED
    assert keep(head(seq=5), head(seq=4, digest=H2, at=T0 - 1)) == Keep.STALE  # an old head, replayed
    assert keep(head(seq=5), head(seq=5, digest=H2)) == Keep.FORKED


def test_thinning_keeps_the_newest_half_and_samples_the_older() -> None:
    assert thin(range(1, 9), 8) == []
    dropped = thin(range(1, 10), 8)
    assert dropped == [2, 4]  # older = 1..5: every other after the oldest
    kept = sorted(set(range(1, 10)) - set(dropped))
    assert kept[0] == 1
    assert kept[-4:] == [6, 7, 8, 9]
    # Repeated thinning keeps the oldest and stays within the limit.
    held = list(range(1, 9))
    for seq in range(9, 200):
        held.append(seq)
        held = sorted(set(held) - set(thin(held, 8)))
        assert len(held) <= 8
    assert held[0] == 1
    assert held[-1] == 199


# -- comparing --------------------------------------------------------------------------------


def test_compare_finds_truncation_and_rewrite_naming_the_peers() -> None:
    witnesses = [
        Witness("a", head(seq=5, digest=H1)),
        Witness("c", head(seq=5, digest=H1, at=T0 + 10)),  # the same head, republished
        Witness("a", head(seq=3, digest=H2)),
    ]
    assert compare("b", last_seq=7, hashes={5: H1, 3: H2}, witnesses=witnesses) == []

    truncated = compare("b", last_seq=4, hashes={3: H2}, witnesses=witnesses)
    assert [(f.kind, f.seq, f.peers) for f in truncated] == [("truncated", 5, ["a", "c"])]
    line = summary("b", truncated)
    assert line.startswith("audit chain of b was truncated: the chain of b ends at entry 4, but b signed entry 5")
    assert line.endswith("evidence held by a, c")

    rewritten = compare("b", last_seq=9, hashes={5: H3, 3: H3}, witnesses=witnesses)
    assert [(f.kind, f.seq, f.peers) for f in rewritten] == [("rewritten", 5, ["a", "c"]), ("rewritten", 3, ["a"])]
    assert summary("b", rewritten).startswith("audit chain of b was rewritten: entry 5 of b")
    assert summary("b", []) == ""


# -- the book and the anchorer on SQLite --------------------------------------------------------


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database.create(tmp_path / "node.db")
    yield database
    database.close()


def _signed(node: Node, seq: int, digest: str, at: float = T0) -> tuple[bytes, ChainHead]:
    h = head(node.name, seq, digest, at)
    return sign_head(h, node.key, node.cert), h


def test_the_book_never_moves_backwards_and_records_evidence(db: Database, cluster: Cluster) -> None:
    b = cluster.node("b")
    book = AnchorBook(db, clock=lambda: T0)
    assert book.offer(*_signed(b, 5, H1)) == Keep.ADVANCE
    assert book.offer(*_signed(b, 5, H1, T0 + 10)) == Keep.SAME
    assert book.offer(*_signed(b, 3, H2, T0 - 10)) == Keep.STALE  # signed before 5: replayed, no evidence
    assert book.offer(*_signed(b, 3, H2, T0 + 10)) == Keep.REGRESSED
    assert book.offer(*_signed(b, 3, H2, T0 + 20)) == Keep.REGRESSED  # the same evidence, kept once
    assert book.offer(*_signed(b, 5, H3)) == Keep.FORKED
    assert book.latest_seqs() == {"b": 5}
    assert [verify_head(s, owner="b", trust=cluster.trust()).hash for s in book.heads("b")] == [H1]
    assert [e.kind for e in book.evidence("b")] == ["regressed", "forked"]
    assert book.evidence_counts() == {"b": 2}
    book.forget("b")
    assert book.heads("b") == []
    assert book.evidence("b") == []


def test_the_book_thins_its_history(db: Database, cluster: Cluster) -> None:
    b = cluster.node("b")
    book = AnchorBook(db, limit=8, clock=lambda: T0)
    for seq in range(1, 40):
        book.offer(*_signed(b, seq, f"{seq:064x}"))
    seqs = [verify_head(s, owner="b", trust=cluster.trust()).seq for s in book.heads("b")]
    assert len(seqs) <= 8
    assert seqs[0] == 39
    assert seqs[-1] == 1


def _anchorer(
    db: Database,
    node: Node,
    cluster: Cluster,
    tmp_path: Path,
    space: dict[str, bytes],
    *,
    clock: Callable[[], float] = lambda: T0,
) -> Anchorer:
    cert_path = tmp_path / f"{node.name}.crt"
    cert_path.write_bytes(pki.cert_to_pem(node.cert))
    return Anchorer(
        db=db,
        book=AnchorBook(db, clock=lambda: T0),
        name=node.name,
        key=node.key,
        cert_path=cert_path,
        publish=space.update,
        published=lambda: {},
        trust=cluster.trust(),
        clock=clock,
    )


def _append(log: AuditLog, n: int) -> None:
    for i in range(n):
        log.append(user="ops", source="test", action="node.update", target=f"t{i}", outcome="success")


def test_an_anchorer_publishes_only_when_the_chain_moved(db: Database, cluster: Cluster, tmp_path: Path) -> None:
    space: dict[str, bytes] = {}
    anchorer = _anchorer(db, cluster.node("b"), cluster, tmp_path, space)
    assert anchorer.anchor() is None
    assert space == {}
    log = AuditLog(db, "b", clock=lambda: T0)
    _append(log, 3)
    first = anchorer.anchor()
    assert first is not None
    assert first.seq == 3
    assert verify_head(space[ANCHOR_KEY], owner="b", trust=cluster.trust()) == first
    assert anchorer.anchor() is None  # unchanged: nothing new to sign
    assert anchorer.anchor(force=True) == first  # at start and stop it signs anyway
    _append(log, 1)
    moved = anchorer.anchor()
    assert moved is not None
    assert moved.seq == 4
    metrics = {m.name: m for m in anchorer.collect()}
    assert metrics["debvisor_audit_anchored_seq"].samples[0].value == 4


def test_a_truncated_chain_is_caught_by_the_heads_a_peer_keeps(tmp_path: Path, cluster: Cluster) -> None:
    """B anchors, A keeps B's head; B's database is cut back as root would; the check names A."""
    b_db, a_db = Database.create(tmp_path / "b.db"), Database.create(tmp_path / "a.db")
    try:
        b, a = cluster.node("b"), cluster.node("a")
        space: dict[str, bytes] = {}
        now = [T0]
        b_anchorer = _anchorer(b_db, b, cluster, tmp_path, space, clock=lambda: now[0])
        a_anchorer = _anchorer(a_db, a, cluster, tmp_path, {})
        b_log = AuditLog(b_db, "b", clock=lambda: T0)
        _append(b_log, 6)
        b_anchorer.anchor()
        a_anchorer.offer("b", space[ANCHOR_KEY])
        assert a_anchorer.offer("b", b"junk") is None  # refused, the good head is kept
        held = [crosscheck.held_by(a_anchorer.book, "a", "b")]

        def check() -> crosscheck.ChainCheck:
            witnesses, evidence, rejected = crosscheck.checked("b", held, cluster.trust())
            facts = crosscheck.local_facts(b_log, b_db, "b", [w.head.seq for w in witnesses])
            return crosscheck.judge(facts, witnesses, evidence, checked_by="a", unreachable=[], rejected=rejected)

        clean = check()
        assert clean.intact
        assert clean.holders == ["a"]
        assert clean.anchored_seq == 6
        # The attack: drop the triggers, cut the tail, record the shorter head.
        b_db.conn.executescript(
            "DROP TRIGGER audit_no_update; DROP TRIGGER audit_no_delete; DELETE FROM audit WHERE seq > 4;"
        )
        last = b_log.query(AuditQuery(after_seq=3), 1)[0]
        b_db.set_meta("audit_head", f"{last.seq}:{last.hash}")
        assert b_log.verify().bad_seq is None  # the local check alone is fooled
        caught = check()
        assert not caught.intact
        assert [(f.kind, f.seq, f.peers) for f in caught.findings] == [("truncated", 6, ["a"])]
        assert "ends at entry 4, but b signed entry 6" in caught.reason
        # B restarts and anchors its shorter chain: A keeps 6 and records the regression.
        now[0] += 30
        b_anchorer.anchored = None
        b_anchorer.anchor()
        assert a_anchorer.offer("b", space[ANCHOR_KEY]) == Keep.REGRESSED
        held = [crosscheck.held_by(a_anchorer.book, "a", "b")]
        kinds = [f.kind for f in check().findings]
        assert kinds == ["truncated", "regressed"]
        metrics = {m.name: m for m in a_anchorer.collect()}
        assert metrics["debvisor_audit_anchors_rejected"].samples[0].value == 1
        assert [s.value for s in metrics["debvisor_audit_witnessed_seq"].samples] == [6]
    finally:
        b_db.close()
        a_db.close()


def test_a_peer_cannot_frame_a_node_with_a_head_it_never_signed(cluster: Cluster) -> None:
    b, a = cluster.node("b"), cluster.node("a")
    forged = sign_head(head("b", 99, H3), a.key, a.cert)  # a signs "b's" head with its own key
    honest, _ = _signed(b, 5, H1)
    older, _ = _signed(b, 3, H2, T0 - 60)
    replayed = crosscheck.EvidenceRecord(kind="regressed", held=honest, got=older)  # b signed 3 before 5
    held = [crosscheck.HeldAnchors(holder="a", node="b", heads=[forged, honest], evidence=[replayed])]
    witnesses, evidence, rejected = crosscheck.checked("b", held, cluster.trust())
    assert [w.head.seq for w in witnesses] == [5]
    assert evidence == []
    assert rejected == 2


# -- the API of one node ------------------------------------------------------------------------


def test_verify_route_checks_this_node_and_is_audited(client: TestClient[Any], appliance: Appliance) -> None:
    _append(appliance.audit, 2)
    result = client.get("/api/v1/audit/verify")
    assert result.status_code == 200, result.text
    body = result.json()
    assert body["intact"] is True
    assert body["holders"] == []
    assert body["node"] == "n1"
    assert body["entries"] == body["last_seq"] == 2
    entries = appliance.audit.query(AuditQuery(action="audit.verify"), 10)
    assert [(e.target, e.outcome, e.detail) for e in entries] == [("audit chain of n1", "success", "intact")]
    assert client.get("/api/v1/audit/verify", params={"node": "nobody"}).status_code == 404
    chain = client.get("/api/v1/audit/chain", params={"seqs": "1"}).json()
    assert chain["node"] == "n1"
    assert set(chain["hashes"]) == {"1"}
    bad = client.get("/api/v1/audit/chain", params={"seqs": "1,x"})
    assert bad.status_code == 400
    assert bad.headers["content-type"].startswith("application/problem+json")
    assert client.get("/api/v1/audit/anchors", params={"node": "other"}).json()["heads"] == []


def test_verify_needs_audit_read(client: TestClient[Any], appliance: Appliance) -> None:
    _, secret = appliance.accounts.create_token(owner="admin", name="viewer", role="viewer", expires_at=None)  # type: ignore[arg-type]
    client.headers["Authorization"] = f"Bearer {secret}"
    assert client.get("/api/v1/audit/verify").status_code == 403
