"""The audit entry's credential and forwarding-node fields: hashed so that chains written
before they existed still verify, and so that neither can be edited or blanked unnoticed."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import msgspec

from appliance.audit.chain import GENESIS, AuditEntry, entry_hash, verify
from appliance.audit.log import AuditLog
from appliance.store.database import APPLICATION_ID, Database, _statements
from appliance.store.migrations import MIGRATIONS

FIELDS = {
    "ts": 1.5, "node": "n1", "user": "ops", "source": "192.0.2.1", "action": "user.create",
    "target": "bob", "outcome": "success", "detail": "",
}  # fmt: skip


def _old_hash(seq: int, prev_hash: str) -> str:
    """The hash as the first release computed it, from its ten fields."""
    values = [seq, *FIELDS.values(), prev_hash]
    return hashlib.sha256(msgspec.json.encode(values)).hexdigest()


def test_an_entry_without_the_new_fields_hashes_as_before() -> None:
    assert entry_hash(seq=1, **FIELDS, prev_hash=GENESIS) == _old_hash(1, GENESIS)  # type: ignore[arg-type]
    with_credential = entry_hash(seq=1, **FIELDS, prev_hash=GENESIS, credential="token:ab")  # type: ignore[arg-type]
    forwarded = entry_hash(seq=1, **FIELDS, prev_hash=GENESIS, credential="token:ab", forwarded_by="n2")  # type: ignore[arg-type]
    assert len({_old_hash(1, GENESIS), with_credential, forwarded}) == 3


def test_editing_or_blanking_the_new_fields_breaks_the_chain() -> None:
    entries, prev = [], GENESIS
    for seq, (credential, forwarded_by) in enumerate([("", ""), ("session:s1", ""), ("token:t1", "n2")], 1):
        digest = entry_hash(seq=seq, **FIELDS, prev_hash=prev, credential=credential, forwarded_by=forwarded_by)  # type: ignore[arg-type]
        entries.append(
            AuditEntry(seq=seq, **FIELDS, prev_hash=prev, hash=digest, credential=credential, forwarded_by=forwarded_by)  # type: ignore[arg-type]
        )
        prev = digest
    assert verify(entries, (3, prev)).bad_seq is None
    for change in ({"forwarded_by": ""}, {"forwarded_by": "n3"}, {"credential": ""}, {"credential": "token:t2"}):
        tampered = [*entries[:2], msgspec.structs.replace(entries[2], **change)]
        assert verify(tampered, (3, prev)).bad_seq == 3, change


def test_a_chain_written_before_the_migration_still_verifies_and_grows(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    for version, script in enumerate(MIGRATIONS[:4], 1):  # the schema of the release before
        for statement in _statements(script):
            conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {version}")
    prev = GENESIS
    for seq in (1, 2):
        digest = _old_hash(seq, prev)
        conn.execute(
            "INSERT INTO audit (seq, ts, node, user, source, action, target, outcome, detail, prev_hash, hash)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (seq, *FIELDS.values(), prev, digest),
        )
        prev = digest
    conn.execute("INSERT INTO node_meta (key, value) VALUES ('audit_head', ?)", (f"2:{prev}",))
    conn.close()

    db = Database.open(path)
    log = AuditLog(db, "n1")
    assert log.verify().entries == 2
    log.append(user="ops", source="192.0.2.9", action="put /api/v1/node", target="/api/v1/node", outcome="denied",
               credential="token:t1", forwarded_by="n2")  # fmt: skip
    verdict = log.verify()
    assert (verdict.entries, verdict.bad_seq) == (3, None)
    db.close()
