"""The cluster configuration map as stored on this node: (kind, key) -> versioned value.

Users, roles, API tokens and revocations live here (and networks and more in later issues).
Every write carries a hybrid-logical-clock version and a delete leaves a tombstone, which is
what lets the cluster-state issue merge these maps between nodes last-writer-wins. Values are
opaque bytes (msgspec-encoded Structs) to this layer.

Tombstones are garbage-collected after `TOMBSTONE_GRACE` (by the version's wall-clock part):
every node stops listing, merging and keeping a tombstone older than that, so all nodes drop
it at about the same moment without coordination. The price, as in Cassandra's
`gc_grace_seconds`: a node that was cut off for longer than the grace period and still holds
the deleted value brings it back when it returns. Seven days covers a long weekend of a site
being offline with margin; a node away longer should be removed and re-joined.

`changed()` tells a cache whether any *other* connection (the `debvisor user` command, or
replication) committed since it last looked, using SQLite's `data_version`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from appliance.store.database import Database
from appliance.store.hlc import HybridClock, Timestamp

TOMBSTONE_GRACE = 7 * 24 * 3600.0

log = logging.getLogger(__name__)


class ConfigStore:
    """Reads and writes of the configuration map in this node's database."""

    def __init__(
        self,
        db: Database,
        clock: HybridClock,
        *,
        tombstone_grace: float = TOMBSTONE_GRACE,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._db = db
        self._clock = clock
        self._grace = tombstone_grace
        self._wall = wall
        self._seen_version = self._data_version()
        self._listeners: list[Callable[[str, str, bool], None]] = []

    def get(self, kind: str, key: str) -> bytes | None:
        row = self._db.conn.execute(
            "SELECT value FROM config WHERE kind = ? AND key = ? AND deleted = 0", (kind, key)
        ).fetchone()
        return None if row is None else bytes(row[0])

    def items(self, kind: str) -> list[tuple[str, bytes]]:
        rows = self._db.conn.execute(
            "SELECT key, value FROM config WHERE kind = ? AND deleted = 0 ORDER BY key", (kind,)
        ).fetchall()
        return [(str(key), bytes(value)) for key, value in rows]

    def put(self, kind: str, key: str, value: bytes) -> str:
        """Write a value; returns its version."""
        version = self._clock.now().encode()
        with self._db.transaction() as conn:
            conn.execute(
                "INSERT INTO config (kind, key, value, version, deleted) VALUES (?, ?, ?, ?, 0)"
                " ON CONFLICT (kind, key) DO UPDATE SET value = excluded.value, version = excluded.version,"
                " deleted = 0",
                (kind, key, value, version),
            )
        self._notify(kind, key, local=True)
        return version

    def delete(self, kind: str, key: str) -> bool:
        """Replace a live value by a tombstone; False if there was none."""
        version = self._clock.now().encode()
        with self._db.transaction() as conn:
            cursor = conn.execute(
                "UPDATE config SET value = x'', version = ?, deleted = 1 WHERE kind = ? AND key = ? AND deleted = 0",
                (version, kind, key),
            )
        if cursor.rowcount:
            self._notify(kind, key, local=True)
        return cursor.rowcount > 0

    def entry(self, kind: str, key: str) -> tuple[bytes, str, bool] | None:
        """(value, version, deleted) of one entry, tombstone included."""
        row = self._db.conn.execute(
            "SELECT value, version, deleted FROM config WHERE kind = ? AND key = ?", (kind, key)
        ).fetchone()
        return None if row is None else (bytes(row[0]), str(row[1]), bool(row[2]))

    def versions(self) -> list[tuple[str, str, str]]:
        """(kind, key, version) of every entry but expired tombstones: the digest anti-entropy compares."""
        rows = self._db.conn.execute(
            "SELECT kind, key, version FROM config WHERE deleted = 0 OR version >= ? ORDER BY kind, key",
            (self._horizon(),),
        ).fetchall()
        return [(str(k), str(key), str(v)) for k, key, v in rows]

    def purge_tombstones(self) -> int:
        """Delete tombstones older than the grace period; returns how many."""
        with self._db.transaction() as conn:
            cursor = conn.execute("DELETE FROM config WHERE deleted = 1 AND version < ?", (self._horizon(),))
        return cursor.rowcount

    def _horizon(self) -> str:
        """Versions below this string are older than the grace period (versions sort as strings)."""
        return f"{max(0, int((self._wall() - self._grace) * 1000)):013x}"

    def versioned_items(self, kind: str) -> list[tuple[str, bytes, str, bool]]:
        """(key, value, version, deleted) of every entry of a kind, tombstones included."""
        rows = self._db.conn.execute(
            "SELECT key, value, version, deleted FROM config WHERE kind = ? ORDER BY key", (kind,)
        ).fetchall()
        return [(str(k), bytes(v), str(ver), bool(d)) for k, v, ver, d in rows]

    def merge(self, kind: str, key: str, value: bytes, version: str, *, deleted: bool = False) -> bool:
        """Take a remote entry if its version is newer than ours (last writer wins); True if taken.

        A tombstone older than the grace period is not taken: it has been collected everywhere."""
        self._clock.observe(Timestamp.decode(version))
        if deleted and version < self._horizon():
            return False
        with self._db.transaction() as conn:
            cursor = conn.execute(
                "INSERT INTO config (kind, key, value, version, deleted) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (kind, key) DO UPDATE SET value = excluded.value, version = excluded.version,"
                " deleted = excluded.deleted WHERE excluded.version > config.version",
                (kind, key, b"" if deleted else value, version, int(deleted)),
            )
        if cursor.rowcount:
            self._notify(kind, key, local=False)
        return cursor.rowcount > 0

    def on_change(self, listener: Callable[[str, str, bool], None]) -> None:
        """Call `listener(kind, key, local)` after each change: `local` for this node's own
        writes, False for entries merged from a peer."""
        self._listeners.append(listener)

    def changed(self) -> bool:
        """True once after another connection committed to the database."""
        version = self._data_version()
        if version == self._seen_version:
            return False
        self._seen_version = version
        return True

    def _notify(self, kind: str, key: str, *, local: bool) -> None:
        # The write is committed: a listener that raises is logged, never undoes it nor stops
        # the others (a replication merge must not fail because of what someone does with it).
        for listener in self._listeners:
            try:
                listener(kind, key, local)
            except Exception:
                log.exception("a configuration change listener failed on %s/%s", kind, key)

    def _data_version(self) -> int:
        return int(self._db.conn.execute("PRAGMA data_version").fetchone()[0])
