"""The audit log's hash chain, as pure functions.

Each entry's hash covers its sequence number, all its fields and the previous entry's hash,
so editing an entry breaks its own hash, deleting or reordering entries breaks a link or the
sequence, and cutting entries off the end no longer matches the recorded head. Verification
names the first entry where the chain stops holding.

Fields added after the first release (`EXTENSION_FIELDS`: which credential authenticated the
caller, which member forwarded the request) are hashed after the original ten, with empty
trailing ones left out: an entry that leaves them empty hashes exactly as before, so chains
written by earlier versions still verify, and blanking a field that was set changes the hash.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import msgspec

GENESIS = "0" * 64


class AuditEntry(msgspec.Struct, frozen=True, kw_only=True):
    """One audit record as stored and as the API returns it."""

    seq: int
    ts: float
    node: str
    user: str
    source: str
    action: str
    target: str
    outcome: str
    detail: str
    prev_hash: str
    hash: str
    # Added later, so last (the CSV export keeps its first columns where they were):
    credential: str = ""  # what authenticated the user: "session:<id>" or "token:<id>"; "" for none
    forwarded_by: str = ""  # the member that forwarded the request to this node; "" when it came directly


# Hashed after the original fields, in this order; only ever appended to.
EXTENSION_FIELDS = ("credential", "forwarded_by")


def entry_hash(
    *,
    seq: int,
    ts: float,
    node: str,
    user: str,
    source: str,
    action: str,
    target: str,
    outcome: str,
    detail: str,
    prev_hash: str,
    credential: str = "",
    forwarded_by: str = "",
) -> str:
    """SHA-256 over the canonical (JSON array) encoding of an entry's fields.

    The original ten fields come first; the extension fields follow with empty trailing ones
    dropped, so an entry without them hashes as entries did before they existed.
    """
    extension = [credential, forwarded_by]
    while extension and not extension[-1]:
        extension.pop()
    fields = [seq, ts, node, user, source, action, target, outcome, detail, prev_hash, *extension]
    return hashlib.sha256(msgspec.json.encode(fields)).hexdigest()


def _recompute(entry: AuditEntry) -> str:
    return entry_hash(
        seq=entry.seq,
        ts=entry.ts,
        node=entry.node,
        user=entry.user,
        source=entry.source,
        action=entry.action,
        target=entry.target,
        outcome=entry.outcome,
        detail=entry.detail,
        prev_hash=entry.prev_hash,
        credential=entry.credential,
        forwarded_by=entry.forwarded_by,
    )


class Verdict(msgspec.Struct, frozen=True):
    """Result of verifying a chain: `bad_seq` is None when the chain is intact."""

    entries: int
    head: str
    bad_seq: int | None = None
    reason: str = ""


def verify(entries: Iterable[AuditEntry], recorded_head: tuple[int, str] | None) -> Verdict:
    """Check entries (in stored order) link up from the genesis to the recorded head."""
    expected_seq, prev_hash, count = 1, GENESIS, 0
    for entry in entries:
        if entry.seq != expected_seq:
            reason = "entries are missing before it" if entry.seq > expected_seq else "it is out of order"
            return Verdict(count, prev_hash, entry.seq, f"expected sequence {expected_seq}; {reason}")
        if entry.prev_hash != prev_hash:
            return Verdict(count, prev_hash, entry.seq, "its link to the previous entry is broken")
        if _recompute(entry) != entry.hash:
            return Verdict(count, prev_hash, entry.seq, "its contents were modified")
        expected_seq, prev_hash, count = entry.seq + 1, entry.hash, count + 1
    if recorded_head is not None and recorded_head != (expected_seq - 1, prev_hash):
        seq, _ = recorded_head
        if seq >= expected_seq:
            return Verdict(count, prev_hash, expected_seq, f"entries {expected_seq}..{seq} were removed from the end")
        return Verdict(count, prev_hash, seq, "the recorded head does not match the chain")
    return Verdict(count, prev_hash)
