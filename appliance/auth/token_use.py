"""When each API token was last used on this node.

Tokens authenticate many requests a second; their last-used time is kept in memory and
written to the node database at most once a minute per token, so the API can show it without
a write per request. It is per node (not replicated): the API reports this node's view.
"""

from __future__ import annotations

from appliance.store.database import Database

WRITE_INTERVAL = 60.0


class TokenUse:
    """When each token was last used on this node; kept in memory, persisted at most once a minute."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._written: dict[str, float] = dict(db.conn.execute("SELECT token_id, last_used FROM token_use").fetchall())
        self._seen: dict[str, float] = dict(self._written)

    def used(self, token_id: str, now: float) -> None:
        self._seen[token_id] = now
        if now - self._written.get(token_id, 0.0) >= WRITE_INTERVAL:
            with self._db.transaction() as conn:
                conn.execute(
                    "INSERT INTO token_use (token_id, last_used) VALUES (?, ?)"
                    " ON CONFLICT (token_id) DO UPDATE SET last_used = excluded.last_used",
                    (token_id, now),
                )
            self._written[token_id] = now

    def last_used(self, token_id: str) -> float | None:
        return self._seen.get(token_id)
