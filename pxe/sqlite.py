"""The SQLite database the PXE stores write to, as they need it, and an in-memory one.

On a node the stores write to the node's database (appliance/store/database.py), whose
migrations create their tables; `python -m pxe serve` and tests use `memory(schema)` instead,
which creates them from each store's `SCHEMA` (the same statements as those migrations: a
change to a table is a new migration there and a new `SCHEMA` here; a unit test of the node
database fails when the two differ).
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from typing import Protocol


class Database(Protocol):
    """An open SQLite connection with write transactions."""

    @property
    def conn(self) -> sqlite3.Connection: ...

    def transaction(self) -> contextlib.AbstractContextManager[sqlite3.Connection]: ...


class MemoryDatabase:
    """A database that lasts as long as the process."""

    def __init__(self, schema: str) -> None:
        self.conn = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
        self.conn.executescript(schema)

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
