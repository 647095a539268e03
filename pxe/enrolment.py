"""Enrolments of PXE-booted machines: records, the rules that move them, and their SQLite table.

One row per MAC in the node's `pxe_enrolments` table (local, never replicated, like the
machines it booted). A row holds the MAC's latest unused credential (only a hash of its secret)
and where its enrolment stands:

  offered   a credential was minted (script fetched), nobody presented one yet
  pending   the machine presented its credential over TLS and waits for approval
  approved  an operator (or the approval policy) approved it: its next poll gets a join token
            (or, while no certificate authority can make one, is told to keep waiting)
  issued    the join token was handed over on that poll (once); joining is the machine's part
  refused   an operator refused it; it stays refused until the machine is forgotten

The rules are pure functions (`check_credential`, `check_poll`, `auto_approves`) so they are
tested without a database; `EnrolmentStore` only reads and writes rows. Credentials are single
use: the first presentation consumes the credential whatever the outcome. A MAC that is already
pending or approved cannot be enrolled again (first come, first served): someone on the boot
network who claims a MAC cannot take over a machine's waiting enrolment, and the conflict is
audited so the operator can refuse the impostor.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Literal

import msgspec

from pxe.sqlite import Database, MemoryDatabase

EnrolState = Literal["offered", "pending", "approved", "issued", "refused"]
CREDENTIAL_TTL = 30 * 60.0  # script fetch to appliance start: the squashfs download on a slow link
PENDING_TTL = 24 * 3600.0  # a machine waits this long for approval, then starts over
TOKEN_TTL = 15 * 60.0  # the join token a machine gets on approval: it uses it at once
MAX_ENROLMENTS = 4096
POLL_SECONDS = 3.0  # how often a waiting machine asks
_COLUMNS = (
    "mac, offer_id, offer_hash, offer_expires_at, state, ip, serial, requested_at, poll_hash,"
    " name, decided_by, decided_at, token_id, token_expires_at, updated_at"
)


class EnrolmentError(Exception):
    """A refusal with its HTTP status; the message is for the machine's console (no secret)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class EnrolmentRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One row."""

    mac: str
    offer_id: str | None = None
    offer_hash: str | None = None
    offer_expires_at: float | None = None
    state: EnrolState = "offered"
    ip: str | None = None  # where it enrolled from
    serial: str | None = None  # the DMI serial it reported (self-reported: display and policy only)
    requested_at: float | None = None
    poll_hash: str | None = None
    name: str | None = None  # the name it joins under (decided at approval)
    decided_by: str | None = None  # the approving or refusing user, or "policy"
    decided_at: float | None = None
    token_id: str | None = None  # the join token it was handed (never the token)
    token_expires_at: float | None = None
    updated_at: float = 0.0


class EnrolmentView(msgspec.Struct, frozen=True, kw_only=True):
    """A machine's enrolment as the API shows it: no secret, no hash."""

    state: EnrolState | Literal["expired"]
    ip: str | None
    serial: str | None
    requested_at: float | None
    name: str | None
    decided_by: str | None
    decided_at: float | None
    token_id: str | None
    token_expires_at: float | None
    # Approved, but no join token yet, and why (no certificate authority is alive): the
    # machine keeps polling. Kept in memory by the service, not in the table.
    waiting: str | None = None

    @classmethod
    def of(cls, record: EnrolmentRecord, now: float) -> EnrolmentView:
        state: EnrolState | Literal["expired"] = record.state
        if record.state == "pending" and expired(record, now):
            state = "expired"
        return cls(
            state=state,
            ip=record.ip,
            serial=record.serial,
            requested_at=record.requested_at,
            name=record.name,
            decided_by=record.decided_by,
            decided_at=record.decided_at,
            token_id=record.token_id,
            token_expires_at=record.token_expires_at,
        )


class ApprovalPolicy(msgspec.Struct, frozen=True, kw_only=True):
    """Which machines are approved without an operator (from the node's PXE settings)."""

    macs: frozenset[str] = frozenset()
    serials: frozenset[str] = frozenset()
    everyone: bool = False


def secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def expired(record: EnrolmentRecord, now: float) -> bool:
    """A pending enrolment that waited too long."""
    return record.requested_at is not None and now - record.requested_at > PENDING_TTL


def check_credential(record: EnrolmentRecord | None, *, secret: str, mac: str, now: float) -> EnrolmentRecord:
    """The row the credential opens, or EnrolmentError. `record` is the row found by credential id."""
    if record is None or record.offer_hash is None or not hmac.compare_digest(record.offer_hash, secret_hash(secret)):
        raise EnrolmentError(
            403, "unknown or already used enrolment credential: reboot the machine from its PXE server"
        )
    if record.mac != mac:
        raise EnrolmentError(403, f"this enrolment credential was made for another machine, not {mac}")
    if record.offer_expires_at is None or record.offer_expires_at <= now:
        raise EnrolmentError(403, "the enrolment credential has expired: reboot the machine from its PXE server")
    if record.state == "refused":
        raise EnrolmentError(403, f"an operator refused machine {mac}; ask them to forget it before it boots again")
    if record.state in ("pending", "approved") and not expired(record, now):
        raise EnrolmentError(
            409,
            f"machine {mac} is already enrolled and waiting; if it rebooted, "
            "an operator must forget it (or refuse the waiting one) first",
        )
    return record


def check_poll(record: EnrolmentRecord | None, *, secret: str, now: float) -> EnrolmentRecord:
    """The row a poll may read, or EnrolmentError (a wrong secret, a refusal, an expiry)."""
    if record is None or record.poll_hash is None or not hmac.compare_digest(record.poll_hash, secret_hash(secret)):
        raise EnrolmentError(403, "unknown enrolment or wrong poll secret: reboot the machine from its PXE server")
    if record.state == "refused":
        raise EnrolmentError(403, f"an operator refused machine {record.mac}: it will not join the cluster")
    if record.state == "pending" and expired(record, now):
        raise EnrolmentError(410, "nobody approved this machine in time: reboot it from its PXE server to try again")
    if record.state == "issued":
        raise EnrolmentError(409, "this machine's join token was handed over already; an operator may approve it again")
    return record


def auto_approves(policy: ApprovalPolicy, mac: str, serial: str | None) -> bool:
    """Whether the policy approves this machine without an operator."""
    return policy.everyone or mac in policy.macs or (bool(serial) and serial in policy.serials)


def default_name(mac: str) -> str:
    """The node name a machine gets when nobody named it: pxe- and its MAC (a valid DNS label)."""
    return "pxe-" + mac.replace(":", "")


# The table as the node's migrations leave it (appliance/store/migrations.py), for `in_memory`.
SCHEMA = """
CREATE TABLE pxe_enrolments (
    mac               TEXT PRIMARY KEY,
    offer_id          TEXT UNIQUE,
    offer_hash        TEXT,
    offer_expires_at  REAL,
    state             TEXT NOT NULL,
    ip                TEXT,
    serial            TEXT,
    requested_at      REAL,
    poll_hash         TEXT,
    name              TEXT,
    decided_by        TEXT,
    decided_at        REAL,
    token_id          TEXT,
    token_expires_at  REAL,
    updated_at        REAL NOT NULL
) STRICT;
CREATE INDEX pxe_enrolments_updated_at ON pxe_enrolments (updated_at);"""


class EnrolmentStore:
    """The `pxe_enrolments` table of a node database (use from the event loop's thread)."""

    def __init__(self, db: Database, *, limit: int = MAX_ENROLMENTS) -> None:
        self._db = db
        self._limit = limit

    @classmethod
    def in_memory(cls, *, limit: int = MAX_ENROLMENTS) -> EnrolmentStore:
        return cls(MemoryDatabase(SCHEMA), limit=limit)

    def get(self, mac: str) -> EnrolmentRecord | None:
        row = self._db.conn.execute(f"SELECT {_COLUMNS} FROM pxe_enrolments WHERE mac = ?", (mac,)).fetchone()  # noqa: S608
        return None if row is None else _record(row)

    def by_offer(self, offer_id: str) -> EnrolmentRecord | None:
        row = self._db.conn.execute(
            f"SELECT {_COLUMNS} FROM pxe_enrolments WHERE offer_id = ?",  # noqa: S608 - constant columns
            (offer_id,),
        ).fetchone()
        return None if row is None else _record(row)

    def put(self, record: EnrolmentRecord) -> None:
        """Insert or replace a row; the oldest rows beyond the limit go (a flood of made-up MACs)."""
        values = tuple(msgspec.structs.astuple(record))
        with self._db.transaction() as conn:
            conn.execute(
                f"INSERT OR REPLACE INTO pxe_enrolments ({_COLUMNS}) VALUES ({', '.join('?' * len(values))})",  # noqa: S608
                values,
            )
            count = int(conn.execute("SELECT count(*) FROM pxe_enrolments").fetchone()[0])
            if count > self._limit:
                conn.execute(
                    "DELETE FROM pxe_enrolments WHERE mac IN"
                    " (SELECT mac FROM pxe_enrolments ORDER BY updated_at ASC, mac LIMIT ?)",
                    (count - self._limit,),
                )

    def forget(self, mac: str) -> bool:
        with self._db.transaction() as conn:
            cursor = conn.execute("DELETE FROM pxe_enrolments WHERE mac = ?", (mac,))
        return cursor.rowcount > 0


def _record(row: tuple[object, ...]) -> EnrolmentRecord:
    names = [c.strip() for c in _COLUMNS.split(",")]
    return msgspec.convert(dict(zip(names, row, strict=True)), EnrolmentRecord)
