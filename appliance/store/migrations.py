"""The schema, as an append-only list of migrations.

Each entry moves the schema from version N-1 to N. Entries are never edited once released:
a change is a new entry. `PRAGMA user_version` holds the version a database is at.
"""

from __future__ import annotations

MIGRATIONS: tuple[str, ...] = (
    # 1: node identity and local accounts.
    """
    CREATE TABLE node_meta (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    ) STRICT;
    CREATE TABLE users (
        name                  TEXT PRIMARY KEY,
        role                  TEXT NOT NULL,
        password_hash         TEXT NOT NULL,
        enabled               INTEGER NOT NULL DEFAULT 1,
        must_change_password  INTEGER NOT NULL DEFAULT 0,
        created_at            REAL NOT NULL,
        updated_at            REAL NOT NULL
    ) STRICT;
    """,
)

SCHEMA_VERSION = len(MIGRATIONS)
