"""Browser sessions of this node: created at login, ended by logout, idleness or age.

A session is identified to the browser by a random secret in an HttpOnly cookie; the node
stores only its SHA-256. Each session has a CSRF token that unsafe requests must echo in
`X-CSRF-Token`. Sessions live in memory and in the node database (so a restart keeps them);
`last_seen` is written back at most once a minute, which bounds the idle timeout's error
after a restart to that minute. Sessions are per node: the cluster-wide rule that a changed
password or a deleted user ends them is checked against the user record on every request.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable

import msgspec

from appliance.store.database import Database

LAST_SEEN_WRITE_INTERVAL = 60.0


class Session(msgspec.Struct, kw_only=True):
    id: str
    secret_hash: str
    user: str
    csrf_token: str
    created_at: float
    last_seen: float
    source: str
    user_agent: str
    persisted_seen: float = 0.0


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class SessionStore:
    """Sessions with an idle timeout and an absolute lifetime, on an injectable clock."""

    def __init__(
        self,
        db: Database,
        *,
        idle_timeout: float,
        lifetime: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._db = db
        self.idle_timeout = idle_timeout
        self.lifetime = lifetime
        self._clock = clock
        self._by_hash: dict[str, Session] = {}
        rows = db.conn.execute(
            "SELECT id, secret_hash, user, csrf_token, created_at, last_seen, source, user_agent FROM sessions"
        ).fetchall()
        for row in rows:
            session = Session(
                id=row[0],
                secret_hash=row[1],
                user=row[2],
                csrf_token=row[3],
                created_at=row[4],
                last_seen=row[5],
                source=row[6],
                user_agent=row[7],
                persisted_seen=row[5],
            )
            self._by_hash[session.secret_hash] = session
        self.prune()

    def create(self, user: str, *, source: str, user_agent: str) -> tuple[Session, str]:
        """A new session and the secret for its cookie (never stored)."""
        secret = secrets.token_urlsafe(32)
        now = self._clock()
        session = Session(
            id=secrets.token_hex(8),
            secret_hash=_hash(secret),
            user=user,
            csrf_token=secrets.token_urlsafe(24),
            created_at=now,
            last_seen=now,
            source=source,
            user_agent=user_agent[:200],
            persisted_seen=now,
        )
        with self._db.transaction() as conn:
            conn.execute(
                "INSERT INTO sessions (id, secret_hash, user, csrf_token, created_at, last_seen, source, user_agent)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    session.id,
                    session.secret_hash,
                    user,
                    session.csrf_token,
                    now,
                    now,
                    source,
                    session.user_agent,
                ),
            )
        self._by_hash[session.secret_hash] = session
        return session, secret

    def lookup(self, secret: str) -> Session | None:
        """The live session for a cookie secret, marking it as seen now; None if unknown or expired."""
        session = self._by_hash.get(_hash(secret))
        if session is None:
            return None
        now = self._clock()
        if self._expired(session, now):
            self._forget(session)
            return None
        session.last_seen = now
        if now - session.persisted_seen >= LAST_SEEN_WRITE_INTERVAL:
            with self._db.transaction() as conn:
                conn.execute("UPDATE sessions SET last_seen = ? WHERE id = ?", (now, session.id))
            session.persisted_seen = now
        return session

    def expires_at(self, session: Session) -> float:
        """When the session ends if it stays in use (its absolute lifetime)."""
        return session.created_at + self.lifetime

    def of_user(self, user: str) -> list[Session]:
        now = self._clock()
        return sorted(
            (s for s in self._by_hash.values() if s.user == user and not self._expired(s, now)),
            key=lambda s: s.created_at,
        )

    def revoke(self, session_id: str) -> bool:
        for session in list(self._by_hash.values()):
            if session.id == session_id:
                self._forget(session)
                return True
        return False

    def revoke_user(self, user: str, *, keep: str | None = None) -> int:
        """End every session of `user` except the one with id `keep`; return how many ended."""
        ended = [s for s in self._by_hash.values() if s.user == user and s.id != keep]
        for session in ended:
            self._forget(session)
        return len(ended)

    def prune(self) -> None:
        now = self._clock()
        for session in [s for s in self._by_hash.values() if self._expired(s, now)]:
            self._forget(session)

    def _expired(self, session: Session, now: float) -> bool:
        return now - session.last_seen >= self.idle_timeout or now - session.created_at >= self.lifetime

    def _forget(self, session: Session) -> None:
        self._by_hash.pop(session.secret_hash, None)
        with self._db.transaction() as conn:
            conn.execute("DELETE FROM sessions WHERE id = ?", (session.id,))
