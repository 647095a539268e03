"""Open the node database safely and bring its schema up to date.

The database is SQLite in WAL mode (readers never block the writer, a crash never tears a
commit). It carries DebVisor's `application_id` so that a foreign SQLite file is recognised,
and a `user_version` that must not be newer than this program knows: a database written by a
newer DebVisor is refused rather than misread.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from appliance.errors import StartupError
from appliance.store.migrations import MIGRATIONS, SCHEMA_VERSION

# "DbVs" as a big-endian int32: marks the file as a DebVisor database.
APPLICATION_ID = 0x44625673


class Database:
    """One SQLite connection with DebVisor's settings; use from one thread."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self.conn = conn
        self.path = path

    @classmethod
    def create(cls, path: Path) -> Database:
        """Create a new database at `path` (which must not exist) at the current schema."""
        if path.exists():
            raise StartupError(f"{path} already exists; refusing to overwrite it")
        conn = _connect(path)
        conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        db = cls(conn, path)
        db.migrate()
        return db

    @classmethod
    def open(cls, path: Path) -> Database:
        """Open an existing database, refusing foreign, corrupt or newer ones, then migrate.

        The checks run on a read-only connection first, so a refused file is left exactly as
        it was (a read-write open of a WAL database would checkpoint it on close).
        """
        if not path.is_file():
            raise StartupError(f"{path} is missing or not a file")
        _inspect(path)
        conn = _connect(path)
        db = cls(conn, path)
        try:
            db.migrate()
        except sqlite3.Error as exc:
            conn.close()
            raise StartupError(f"{path}: schema migration failed, database left at its old version: {exc}") from exc
        return db

    @property
    def version(self) -> int:
        return int(self.conn.execute("PRAGMA user_version").fetchone()[0])

    def migrate(self) -> None:
        """Apply every migration newer than the database, each in its own transaction."""
        for version in range(self.version + 1, SCHEMA_VERSION + 1):
            with self.transaction():
                for statement in _statements(MIGRATIONS[version - 1]):
                    self.conn.execute(statement)
                self.conn.execute(f"PRAGMA user_version = {version}")

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction: committed when the block ends, rolled back if it raises."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def get_meta(self, key: str) -> str | None:
        row = self.conn.execute("SELECT value FROM node_meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO node_meta (key, value) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    def close(self) -> None:
        self.conn.close()


def _inspect(path: Path) -> None:
    """Refuse a file that is not a healthy DebVisor database of a version we know; write nothing."""
    try:
        with contextlib.closing(sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)) as conn:
            app_id = conn.execute("PRAGMA application_id").fetchone()[0]
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            quick_check = conn.execute("PRAGMA quick_check").fetchone()[0] if app_id == APPLICATION_ID else "ok"
    except sqlite3.DatabaseError as exc:
        raise StartupError(f"{path} is not a readable SQLite database: {exc}") from exc
    if app_id != APPLICATION_ID:
        raise StartupError(f"{path} is an SQLite database but not a DebVisor one")
    if quick_check != "ok":
        raise StartupError(f"{path} is corrupt: {quick_check}")
    if version > SCHEMA_VERSION:
        raise StartupError(
            f"{path} has schema version {version}, newer than this debvisor knows ({SCHEMA_VERSION}); "
            "run the newer debvisor"
        )


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=5.0)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


def _statements(script: str) -> list[str]:
    """Split a migration into statements; a `;` inside a trigger body does not end one."""
    statements: list[str] = []
    pending = ""
    for piece in script.split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip(" \n;"):
                statements.append(pending.strip())
            pending = ""
    if pending.strip(" \n;"):
        raise ValueError(f"incomplete SQL statement in migration: {pending.strip()[:80]}")
    return statements
