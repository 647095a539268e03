"""A boot server node's side of PXE enrolment: mint credentials, admit, approve, hand over.

1. `offer(mac)`: every boot script a machine fetches carries a fresh credential for its MAC
   (`pxe.credential`); minting one replaces the MAC's previous unused one.
2. `enrol`: the booted machine presents it over TLS (the node's API, pinned by the CA
   fingerprint the credential carries), with its MAC and DMI serial. The credential is
   consumed; the machine gets a poll secret and waits `pending`, unless the approval policy
   in the node's PXE settings (MAC or serial allow-list, or everyone) approves it at once.
3. `approve` / `refuse`: an operator decides (API, CLI; audited by the access gate).
4. `poll`: the machine asks with its poll secret; once approved, and only on that poll, the
   node issues a join token (`issue_token`: the cluster's join service) and hands it over,
   once. The machine then joins as any node does, under the name decided at approval.

Every presentation and every hand-over is audited (`audit`), never with a secret. Deliberately
left out: joining itself (the join service and the machine's join client).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import msgspec

from pxe.credential import EnrolCredential, encode
from pxe.enrolment import (
    CREDENTIAL_TTL,
    POLL_SECONDS,
    ApprovalPolicy,
    EnrolmentError,
    EnrolmentRecord,
    EnrolmentStore,
    EnrolmentView,
    auto_approves,
    check_credential,
    check_poll,
    default_name,
    expired,
    secret_hash,
)

MAX_SERIAL = 128


class EnrolRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """`POST /api/v1/pxe/enrol`: the credential's id and secret, and who presents it."""

    id: str
    secret: str
    mac: str
    serial: str | None = None


class EnrolAnswer(msgspec.Struct, frozen=True, kw_only=True):
    state: str  # pending or approved
    poll_secret: str  # the machine's secret for its polls (over this TLS answer only)
    poll_seconds: float


class PollRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """`POST /api/v1/pxe/enrol/poll`."""

    mac: str
    poll_secret: str


class PollAnswer(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    state: str  # pending or approved
    poll_seconds: float
    name: str | None = None  # set once approved: the node name to join under
    join_token: str | None = None  # set once approved, on this answer only


@dataclass(frozen=True)
class IssuedToken:
    """A join token just made for a machine (the token itself leaves only on the poll answer)."""

    token: str
    id: str
    expires_at: float


class Audit(Protocol):
    def __call__(self, *, mac: str, source: str, action: str, outcome: str, detail: str) -> None: ...


class EnrolmentService:
    """Enrolments on this node (the boot server the machines fetched their scripts from)."""

    def __init__(
        self,
        store: EnrolmentStore,
        *,
        ca_fingerprint: str,
        servers: Callable[[], list[str]],
        issue_token: Callable[[str], IssuedToken],
        policy: Callable[[], ApprovalPolicy],
        name_for: Callable[[str], str | None],
        audit: Audit,
        clock: Callable[[], float] = time.time,
        credential_ttl: Callable[[], float] = lambda: CREDENTIAL_TTL,
    ) -> None:
        self._store = store
        self._ca_fingerprint = ca_fingerprint
        self._servers = servers
        self._issue_token = issue_token
        self._policy = policy
        self._name_for = name_for
        self._audit = audit
        self._clock = clock
        self._credential_ttl = credential_ttl

    def offer(self, mac: str) -> str:
        """A new single-use credential for `mac` (replacing its unused one); its kernel-argument form."""
        now = self._clock()
        offer_id, secret = secrets.token_hex(8), secrets.token_urlsafe(24)
        record = self._store.get(mac) or EnrolmentRecord(mac=mac)
        self._store.put(
            msgspec.structs.replace(
                record,
                offer_id=offer_id,
                offer_hash=secret_hash(secret),
                offer_expires_at=now + self._credential_ttl(),
                updated_at=now,
            )
        )
        return encode(EnrolCredential(offer_id, secret, mac, self._ca_fingerprint, self._servers()))

    def enrol(self, request: EnrolRequest, source: str) -> EnrolAnswer:
        """Admit a presented credential (consumed whatever happens); EnrolmentError if refused."""
        now = self._clock()
        found = self._store.by_offer(request.id)
        if found is not None:  # single use: gone at the first presentation, right or wrong
            self._store.put(msgspec.structs.replace(found, offer_id=None, offer_hash=None, updated_at=now))
        try:
            record = check_credential(found, secret=request.secret, mac=request.mac, now=now)
            serial = _serial(request.serial)
        except EnrolmentError as exc:
            self._audit(mac=request.mac, source=source, action="pxe.enrol", outcome="denied", detail=str(exc))
            raise
        poll_secret = secrets.token_urlsafe(32)
        approved = auto_approves(self._policy(), request.mac, serial)
        record = msgspec.structs.replace(
            record,
            offer_id=None,
            offer_hash=None,
            state="approved" if approved else "pending",
            ip=source,
            serial=serial,
            requested_at=now,
            poll_hash=secret_hash(poll_secret),
            name=self._name(request.mac) if approved else None,
            decided_by="policy" if approved else None,
            decided_at=now if approved else None,
            token_id=None,
            token_expires_at=None,
            updated_at=now,
        )
        self._store.put(record)
        detail = f"serial {serial or '-'}, " + (
            f"approved by the policy as {record.name}" if approved else "waiting for approval"
        )
        self._audit(mac=request.mac, source=source, action="pxe.enrol", outcome="success", detail=detail)
        return EnrolAnswer(state=record.state, poll_secret=poll_secret, poll_seconds=POLL_SECONDS)

    def poll(self, request: PollRequest, source: str) -> PollAnswer:
        """Where the machine's enrolment stands; the join token on the first poll after approval."""
        now = self._clock()
        try:
            record = check_poll(self._store.get(request.mac), secret=request.poll_secret, now=now)
        except EnrolmentError as exc:
            if exc.status != 403 or "refused" in str(exc):  # a wrong secret is not worth an entry per poll
                self._audit(mac=request.mac, source=source, action="pxe.enrol.poll", outcome="denied", detail=str(exc))
            raise
        if record.state != "approved":
            return PollAnswer(state=record.state, poll_seconds=POLL_SECONDS)
        name = record.name or self._name(record.mac)
        issued = self._issue_token(f"pxe:{record.mac} approved by {record.decided_by}")
        self._store.put(
            msgspec.structs.replace(
                record,
                state="issued",
                name=name,
                token_id=issued.id,
                token_expires_at=issued.expires_at,
                updated_at=now,
            )
        )
        self._audit(
            mac=record.mac,
            source=source,
            action="pxe.enrol.token",
            outcome="success",
            detail=f"join token {issued.id} handed over, to join as {name}",
        )
        return PollAnswer(state="approved", poll_seconds=POLL_SECONDS, name=name, join_token=issued.token)

    def approve(self, mac: str, by: str, name: str | None = None) -> EnrolmentView:
        """Approve a waiting machine to join as `name` (default: its settings' name, else pxe-<MAC>);
        EnrolmentError unless it is pending or already approved."""
        now = self._clock()
        record = self._store.get(mac)
        if record is None or record.state not in ("pending", "approved") or expired(record, now):
            state = "not enrolled" if record is None else ("expired" if expired(record, now) else record.state)
            raise EnrolmentError(409, f"machine {mac} is not waiting for approval ({state})")
        record = msgspec.structs.replace(
            record, state="approved", name=name or self._name(mac), decided_by=by, decided_at=now, updated_at=now
        )
        self._store.put(record)
        return EnrolmentView.of(record, now)

    def refuse(self, mac: str, by: str) -> EnrolmentView:
        """Refuse a machine, whatever its state (it stays refused until forgotten)."""
        now = self._clock()
        record = self._store.get(mac) or EnrolmentRecord(mac=mac)
        record = msgspec.structs.replace(
            record,
            offer_id=None,
            offer_hash=None,
            state="refused",  # its poll secret stays: the machine learns of the refusal on its next poll
            decided_by=by,
            decided_at=now,
            updated_at=now,
        )
        self._store.put(record)
        return EnrolmentView.of(record, now)

    def view(self, mac: str) -> EnrolmentView | None:
        """A machine's enrolment (None: it never presented a credential and was never refused)."""
        record = self._store.get(mac)
        if record is None or record.state == "offered":
            return None
        return EnrolmentView.of(record, self._clock())

    def forget(self, mac: str) -> bool:
        return self._store.forget(mac)

    def _name(self, mac: str) -> str:
        return self._name_for(mac) or default_name(mac)


def _serial(text: str | None) -> str | None:
    """A reported serial, bounded and printable (it is shown and compared, never trusted)."""
    if text is None or not text.strip():
        return None
    if len(text) > MAX_SERIAL or not text.isprintable():
        raise EnrolmentError(422, f"serial: at most {MAX_SERIAL} printable characters")
    return text.strip()
