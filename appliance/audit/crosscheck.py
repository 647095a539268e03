"""Checking one node's audit chain against the heads its peers hold: the wire types and the verdict.

The node that answers `GET /api/v1/audit/verify?node=NAME` gathers what every other live
member holds about NAME (`HeldAnchors`: signed heads and evidence, from their own databases),
checks each signature itself (a peer cannot make up a head NAME never signed), asks NAME for
the hashes of its entries at the anchored seqs (`ChainFacts`), and compares (`judge`). Asked
of a node other than NAME, the verdict does not depend on NAME's own database at all: only
the hashes NAME serves are compared with what it signed before.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

import msgspec

from appliance.audit.anchor import (
    AnchorError,
    Evidence,
    Finding,
    Keep,
    Trust,
    Witness,
    compare,
    keep,
    summary,
    verify_head,
)
from appliance.audit.anchoring import AnchorBook, chain_hashes, chain_head
from appliance.audit.log import AuditLog
from appliance.store.database import Database

MAX_SEQS = 2048  # hashes one request may ask for (a book keeps at most 256 heads per node)


class EvidenceRecord(msgspec.Struct, frozen=True, kw_only=True):
    """A contradiction a peer recorded: the signed head it held and the signed one that followed."""

    kind: str
    held: bytes
    got: bytes


class HeldAnchors(msgspec.Struct, frozen=True, kw_only=True):
    """What `holder` keeps about `node`: its signed heads (newest first) and evidence."""

    holder: str
    node: str
    heads: list[bytes]
    evidence: list[EvidenceRecord] = []


class ChainFacts(msgspec.Struct, frozen=True, kw_only=True):
    """A node's own account of its chain: the local check, its end, and hashes at asked seqs."""

    node: str
    entries: int
    last_seq: int
    head: str
    bad_seq: int | None = None
    reason: str = ""
    hashes: dict[int, str] = {}


class ChainCheck(msgspec.Struct, frozen=True, kw_only=True):
    """The verdict on a node's chain; `intact` is false when any finding stands against it.

    `holders` are the peers that hold signed heads of the node, `anchored_seq` the highest
    seq any of them holds, `unreachable` the peers that did not answer; `rejected` counts
    heads whose signature or certificate did not check out (ignored).
    """

    node: str
    checked_by: str
    intact: bool
    reason: str
    entries: int
    last_seq: int
    anchored_seq: int
    anchors: int
    holders: list[str]
    unreachable: list[str]
    rejected: int
    findings: list[Finding]


def held_by(book: AnchorBook, holder: str, node: str) -> HeldAnchors:
    """What this node's book holds about `node`."""
    evidence = [EvidenceRecord(kind=e.kind, held=e.held, got=e.got) for e in book.evidence(node)]
    return HeldAnchors(holder=holder, node=node, heads=book.heads(node), evidence=evidence)


def local_facts(log: AuditLog, db: Database, node: str, seqs: Iterable[int]) -> ChainFacts:
    """This node's chain: the full local check, its last entry, and the hashes at `seqs`."""
    verdict = log.verify()
    last = chain_head(db)
    return ChainFacts(
        node=node,
        entries=verdict.entries,
        last_seq=last[0] if last else 0,
        head=last[1] if last else "",
        bad_seq=verdict.bad_seq,
        reason=verdict.reason,
        hashes=chain_hashes(db, seqs),
    )


def checked(node: str, held: Iterable[HeldAnchors], trust: Trust) -> tuple[list[Witness], list[Evidence], int]:
    """The witnesses and evidence about `node` whose signatures check out, and how many did not."""
    witnesses: list[Witness] = []
    evidence: list[Evidence] = []
    rejected = 0
    for answer in held:
        for value in answer.heads:
            try:
                witnesses.append(Witness(answer.holder, verify_head(value, owner=node, trust=trust)))
            except AnchorError:
                rejected += 1
        for record in answer.evidence:
            if record.kind not in ("regressed", "forked"):
                rejected += 1
                continue
            try:
                before = verify_head(record.held, owner=node, trust=trust)
                after = verify_head(record.got, owner=node, trust=trust)
            except AnchorError:
                rejected += 1
                continue
            if keep(before, after) != Keep(record.kind):  # a replayed old head is no evidence
                rejected += 1
                continue
            kind: Literal["regressed", "forked"] = "regressed" if record.kind == "regressed" else "forked"
            evidence.append(Evidence(peer=answer.holder, kind=kind, held=before, got=after))
    return witnesses, evidence, rejected


def judge(
    facts: ChainFacts,
    witnesses: list[Witness],
    evidence: list[Evidence],
    *,
    checked_by: str,
    unreachable: list[str],
    rejected: int,
) -> ChainCheck:
    """Compare a node's chain with the checked heads and evidence its peers hold."""
    findings = compare(facts.node, last_seq=facts.last_seq, hashes=facts.hashes, witnesses=witnesses, evidence=evidence)
    if facts.bad_seq is not None:
        detail = f"entry {facts.bad_seq}: {facts.reason}"
        findings.insert(0, Finding(kind="broken", seq=facts.bad_seq, peers=[], detail=detail))
    return ChainCheck(
        node=facts.node,
        checked_by=checked_by,
        intact=not findings,
        reason=summary(facts.node, findings),
        entries=facts.entries,
        last_seq=facts.last_seq,
        anchored_seq=max((w.head.seq for w in witnesses), default=0),
        anchors=len({(w.head.seq, w.head.hash) for w in witnesses}),
        holders=sorted({w.peer for w in witnesses}),
        unreachable=sorted(unreachable),
        rejected=rejected,
        findings=findings,
    )


def parse_seqs(text: str) -> list[int]:
    """`1,5,9` as sequence numbers; ValueError on anything else or too many."""
    if not text:
        return []
    seqs = [int(part) for part in text.split(",")]
    if len(seqs) > MAX_SEQS or any(seq < 1 for seq in seqs):
        raise ValueError(f"give at most {MAX_SEQS} sequence numbers, each at least 1")
    return seqs
