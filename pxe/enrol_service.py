"""A boot server node's side of PXE enrolment: mint credentials, admit, approve, hand over.

1. `offer(mac)`: every boot script a machine fetches carries a fresh credential for its MAC
   (`pxe.credential`); minting one replaces the MAC's previous unused one.
2. `enrol`: the booted machine presents it over TLS (the node's API, pinned by the CA
   fingerprint the credential carries), with its MAC and DMI serial. The credential is
   consumed; the machine gets a poll secret and waits `pending`, unless the approval policy
   in the node's PXE settings (MAC or serial allow-list, or everyone) approves it at once.
3. `approve` / `refuse`: an operator decides (API, CLI; audited by the access gate).
4. `poll`: the machine asks with its poll secret; once approved, and only on that poll, the
   node gets a join token (`issue_token`: made here on a certificate authority, else by a
   live authority over a signed node call, `appliance/cluster/machine_tokens.py`) and hands
   it over, once. The machine then joins as any node does, under the name decided at
   approval, at the token's seed (the authority that made it). While no authority can make
   one (`TokenUnavailable`), the poll answers `approved` with `waiting` saying why, the
   machine keeps polling, and the machine list shows the reason.

Every presentation and every hand-over is audited (`audit`), never with a secret. Deliberately
left out: joining itself (the join service and the machine's join client).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Awaitable, Callable
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
    waiting: str | None = None  # approved, no token yet: why (keep polling)


@dataclass(frozen=True)
class IssuedToken:
    """A join token just made for a machine (the token itself leaves only on the poll answer)."""

    token: str
    id: str
    expires_at: float
    issuer: str = ""  # the authority that made it when not this node (where the machine joins)


class TokenUnavailable(Exception):
    """No join token can be made now (no certificate authority answers); the message says why."""


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
        issue_token: Callable[[str, str], Awaitable[IssuedToken]],
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
        self._waiting: dict[str, str] = {}  # MAC -> why an approved machine has no token yet
        self._asking: set[str] = set()  # MACs whose token is being made (one request at a time)

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

    async def poll(self, request: PollRequest, source: str) -> PollAnswer:
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
        if record.mac in self._asking:  # a retried poll while the first one waits for an authority
            return PollAnswer(state="approved", poll_seconds=POLL_SECONDS, waiting="a join token is being made")
        approver = record.decided_by or "unknown"  # an approved record always names its approver
        self._asking.add(record.mac)
        try:
            issued = await self._issue_token(record.mac, approver)
        except TokenUnavailable as exc:
            reason = str(exc)
            if record.mac not in self._waiting:  # audited when the wait starts, not on every poll
                self._audit(mac=record.mac, source=source, action="pxe.enrol.token", outcome="failed", detail=reason)
            self._waiting[record.mac] = reason
            return PollAnswer(state="approved", poll_seconds=POLL_SECONDS, waiting=reason)
        finally:
            self._asking.discard(record.mac)
        self._waiting.pop(record.mac, None)
        # Read again: an operator may have refused or forgotten it while the token was made.
        current = self._store.get(record.mac)
        if current is None or current.state != "approved" or current.poll_hash != record.poll_hash:
            raise EnrolmentError(409, "this machine's enrolment changed while its join token was made; poll again")
        name = current.name or self._name(record.mac)
        self._store.put(
            msgspec.structs.replace(
                current,
                state="issued",
                name=name,
                token_id=issued.id,
                token_expires_at=issued.expires_at,
                updated_at=self._clock(),
            )
        )
        made_by = f" made by {issued.issuer}," if issued.issuer else ""
        self._audit(
            mac=record.mac,
            source=source,
            action="pxe.enrol.token",
            outcome="success",
            detail=f"join token {issued.id}{made_by} handed over, to join as {name}",
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
        self._waiting.pop(mac, None)
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
        view = EnrolmentView.of(record, self._clock())
        waiting = self._waiting.get(mac) if record.state == "approved" else None
        return msgspec.structs.replace(view, waiting=waiting) if waiting else view

    def forget(self, mac: str) -> bool:
        self._waiting.pop(mac, None)
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
