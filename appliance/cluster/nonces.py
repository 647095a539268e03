"""The forwarding assertions this node accepted, remembered across restarts.

A forwarding assertion is fresh for `MAX_SKEW_SECONDS` either side of its time, and within
that window its nonce may be used once. Kept in memory only, a restart forgot the nonces, so
an assertion accepted just before the restart could be presented again right after it. Each
accepted nonce is therefore inserted into the node database with the instant past which the
freshness check refuses its assertion anyway; the primary key makes the insert itself the
replay check. The write is one small row in the WAL (no fsync, as the audit log's and the
sessions' writes), and rows a window past that instant are pruned now and then (the margin
keeps a small backwards clock step from reviving a pruned nonce).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from appliance.store.database import Database

PRUNE_INTERVAL = 60.0


class NonceLedger:
    """Accepted forwarding nonces in the `forward_nonces` table."""

    def __init__(self, db: Database, *, margin: float, clock: Callable[[], float] = time.time) -> None:
        self._db = db
        self._margin = margin
        self._clock = clock
        self._pruned = float("-inf")

    def accept(self, nonce: str, expires_at: float) -> bool:
        """Record `nonce` as used until `expires_at`; False if it was recorded already (a replay)."""
        now = self._clock()
        with self._db.transaction() as conn:
            if now - self._pruned >= PRUNE_INTERVAL:
                conn.execute("DELETE FROM forward_nonces WHERE expires_at < ?", (now - self._margin,))
                self._pruned = now
            inserted = conn.execute(
                "INSERT INTO forward_nonces (nonce, expires_at) VALUES (?, ?) ON CONFLICT (nonce) DO NOTHING",
                (nonce, expires_at),
            ).rowcount
        return inserted == 1

    def count(self) -> int:
        return int(self._db.conn.execute("SELECT count(*) FROM forward_nonces").fetchone()[0])
