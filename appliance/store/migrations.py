"""The schema, as an append-only list of migrations.

Each entry moves the schema from version N-1 to N. Entries are never edited once released:
a change is a new entry. `PRAGMA user_version` holds the version a database is at.
"""

from __future__ import annotations

MIGRATIONS: tuple[str, ...] = (
    # 1: node identity.
    """
    CREATE TABLE node_meta (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    ) STRICT;
    """,
    # 2: the cluster configuration map, this node's sessions and token use, the audit chain.
    """
    CREATE TABLE config (
        kind     TEXT NOT NULL,
        key      TEXT NOT NULL,
        value    BLOB NOT NULL,
        version  TEXT NOT NULL,
        deleted  INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (kind, key)
    ) STRICT;
    CREATE TABLE sessions (
        id           TEXT PRIMARY KEY,
        secret_hash  TEXT NOT NULL UNIQUE,
        user         TEXT NOT NULL,
        csrf_token   TEXT NOT NULL,
        created_at   REAL NOT NULL,
        last_seen    REAL NOT NULL,
        source       TEXT NOT NULL,
        user_agent   TEXT NOT NULL
    ) STRICT;
    CREATE INDEX sessions_user ON sessions (user);
    CREATE TABLE token_use (
        token_id   TEXT PRIMARY KEY,
        last_used  REAL NOT NULL
    ) STRICT;
    CREATE TABLE audit (
        seq        INTEGER PRIMARY KEY,
        ts         REAL NOT NULL,
        node       TEXT NOT NULL,
        user       TEXT NOT NULL,
        source     TEXT NOT NULL,
        action     TEXT NOT NULL,
        target     TEXT NOT NULL,
        outcome    TEXT NOT NULL,
        detail     TEXT NOT NULL,
        prev_hash  TEXT NOT NULL,
        hash       TEXT NOT NULL
    ) STRICT;
    CREATE INDEX audit_user ON audit (user, seq);
    CREATE INDEX audit_action ON audit (action, seq);
    CREATE INDEX audit_ts ON audit (ts);
    CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
    CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
    """,
    # 3: per-node key spaces (scuttlebutt): what each member says about itself.
    """
    CREATE TABLE node_state (
        owner    TEXT NOT NULL,
        key      TEXT NOT NULL,
        value    BLOB NOT NULL,
        version  INTEGER NOT NULL,
        PRIMARY KEY (owner, key)
    ) STRICT;
    """,
    # 4: machines that fetched a PXE boot script from this node, and the inventory they reported
    # (pxe/enlistment.py). Local to the node, never replicated; bounded by that module.
    """
    CREATE TABLE pxe_machines (
        mac          TEXT PRIMARY KEY,
        ip           TEXT NOT NULL,
        first_seen   REAL NOT NULL,
        last_seen    REAL NOT NULL,
        boots        INTEGER NOT NULL,
        name         TEXT,
        inventory    BLOB,
        enlisted_at  REAL
    ) STRICT;
    CREATE INDEX pxe_machines_last_seen ON pxe_machines (last_seen);
    """,
    # 5 (audit anchoring, appliance/audit/anchoring.py): the chain heads other nodes signed, as
    # this node received them (a thinned history per node), and what contradicted them (evidence).
    """
    CREATE TABLE audit_anchors (
        node      TEXT NOT NULL,
        seq       INTEGER NOT NULL,
        hash      TEXT NOT NULL,
        at        REAL NOT NULL,
        signed    BLOB NOT NULL,
        received  REAL NOT NULL,
        PRIMARY KEY (node, seq)
    ) STRICT;
    CREATE TABLE audit_anchor_evidence (
        id        INTEGER PRIMARY KEY,
        node      TEXT NOT NULL,
        kind      TEXT NOT NULL,
        got_seq   INTEGER NOT NULL,
        got_hash  TEXT NOT NULL,
        held      BLOB NOT NULL,
        got       BLOB NOT NULL,
        received  REAL NOT NULL
    ) STRICT;
    CREATE INDEX audit_anchor_evidence_node ON audit_anchor_evidence (node);
    """,
    # 6 (forwarded identity): which credential authenticated an audited request and which member
    # forwarded it (appliance/audit/chain.py hashes them only when set, so older entries verify);
    # and the forwarding assertions this node accepted, so a restart does not forget them
    # (appliance/cluster/nonces.py; rows older than the freshness window are pruned).
    """
    ALTER TABLE audit ADD COLUMN credential TEXT NOT NULL DEFAULT '';
    ALTER TABLE audit ADD COLUMN forwarded_by TEXT NOT NULL DEFAULT '';
    CREATE TABLE forward_nonces (
        nonce       TEXT PRIMARY KEY,
        expires_at  REAL NOT NULL
    ) STRICT, WITHOUT ROWID;
    CREATE INDEX forward_nonces_expires ON forward_nonces (expires_at);
    """,
    # 7: the login back-off (appliance/auth/throttle_store.py): failed password checks per
    # (user, source), source and user, so a restart does not reset them. Local to the node,
    # never replicated; bounded by appliance/auth/throttle.py.
    """
    CREATE TABLE auth_backoff (
        key            TEXT PRIMARY KEY,
        failures       INTEGER NOT NULL,
        blocked_until  REAL NOT NULL,
        last_failure   REAL NOT NULL
    ) STRICT;
    """,
    # 8 (PXE enrolment): each PXE-booted machine's single-use enrolment credential (a hash)
    # and where its enrolment stands (pxe/enrolment.py). Local to the node, never replicated.
    """
    CREATE TABLE pxe_enrolments (
        mac               TEXT PRIMARY KEY,
        offer_id          TEXT UNIQUE,
        offer_hash        TEXT,
        offer_expires_at  REAL,
        state             TEXT NOT NULL,
        ip                TEXT,
        serial            TEXT,
        requested_at      REAL,
        poll_hash         TEXT,
        name              TEXT,
        decided_by        TEXT,
        decided_at        REAL,
        token_id          TEXT,
        token_expires_at  REAL,
        updated_at        REAL NOT NULL
    ) STRICT;
    CREATE INDEX pxe_enrolments_updated_at ON pxe_enrolments (updated_at);
    """,
    # 9 (cluster PKI): join tokens redeemed at this node, the issuer. The primary key
    # makes single use atomic: two concurrent admissions with one token cannot both insert.
    # Local to the node, never replicated; pruned with the tokens (appliance/cluster/join.py).
    """
    CREATE TABLE join_redemptions (
        token_id  TEXT PRIMARY KEY,
        name      TEXT NOT NULL,
        key_id    TEXT NOT NULL,
        at        REAL NOT NULL
    ) STRICT;
    """,
)

SCHEMA_VERSION = len(MIGRATIONS)
