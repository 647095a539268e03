"""Audit anchoring on a running node: sign and gossip this node's chain head, keep the others'.

`Anchorer` signs this node's head at start, within a second of the chain moving (but at
most every `interval` seconds) and at a clean stop, and publishes it under `ANCHOR_KEY` in
the node's replicated key space. It also listens to the key spaces other nodes publish,
checks each head they sign (`anchor.verify_head`) and offers it to the `AnchorBook`, this
node's own record of everyone else's heads, which a root user on another node cannot touch.

The chain's head and hashes are read with plain SQL on the `audit` table's `seq` and `hash`
columns: that is all anchoring needs, whatever else an entry holds.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from appliance.audit.anchor import (
    ANCHOR_KEY,
    AnchorError,
    ChainHead,
    Keep,
    Trust,
    keep,
    sign_head,
    thin,
    verify_head,
)
from appliance.identity import pki
from appliance.store.database import Database

log = logging.getLogger(__name__)

ANCHOR_INTERVAL = 10.0  # at most one signed head per this many seconds
POLL_SECONDS = 1.0  # how often the chain is looked at
KEEP_HEADS = 256  # per node, thinned beyond this (see anchor.thin)
KEEP_EVIDENCE = 64  # per node; the first ones are kept, they are the most telling


@dataclass(frozen=True)
class HeldEvidence:
    """A contradiction a node saw: the head it held and the one that came after it."""

    kind: str
    held: bytes
    got: bytes


class AnchorBook:
    """The heads other nodes signed, as this node received them (SQLite `audit_anchors`)."""

    def __init__(self, db: Database, *, limit: int = KEEP_HEADS, clock: Callable[[], float] = time.time) -> None:
        self._db = db
        self._limit = limit
        self._clock = clock

    def offer(self, signed: bytes, head: ChainHead) -> Keep:
        """Keep a checked head by the keep rule; a lower or conflicting one is kept as evidence."""
        with self._db.transaction() as conn:
            row = conn.execute(
                "SELECT seq, hash, at, signed FROM audit_anchors WHERE node = ? ORDER BY seq DESC LIMIT 1",
                (head.node,),
            ).fetchone()
            held = None if row is None else ChainHead(node=head.node, seq=int(row[0]), hash=str(row[1]), at=row[2])
            verdict = keep(held, head)
            if verdict == Keep.ADVANCE:
                conn.execute(
                    "INSERT INTO audit_anchors (node, seq, hash, at, signed, received) VALUES (?, ?, ?, ?, ?, ?)",
                    (head.node, head.seq, head.hash, head.at, signed, self._clock()),
                )
                seqs = [int(s) for (s,) in conn.execute("SELECT seq FROM audit_anchors WHERE node = ?", (head.node,))]
                conn.executemany(
                    "DELETE FROM audit_anchors WHERE node = ? AND seq = ?",
                    [(head.node, seq) for seq in thin(seqs, self._limit)],
                )
            elif verdict in (Keep.REGRESSED, Keep.FORKED):
                assert row is not None
                self._record(conn, verdict, head, held_signed=bytes(row[3]), got_signed=signed)
        return verdict

    def _record(
        self, conn: sqlite3.Connection, verdict: Keep, head: ChainHead, *, held_signed: bytes, got_signed: bytes
    ) -> None:
        count, same = conn.execute(
            "SELECT COUNT(*), COALESCE(SUM(kind = ? AND got_seq = ? AND got_hash = ?), 0)"
            " FROM audit_anchor_evidence WHERE node = ?",
            (verdict.value, head.seq, head.hash, head.node),
        ).fetchone()
        if same or count >= KEEP_EVIDENCE:
            return
        conn.execute(
            "INSERT INTO audit_anchor_evidence (node, kind, got_seq, got_hash, held, got, received)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (head.node, verdict.value, head.seq, head.hash, held_signed, got_signed, self._clock()),
        )
        log.warning(
            "a node published an audit head that contradicts one it signed before",
            extra={"member": head.node, "kind": verdict.value, "seq": head.seq},
        )

    def heads(self, node: str) -> list[bytes]:
        """The signed heads of `node` kept here, newest first."""
        rows = self._db.conn.execute(
            "SELECT signed FROM audit_anchors WHERE node = ? ORDER BY seq DESC", (node,)
        ).fetchall()
        return [bytes(signed) for (signed,) in rows]

    def evidence(self, node: str) -> list[HeldEvidence]:
        rows = self._db.conn.execute(
            "SELECT kind, held, got FROM audit_anchor_evidence WHERE node = ? ORDER BY id", (node,)
        ).fetchall()
        return [HeldEvidence(str(kind), bytes(held), bytes(got)) for kind, held, got in rows]

    def latest_seqs(self) -> dict[str, int]:
        rows = self._db.conn.execute("SELECT node, MAX(seq) FROM audit_anchors GROUP BY node").fetchall()
        return {str(node): int(seq) for node, seq in rows}

    def evidence_counts(self) -> dict[str, int]:
        rows = self._db.conn.execute("SELECT node, COUNT(*) FROM audit_anchor_evidence GROUP BY node").fetchall()
        return {str(node): int(count) for node, count in rows}

    def forget(self, node: str) -> None:
        """Drop what is kept about a removed node (a new node may later take its name)."""
        with self._db.transaction() as conn:
            conn.execute("DELETE FROM audit_anchors WHERE node = ?", (node,))
            conn.execute("DELETE FROM audit_anchor_evidence WHERE node = ?", (node,))


def chain_head(db: Database) -> tuple[int, str] | None:
    """(seq, hash) of the last entry of this node's audit chain; None while it is empty."""
    row = db.conn.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
    return None if row is None else (int(row[0]), str(row[1]))


def chain_hashes(db: Database, seqs: Iterable[int]) -> dict[int, str]:
    """The hash of each entry in `seqs` that the chain holds."""
    found: dict[int, str] = {}
    wanted = sorted(set(seqs))
    for start in range(0, len(wanted), 500):  # SQLite caps bound parameters per statement
        chunk = wanted[start : start + 500]
        marks = ",".join("?" * len(chunk))
        sql = f"SELECT seq, hash FROM audit WHERE seq IN ({marks})"  # noqa: S608 - only placeholders
        found.update({int(seq): str(digest) for seq, digest in db.conn.execute(sql, chunk)})
    return found


class Anchorer(Collector):
    """Signs and publishes this node's chain head; checks and keeps the heads of the others."""

    def __init__(
        self,
        *,
        db: Database,
        book: AnchorBook,
        name: str,
        key: ec.EllipticCurvePrivateKey,
        cert_path: Path,
        publish: Callable[[dict[str, bytes]], None],
        published: Callable[[], dict[str, dict[str, bytes]]],
        trust: Trust,
        clock: Callable[[], float] = time.time,
        interval: float = ANCHOR_INTERVAL,
        poll: float = POLL_SECONDS,
    ) -> None:
        self.db = db
        self.book = book
        self.name = name
        self._key = key
        self._cert_path = cert_path
        self._cert: tuple[float, x509.Certificate] | None = None
        self._publish = publish
        self._published = published
        self.trust = trust
        self._clock = clock
        self._interval = interval
        self._poll = poll
        self.anchored: ChainHead | None = None
        self._anchored_mono = 0.0
        self._rejected = 0

    # -- this node's head -------------------------------------------------------------------

    def anchor(self, *, force: bool = False) -> ChainHead | None:
        """Sign and publish the chain's head if it moved since the last anchor (or `force`)."""
        current = chain_head(self.db)
        if current is None:
            return None
        seq, digest = current
        if not force and self.anchored is not None and (self.anchored.seq, self.anchored.hash) == current:
            return None
        head = ChainHead(node=self.name, seq=seq, hash=digest, at=round(self._clock(), 3))
        self._publish({ANCHOR_KEY: sign_head(head, self._key, self._certificate())})
        self.anchored = head
        self._anchored_mono = time.monotonic()
        return head

    def _certificate(self) -> x509.Certificate:
        # Re-read when the file changes: a renewed certificate (same key) replaces it in place.
        mtime = self._cert_path.stat().st_mtime
        if self._cert is None or self._cert[0] != mtime:
            self._cert = (mtime, pki.cert_from_pem(self._cert_path.read_bytes()))
        return self._cert[1]

    async def run(self) -> None:
        """Take the heads merged while this node was down, anchor at start, then whenever the
        chain moved and `interval` has passed since the last anchor."""
        self._safely(self.absorb)
        self._safely(lambda: self.anchor(force=True))
        while True:
            await asyncio.sleep(self._poll)
            if time.monotonic() - self._anchored_mono >= self._interval:
                self._safely(self.anchor)

    def stop(self) -> None:
        """Anchor the final head at a clean stop (before the node leaves the cluster)."""
        self._safely(self.anchor)

    @staticmethod
    def _safely(step: Callable[[], object]) -> None:
        try:
            step()
        except Exception:
            log.exception("anchoring the audit chain failed")

    # -- the others' heads ------------------------------------------------------------------

    def absorb(self) -> None:
        """Offer every head already held in the key spaces (those merged while this node was down)."""
        for owner, space in self._published().items():
            value = space.get(ANCHOR_KEY)
            if owner != self.name and value is not None:
                self.offer(owner, value)

    def offer(self, owner: str, value: bytes) -> Keep | None:
        try:
            head = verify_head(value, owner=owner, trust=self.trust)
        except AnchorError as exc:
            self._rejected += 1
            log.warning("refused an audit head", extra={"member": owner, "reason": str(exc)})
            return None
        return self.book.offer(value, head)

    # -- metrics ----------------------------------------------------------------------------

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "debvisor_audit_anchored_seq",
            "Sequence number of the last audit entry this node signed and published",
            value=self.anchored.seq if self.anchored is not None else 0,
        )
        witnessed = GaugeMetricFamily(
            "debvisor_audit_witnessed_seq", "Highest signed audit head held per other node", labels=["node"]
        )
        for node, seq in sorted(self.book.latest_seqs().items()):
            witnessed.add_metric([node], seq)
        yield witnessed
        evidence = GaugeMetricFamily(
            "debvisor_audit_anchor_evidence",
            "Heads a node published that contradict one it signed before (lower or forked), per node",
            labels=["node"],
        )
        for node, count in sorted(self.book.evidence_counts().items()):
            evidence.add_metric([node], count)
        yield evidence
        yield CounterMetricFamily(
            "debvisor_audit_anchors_rejected",
            "Published audit heads refused (signature or certificate)",
            self._rejected,
        )

    def describe(self) -> Iterator[Metric]:
        return iter(())
