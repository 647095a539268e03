"""The audit log of this node: append events, query them, export them, verify the chain.

Appending reads the previous entry and writes the new one and the chain head in one write
transaction, so two processes appending at once (the service and the `debvisor user`
command) still form one chain. The table refuses UPDATE and DELETE by trigger; `verify`
catches anyone who goes around that.

Callers must never put secrets in any field: entries name who did what to which object.
`credential` names the session or API token by its id (never its secret); `forwarded_by`
names the member that forwarded a request, whose `source` is then the caller's address as
that member saw it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import Literal

import msgspec

from appliance.audit.chain import GENESIS, AuditEntry, Verdict, entry_hash, verify
from appliance.store.database import Database

HEAD_KEY = "audit_head"
MAX_FIELD = 512

log = logging.getLogger(__name__)

Outcome = Literal["success", "denied", "failed", "throttled"]


class AuditQuery(msgspec.Struct, frozen=True, kw_only=True):
    """Filters for reading the log; all optional, combined with AND."""

    user: str | None = None
    action: str | None = None  # exact, or a prefix ending in '.' or '*' ("user." / "user.*")
    since: float | None = None
    until: float | None = None
    after_seq: int = 0


def _clip(text: str) -> str:
    return text if len(text) <= MAX_FIELD else text[: MAX_FIELD - 1] + "…"


class AuditLog:
    """Append-only, hash-chained audit entries in the node database."""

    def __init__(self, db: Database, node: str, clock: Callable[[], float] = time.time) -> None:
        self._db = db
        self._node = node
        self._listeners: list[Callable[[AuditEntry], None]] = []
        self._clock = clock

    def append(
        self,
        *,
        user: str,
        source: str,
        action: str,
        target: str,
        outcome: Outcome,
        detail: str = "",
        credential: str = "",
        forwarded_by: str = "",
    ) -> AuditEntry:
        with self._db.transaction() as conn:
            row = conn.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
            seq, prev_hash = (int(row[0]) + 1, str(row[1])) if row else (1, GENESIS)
            fields = {
                "seq": seq,
                "ts": round(self._clock(), 6),
                "node": self._node,
                "user": _clip(user),
                "source": _clip(source),
                "action": _clip(action),
                "target": _clip(target),
                "outcome": outcome,
                "detail": _clip(detail),
                "credential": _clip(credential),
                "forwarded_by": _clip(forwarded_by),
                "prev_hash": prev_hash,
            }
            digest = entry_hash(**fields)  # type: ignore[arg-type]
            conn.execute(
                f"INSERT INTO audit ({_COLUMNS}) VALUES ({_PLACEHOLDERS})",  # noqa: S608 - fixed columns
                {**fields, "hash": digest},
            )
            conn.execute(
                "INSERT INTO node_meta (key, value) VALUES (?, ?)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (HEAD_KEY, f"{seq}:{digest}"),
            )
        entry = AuditEntry(**fields, hash=digest)  # type: ignore[arg-type]
        for listener in self._listeners:
            try:
                listener(entry)
            except Exception:  # a listener's failure must not look like a failed append
                log.exception("an audit listener failed")
        return entry

    def on_append(self, listener: Callable[[AuditEntry], None]) -> None:
        """Call `listener(entry)` after each entry this process appends (the event bus)."""
        self._listeners.append(listener)

    def query(self, query: AuditQuery, limit: int) -> list[AuditEntry]:
        """Entries matching `query` with seq > after_seq, oldest first, at most `limit`."""
        return list(self._select(query, limit))

    def export(self, query: AuditQuery) -> Iterator[AuditEntry]:
        """Every entry matching `query`, oldest first, read in pages."""
        after = query.after_seq
        while True:
            page = self.query(msgspec.structs.replace(query, after_seq=after), 1000)
            yield from page
            if len(page) < 1000:
                return
            after = page[-1].seq

    def verify(self) -> Verdict:
        raw = self._db.get_meta(HEAD_KEY)
        head = None
        if raw is not None:
            seq, _, digest = raw.partition(":")
            head = (int(seq), digest)
        cursor = self._db.conn.execute(f"SELECT {_COLUMNS} FROM audit ORDER BY rowid")  # noqa: S608 - fixed columns
        return verify((_entry(row) for row in cursor), head)

    def _select(self, query: AuditQuery, limit: int) -> Iterator[AuditEntry]:
        clauses, params = ["seq > ?"], [query.after_seq]
        if query.user is not None:
            clauses.append("user = ?")
            params.append(query.user)  # type: ignore[arg-type]
        if query.action is not None:
            if query.action.endswith(("*", ".")):
                clauses.append("action LIKE ? ESCAPE '\\'")
                prefix = query.action.rstrip("*").replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
                params.append(prefix + "%")  # type: ignore[arg-type]
            else:
                clauses.append("action = ?")
                params.append(query.action)  # type: ignore[arg-type]
        if query.since is not None:
            clauses.append("ts >= ?")
            params.append(query.since)  # type: ignore[arg-type]
        if query.until is not None:
            clauses.append("ts < ?")
            params.append(query.until)  # type: ignore[arg-type]
        # Only fixed clause strings are joined; every value is a bound parameter.
        sql = f"SELECT {_COLUMNS} FROM audit WHERE {' AND '.join(clauses)} ORDER BY seq LIMIT ?"  # noqa: S608
        for row in self._db.conn.execute(sql, (*params, limit)):
            yield _entry(row)


_NAMES = (
    *("seq", "ts", "node", "user", "source", "action", "target", "outcome", "detail"),
    *("prev_hash", "hash", "credential", "forwarded_by"),
)
_COLUMNS = ", ".join(_NAMES)
_PLACEHOLDERS = ", ".join(f":{name}" for name in _NAMES)


def _entry(row: tuple[object, ...]) -> AuditEntry:
    seq, ts, node, user, source, action, target, outcome, detail, prev_hash, digest, credential, forwarded_by = row
    return AuditEntry(
        seq=int(seq),  # type: ignore[call-overload]
        ts=float(ts),  # type: ignore[arg-type]
        node=str(node),
        user=str(user),
        source=str(source),
        action=str(action),
        target=str(target),
        outcome=str(outcome),
        detail=str(detail),
        credential=str(credential),
        forwarded_by=str(forwarded_by),
        prev_hash=str(prev_hash),
        hash=str(digest),
    )
