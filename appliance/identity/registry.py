"""The certificate registry: which node certificates the cluster issued, and which it took back.

A certificate that chains to the cluster CA is not enough to be a member: whoever holds the
CA key (an authority, or a removed authority that kept its copy) can mint one. Every
certificate an authority issues is therefore recorded in the replicated configuration map
(kind `cert`, keyed by its SHA-256 fingerprint: node name, serial, expiry, issuer), and the
gossip transport, the forwarder, the internal node routes and joining accept only registered
certificates that are not revoked. Only members can write the map, and a removed node is no
member, so a certificate it mints stays unregistered.

A renewed certificate keeps its node's key, and a node starts using it at once (a restart
with a new address renews before gossip starts): so a certificate whose own entry has not
reached this node yet is accepted when its key is registered for the same node name under
another certificate that is still good. Only an authority can have certified that key for
that name, and whoever holds the node's key could use its registered certificate anyway.

Revocation covers names too: removing a node revokes every certificate registered for its
name and records the name (kind `revoked-name`) with the time of removal; a registry entry
for that name issued at or before that time is refused even if it arrives later (a renewal
in flight). A new join under the same name lifts the record.

`judge` is the pure decision; `CertRegistry` reads and writes the map.
"""

from __future__ import annotations

import hashlib

import msgspec
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from appliance.identity import pki
from appliance.store.config import ConfigStore

CERT_KIND = "cert"
REVOCATION_KIND = "revocation"  # fingerprint -> node name (written by membership's revoke)
REVOKED_NAME_KIND = "revoked-name"
REPLICATED_KINDS = (CERT_KIND, REVOCATION_KIND, REVOKED_NAME_KIND)

UNKNOWN = "not registered"  # the one refusal a fresh pull of the configuration may lift


class CertRecord(msgspec.Struct, frozen=True, kw_only=True):
    """What the registry says about one issued certificate."""

    name: str
    serial: str  # hex
    not_after: float
    issued_by: str
    issued_at: float
    key_id: str = ""  # SHA-256 of the certified public key (SubjectPublicKeyInfo)


def key_id(cert: x509.Certificate) -> str:
    """SHA-256 of the certificate's public key: what a renewal keeps."""
    der = cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


class NameRevocation(msgspec.Struct, frozen=True, kw_only=True):
    at: float
    by: str


def judge(
    record: CertRecord | None,
    *,
    name: str | None,
    revoked: bool,
    name_revoked: NameRevocation | None,
    now: float,
) -> str | None:
    """Why a certificate must be refused, or None if it is acceptable.

    `name` is the node name the certificate carries (None when the caller only has the
    fingerprint: the registry's name is then the one that counts)."""
    if revoked:
        return "revoked"
    if record is None:
        return UNKNOWN
    if name is not None and record.name != name:
        return f"registered for {record.name!r}, not {name!r}"
    if name_revoked is not None and record.issued_at <= name_revoked.at:
        return f"node {record.name!r} was removed after this certificate was issued"
    if record.not_after < now:
        return "expired"
    return None


class CertRegistry:
    """The registry in this node's configuration map."""

    def __init__(self, store: ConfigStore) -> None:
        self._store = store

    def register(self, cert: x509.Certificate, *, issued_by: str, now: float) -> CertRecord:
        record = CertRecord(
            name=pki.node_name_of(cert),
            serial=format(cert.serial_number, "x"),
            not_after=cert.not_valid_after_utc.timestamp(),
            issued_by=issued_by,
            issued_at=now,
            key_id=key_id(cert),
        )
        self._store.put(CERT_KIND, pki.fingerprint(cert), msgspec.json.encode(record))
        return record

    def get(self, fingerprint: str) -> CertRecord | None:
        raw = self._store.get(CERT_KIND, fingerprint)
        return None if raw is None else msgspec.json.decode(raw, type=CertRecord)

    def name_revocation(self, name: str) -> NameRevocation | None:
        raw = self._store.get(REVOKED_NAME_KIND, name)
        return None if raw is None else msgspec.json.decode(raw, type=NameRevocation)

    def refusal(self, fingerprint: str, name: str | None, now: float, key: str | None = None) -> str | None:
        """Why the certificate with this fingerprint (naming `name`, certifying key `key`) is
        refused, or None. An unknown certificate whose key and name are registered under
        another good certificate is accepted (a renewal whose entry is still on its way)."""
        revoked = self._store.get(REVOCATION_KIND, fingerprint) is not None
        reason = self._judge(fingerprint, self.get(fingerprint), name, revoked, now)
        if reason != UNKNOWN or key is None or name is None:
            return reason
        for other, record in self._records():
            if record.key_id == key and record.name == name and other != fingerprint:
                other_revoked = self._store.get(REVOCATION_KIND, other) is not None
                if self._judge(other, record, name, other_revoked, now) is None:
                    return None
        return reason

    def _judge(
        self, fingerprint: str, record: CertRecord | None, name: str | None, revoked: bool, now: float
    ) -> str | None:
        return judge(
            record,
            name=name,
            revoked=revoked,
            name_revoked=self.name_revocation(record.name) if record is not None else None,
            now=now,
        )

    def _records(self) -> list[tuple[str, CertRecord]]:
        return [(fp, msgspec.json.decode(raw, type=CertRecord)) for fp, raw in self._store.items(CERT_KIND)]

    def entries(self) -> list[tuple[str, CertRecord, bool]]:
        """Every registered certificate: (fingerprint, record, revoked)."""
        revoked = {fp for fp, _ in self._store.items(REVOCATION_KIND)}
        return [(fp, record, fp in revoked) for fp, record in self._records()]

    def fingerprints_of(self, name: str) -> list[str]:
        return [fp for fp, record in self._records() if record.name == name]

    def revoke_name(self, name: str, *, by: str, now: float) -> list[str]:
        """Record the name as removed; returns the fingerprints registered for it (to revoke)."""
        self._store.put(REVOKED_NAME_KIND, name, msgspec.json.encode(NameRevocation(at=now, by=by)))
        return self.fingerprints_of(name)

    def lift_name(self, name: str) -> None:
        """A new join under a removed name: certificates issued from now on count again."""
        self._store.delete(REVOKED_NAME_KIND, name)

    def prune(self, now: float) -> int:
        """Delete entries of certificates that have expired (they are refused anyway)."""
        expired = [fp for fp, record in self._records() if record.not_after < now]
        return sum(self._store.delete(CERT_KIND, fp) for fp in expired)
