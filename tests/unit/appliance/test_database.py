"""The node database: created at the current schema, refused when foreign, corrupt or newer."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

import pytest

from appliance.errors import StartupError
from appliance.store import database as database_module
from appliance.store.database import APPLICATION_ID, Database
from appliance.store.migrations import MIGRATIONS, SCHEMA_VERSION


def test_create_sets_wal_application_id_and_current_version(tmp_path: Path) -> None:
    db = Database.create(tmp_path / "x.db")
    assert db.version == SCHEMA_VERSION
    assert db.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    db.close()


def test_create_refuses_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    path.write_bytes(b"precious")
    with pytest.raises(StartupError, match="refusing to overwrite"):
        Database.create(path)
    assert path.read_bytes() == b"precious"


def test_open_refuses_a_newer_schema(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    Database.create(path).close()
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 5}")
    with pytest.raises(StartupError, match=rf"schema version {SCHEMA_VERSION + 5}, newer"):
        Database.open(path)


def test_open_refuses_foreign_sqlite(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("CREATE TABLE t (x)")
    with pytest.raises(StartupError, match="not a DebVisor one"):
        Database.open(path)


def test_open_refuses_garbage(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    path.write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(StartupError, match="not a readable SQLite database"):
        Database.open(path)
    assert path.read_bytes() == b"this is not sqlite at all" * 100


def test_open_applies_pending_migrations_in_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "x.db"
    Database.create(path).close()
    extended = (*MIGRATIONS, "CREATE TABLE extra (x INTEGER) STRICT")
    monkeypatch.setattr(database_module, "MIGRATIONS", extended)
    monkeypatch.setattr(database_module, "SCHEMA_VERSION", len(extended))
    db = Database.open(path)
    assert db.version == len(extended)
    db.conn.execute("INSERT INTO extra VALUES (1)")
    db.close()


def test_failed_migration_rolls_back_and_keeps_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "x.db"
    Database.create(path).close()
    broken = (*MIGRATIONS, "CREATE TABLE half (x); CREATE TABLE syntax error")
    monkeypatch.setattr(database_module, "MIGRATIONS", broken)
    monkeypatch.setattr(database_module, "SCHEMA_VERSION", len(broken))
    with pytest.raises(StartupError, match="migration failed"):
        Database.open(path)
    with contextlib.closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert conn.execute("SELECT count(*) FROM sqlite_master WHERE name = 'half'").fetchone()[0] == 0


def test_meta_round_trip(tmp_path: Path) -> None:
    db = Database.create(tmp_path / "x.db")
    assert db.get_meta("k") is None
    db.set_meta("k", "v1")
    db.set_meta("k", "v2")
    assert db.get_meta("k") == "v2"
    db.close()


def _tables(conn: sqlite3.Connection, prefix: str) -> dict[str, list[tuple[object, ...]]]:
    """Each table's and index's columns as SQLite reports them (the text of CREATE varies)."""
    names = [
        row[0]
        for row in conn.execute(
            "SELECT name FROM sqlite_master WHERE name LIKE ? AND type IN ('table', 'index') ORDER BY name",
            (prefix + "%",),
        )
    ]
    shape: dict[str, list[tuple[object, ...]]] = {}
    for name in names:
        shape[name] = [tuple(r) for r in conn.execute(f"PRAGMA table_info({name})")] or [
            tuple(r) for r in conn.execute(f"PRAGMA index_xinfo({name})")
        ]
    return shape


def test_the_pxe_stores_standalone_schema_is_what_the_node_migrations_make(tmp_path: Path) -> None:
    """`python -m pxe serve` creates the PXE tables from each store's SCHEMA; a node from its
    migrations. A change to one without the other fails here, not on a booting machine."""
    from pxe import enlistment, enrolment
    from pxe.sqlite import MemoryDatabase

    db = Database.create(tmp_path / "x.db")
    try:
        node = _tables(db.conn, "pxe_")
    finally:
        db.close()
    standalone: dict[str, list[tuple[object, ...]]] = {}
    for module in (enlistment, enrolment):
        standalone |= _tables(MemoryDatabase(module.SCHEMA).conn, "pxe_")
    assert node, "the node's migrations make no pxe_ tables"
    assert standalone == node
