"""The login back-off's state in the node's SQLite, so a restart does not reset it.

A thin adapter for `appliance.auth.throttle.LoginThrottle`: it reads every row once at start
and writes only what the throttle says changed (failures, and the first success after them),
all of one change in one transaction. The throttle bounds the number of keys and deletes what
it drops, so the table stays as small as its in-memory copy. The table is this node's own and
never replicated: a guesser is held by the node it talks to.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from appliance.auth.throttle import Entry
from appliance.store.database import Database


class SqliteBackoffStore:
    """`BackoffStore` over the `auth_backoff` table."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def load(self) -> Iterable[tuple[str, Entry]]:
        rows = self._db.conn.execute("SELECT key, failures, blocked_until, last_failure FROM auth_backoff")
        return [(str(key), Entry(int(failures), float(until), float(last))) for key, failures, until, last in rows]

    def save(self, changes: Mapping[str, Entry | None]) -> None:
        if not changes:
            return
        with self._db.transaction() as conn:
            for key, entry in changes.items():
                if entry is None:
                    conn.execute("DELETE FROM auth_backoff WHERE key = ?", (key,))
                else:
                    conn.execute(
                        "INSERT INTO auth_backoff (key, failures, blocked_until, last_failure) VALUES (?, ?, ?, ?) "
                        "ON CONFLICT (key) DO UPDATE SET failures = excluded.failures, "
                        "blocked_until = excluded.blocked_until, last_failure = excluded.last_failure",
                        (key, entry.failures, entry.blocked_until, entry.last_failure),
                    )
