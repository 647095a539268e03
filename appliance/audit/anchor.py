"""Signed audit-chain heads: what a node vouches for, and how its peers check and keep them.

A node's audit chain and the head recorded beside it live in the node's own database, so
root on that node can drop the triggers, cut or edit entries, recompute every hash and the
head, and the chain checks out again. Anchors move the evidence out of that reach: the node
signs its head (name, seq, hash, time) with its node key and publishes it in its gossiped key
space; every other node checks the signature against the signer's certificate and keeps the
head in its own database. A chain that later lacks an anchored entry (truncated) or holds
another hash there (rewritten) is caught by comparing it with what the peers hold.

Pure logic only: building and checking a signed head, the keep rule (the kept head never
moves backwards; a lower or conflicting head is recorded as evidence), thinning of the kept
history, and the comparison of a chain with the heads peers hold. `anchoring.py` does the
I/O. Left out: anything about entries signed after the last anchor (nobody else saw them).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from enum import StrEnum
from typing import Literal

import msgspec
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from appliance.identity import pki
from appliance.identity.registry import key_id

ANCHOR_KEY = "audit.head"  # the key in each node's replicated key space
_HASH = re.compile(r"[0-9a-f]{64}")


class AnchorError(ValueError):
    """A published head that must not be believed (one line saying why)."""


class ChainHead(msgspec.Struct, frozen=True, kw_only=True):
    """What a node states about its own audit chain: its last entry at a moment."""

    node: str
    seq: int
    hash: str
    at: float


class SignedHead(msgspec.Struct, frozen=True, kw_only=True):
    """A head as published: the exact bytes signed, the signature, and the signer's certificate.

    The certificate travels with the head so that any node can check it without having met
    the signer, and so that a kept head stays checkable as evidence later.
    """

    head: bytes  # JSON of a ChainHead, exactly as signed
    signature: bytes  # ECDSA P-256 with SHA-256, DER
    cert: bytes  # the signer's node certificate, DER


# Decides whether a signer's certificate is trusted; raises ValueError saying why not. One
# callable so that the certificate registry (registered, not revoked by fingerprint or name)
# can replace the plain CA check without touching the rest.
Trust = Callable[[x509.Certificate], None]


def cluster_trust(ca_cert: x509.Certificate, refusal: Callable[[str, str | None, str | None], str | None]) -> Trust:
    """Trust a certificate issued by the cluster CA that `refusal` (fingerprint, name, key)
    does not refuse: on a node, the certificate registry's check (registered, or a renewal of a
    registered certificate with the same name and key, and not revoked)."""

    def check(cert: x509.Certificate) -> None:
        pki.verify_issued_by(cert, ca_cert)
        reason = refusal(pki.fingerprint(cert), pki.node_name_of(cert), key_id(cert))
        if reason is not None:
            raise ValueError(f"the certificate is refused: {reason}")

    return check


def sign_head(head: ChainHead, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> bytes:
    """The published form of `head`, signed with the node key that `cert` certifies."""
    body = msgspec.json.encode(head)
    signature = key.sign(body, ec.ECDSA(hashes.SHA256()))
    return msgspec.json.encode(
        SignedHead(head=body, signature=signature, cert=cert.public_bytes(serialization.Encoding.DER))
    )


def verify_head(data: bytes, *, owner: str, trust: Trust) -> ChainHead:
    """The head `owner` signed, or AnchorError: the certificate must be trusted, name `owner`
    and have been valid when the head was made, and the signature must verify."""
    try:
        signed = msgspec.json.decode(data, type=SignedHead)
        head = msgspec.json.decode(signed.head, type=ChainHead)
    except msgspec.DecodeError as exc:
        raise AnchorError(f"not a signed head: {exc}") from exc
    try:
        cert = x509.load_der_x509_certificate(signed.cert)
    except ValueError as exc:
        raise AnchorError("the signer's certificate does not parse") from exc
    try:
        trust(cert)
        signer = pki.node_name_of(cert)
    except ValueError as exc:
        raise AnchorError(f"the signer's certificate is not trusted: {exc}") from exc
    if signer != owner or head.node != owner:
        raise AnchorError(f"a head of {head.node!r} signed by {signer!r} was published by {owner!r}")
    if not cert.not_valid_before_utc.timestamp() <= head.at <= cert.not_valid_after_utc.timestamp():
        raise AnchorError("the signer's certificate was not valid when the head was signed")
    key = cert.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise AnchorError("the signer's certificate does not hold an EC key")
    try:
        key.verify(signed.signature, signed.head, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature as exc:
        raise AnchorError("the signature does not verify") from exc
    if head.seq < 1 or not _HASH.fullmatch(head.hash):
        raise AnchorError("the head names no entry")
    return head


class Keep(StrEnum):
    """What a newly received head means next to the highest one held for its node."""

    ADVANCE = "advance"  # higher: keep it
    SAME = "same"  # the head already held (republished at start, or heard twice)
    REGRESSED = "regressed"  # lower, signed after the one held: its chain lost entries
    FORKED = "forked"  # same seq, other hash: its chain was rewritten
    STALE = "stale"  # lower and signed before the one held: an old head replayed, ignored


def keep(held: ChainHead | None, new: ChainHead) -> Keep:
    """The keep rule: the kept head only moves forward; going back or forking is evidence.

    Key-space versions are not signed, so any member could gossip an old head of another node
    again; only a lower head signed *later* than the one held says its chain went backwards.
    """
    if held is None or new.seq > held.seq:
        return Keep.ADVANCE
    if new.seq < held.seq:
        return Keep.REGRESSED if new.at > held.at else Keep.STALE
    return Keep.SAME if new.hash == held.hash else Keep.FORKED


def thin(seqs: Iterable[int], limit: int) -> list[int]:
    """Which kept heads to drop once more than `limit` are kept: the newest half all stay, of
    the older ones every other goes (the oldest stays), so old history stays sampled ever more
    sparsely instead of being cut off (a rewrite of old entries still meets an anchor)."""
    ordered = sorted(set(seqs))
    if len(ordered) <= limit:
        return []
    recent = max(limit // 2, 1)
    older = ordered[:-recent]
    return older[1::2]


class Witness(msgspec.Struct, frozen=True):
    """A head `peer` holds, checked."""

    peer: str
    head: ChainHead


class Evidence(msgspec.Struct, frozen=True, kw_only=True):
    """A peer saw the node publish `got` after `held`: a lower (regressed) or other (forked) head."""

    peer: str
    kind: Literal["regressed", "forked"]
    held: ChainHead
    got: ChainHead


FindingKind = Literal["broken", "truncated", "rewritten", "regressed", "forked"]


class Finding(msgspec.Struct, frozen=True, kw_only=True):
    """One reason to distrust a node's chain, with the peers that hold the proof."""

    kind: FindingKind
    seq: int
    peers: list[str]
    detail: str


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def compare(
    node: str,
    *,
    last_seq: int,
    hashes: Mapping[int, str],
    witnesses: Iterable[Witness],
    evidence: Iterable[Evidence] = (),
) -> list[Finding]:
    """Findings against `node`'s chain (ending at `last_seq`, with `hashes` at the anchored seqs)
    from the heads its peers hold, most telling first: truncations and rewrites at the highest
    anchored seq first, then what peers saw it publish (lower or conflicting heads)."""
    witnesses = list(witnesses)
    by_head: dict[ChainHead, set[str]] = {}
    for witness in witnesses:
        # The same head republished differs only in `at`; peers that hold it count together.
        key = ChainHead(node=witness.head.node, seq=witness.head.seq, hash=witness.head.hash, at=0.0)
        by_head.setdefault(key, set()).add(witness.peer)
    signed_at = {(w.head.seq, w.head.hash): w.head.at for w in witnesses}
    findings: list[Finding] = []
    for head, peers in sorted(by_head.items(), key=lambda item: -item[0].seq):
        when = _when(signed_at[(head.seq, head.hash)])
        if head.seq > last_seq:
            detail = f"the chain of {node} ends at entry {last_seq}, but {node} signed entry {head.seq} ({when})"
            findings.append(Finding(kind="truncated", seq=head.seq, peers=sorted(peers), detail=detail))
        elif hashes.get(head.seq) != head.hash:
            detail = f"entry {head.seq} of {node} is not the one {node} signed ({when}): the chain was rewritten"
            findings.append(Finding(kind="rewritten", seq=head.seq, peers=sorted(peers), detail=detail))
    for item in evidence:
        if item.kind == "regressed":
            detail = f"{node} published a head at entry {item.got.seq} after one at entry {item.held.seq}"
        else:
            detail = f"{node} signed two different entries {item.got.seq}"
        findings.append(Finding(kind=item.kind, seq=item.held.seq, peers=[item.peer], detail=detail))
    return findings


def summary(node: str, findings: list[Finding]) -> str:
    """One line for the most telling finding, naming the peers that hold the proof."""
    if not findings:
        return ""
    first = findings[0]
    same = [f for f in findings if f.kind == first.kind]
    peers = sorted({p for f in same for p in f.peers})
    more = f" (+{len(findings) - 1} more findings)" if len(findings) > 1 else ""
    held = f"; evidence held by {', '.join(peers)}" if peers else ""
    return f"audit chain of {node} {_VERB[first.kind]}: {first.detail}{held}{more}"


_VERB: dict[FindingKind, str] = {
    "broken": "is broken",
    "truncated": "was truncated",
    "rewritten": "was rewritten",
    "regressed": "went backwards",
    "forked": "forked",
}
