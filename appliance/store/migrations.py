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
    # 5 (cluster PKI, issue 18): join tokens redeemed at this node, the issuer. The primary key
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
