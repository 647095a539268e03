"""Join tokens and admitting new nodes.

A join token (`dvj_...`) carries a token id and secret, the SHA-256 fingerprint of the
cluster CA, and the API address of the node that issued it (like kubeadm and Incus tokens).
Only an authority node (one that holds the CA key, `authority.py`) issues tokens, and a token
is redeemable only at the node that issued it: its record names that node, and any other
node refuses it with a 409 naming the issuer. Single use is then decided by one SQLite
insert at the issuer (`join_redemptions`, keyed by token id), so the same token presented
to two nodes at once, or twice to the issuer, admits at most one node.

The new node fetches the CA from the seed, checks it against the fingerprint, then talks to
the seed over TLS verified against that CA: it proves the secret and sends a CSR. The issuer
checks the token (known, unused, unexpired), that the name is free, signs the CSR, records
the certificate in the registry (`identity/registry.py`) before answering, designates the
node an authority if this node is the founder and has designated fewer than two joiners (a
count in its own node_meta, never the replicated set's size: `authority.py`), and answers with the certificate, the
CA certificate (never its key), the cluster id, gossip seeds and the replicated settings a
node needs before its first gossip round (users, API tokens, the certificate registry,
revocations, the authority set). Only a hash of the secret is stored. A joiner whose answer
was lost (it timed out on a busy seed) may repeat its own admission within
ADMIT_RETRY_WINDOW, under the same name with the same key, and gets a certificate again.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import ipaddress
import secrets
import time
from collections.abc import Callable

import msgspec
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from appliance.api.problems import ApiError
from appliance.cluster.authority import AUTHORITY_KIND, FOUNDER_SLOTS_KEY, Authorities
from appliance.cluster.messages import ConfigEntry
from appliance.identity import pki
from appliance.identity import registry as reg
from appliance.identity.store import NodeIdentity
from appliance.settings import SettingsError, validate_node_name
from appliance.store.config import ConfigStore
from appliance.store.database import Database
from pxe import token_codec

JOIN_TOKEN_KIND = "join-token"  # noqa: S105 - a record kind
TOKEN_PREFIX = "dvj_"  # noqa: S105 - the public prefix of join tokens
DEFAULT_TTL = 3 * 3600
# A joiner whose admission answer was lost (a timeout on a busy seed) may present the token again
# for this long with the same name and key, and is admitted again: the CSR's signature proves it
# holds the key that used the token.
ADMIT_RETRY_WINDOW = 600.0
USED_TOKEN_RETENTION = 24 * 3600  # how long after expiry a token's record stays ("already used by X")
# What a joiner needs before its first gossip round: accounts, and what decides which
# certificates it may accept (the registry, revocations) and whom it asks for renewals.
REPLICATED_KINDS = ("user", "token", *reg.REPLICATED_KINDS, AUTHORITY_KIND)
MAX_TOKEN_TTL = 7 * 24 * 3600


class JoinToken(msgspec.Struct, frozen=True):
    """What a join token string carries."""

    id: str
    secret: str
    ca_fingerprint: str
    seeds: list[str]


class JoinTokenRecord(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    secret_hash: str
    created_by: str
    created_at: float
    expires_at: float
    issuer: str = ""  # the node that issued it, the only one that redeems it
    used_by: str | None = None
    used_at: float | None = None
    used_key: str | None = None  # SHA-256 of the admitted node's public key (SubjectPublicKeyInfo)


class JoinRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    token_id: str
    secret: str
    name: str
    csr_pem: str
    gossip_address: str
    api_address: str


class JoinResponse(msgspec.Struct, frozen=True, kw_only=True):
    """A joined node's certificate and what it needs to start; never the CA key."""

    node_cert_pem: str
    ca_cert_pem: str
    cluster_id: str
    gossip_seeds: list[str]
    config: list[ConfigEntry]


class JoinTokenCreated(msgspec.Struct, frozen=True, kw_only=True):
    token: str
    id: str
    expires_at: float
    issuer: str = ""


class CaInfo(msgspec.Struct, frozen=True, kw_only=True):
    ca_pem: str
    fingerprint: str


def encode_token(token: JoinToken) -> str:
    """dvj_ + unpadded base64url JSON (pxe/token_codec.py, shared with the enrolment credential)."""
    return token_codec.encode(TOKEN_PREFIX, token)


def decode_token(text: str) -> JoinToken:
    """Parse a join token; ValueError with a one-line reason if it is not one."""
    token = token_codec.decode(text, TOKEN_PREFIX, JoinToken, name="join token", damaged="was it copied whole?")
    if not token.seeds or len(token.ca_fingerprint) != 64:
        raise ValueError("the join token is damaged (no seed or CA fingerprint)")
    return token


def _secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class JoinService:
    """Issues join tokens and admits the nodes that present them (on an authority node)."""

    def __init__(
        self,
        *,
        store: ConfigStore,
        db: Database,
        identity: NodeIdentity,
        cluster_id: str,
        api_seeds: Callable[[], list[str]],
        ca_key: Callable[[], ec.EllipticCurvePrivateKey | None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._db = db
        self._identity = identity
        self._cluster_id = cluster_id
        self._api_seeds = api_seeds
        self._ca_key = ca_key or (lambda: identity.ca_key)  # changes when the authority set does
        self._clock = clock
        self.registry = reg.CertRegistry(store)
        self.authorities = Authorities(store, identity.ca_cert, cluster_id)

    @property
    def name(self) -> str:
        return self._identity.name

    def can_sign(self) -> bool:
        """True while this node holds the CA key (it is an authority)."""
        return self._ca_key() is not None

    def ca_info(self) -> CaInfo:
        return CaInfo(
            ca_pem=pki.cert_to_pem(self._identity.ca_cert).decode(), fingerprint=self._identity.ca_fingerprint
        )

    def create_token(self, *, created_by: str, ttl: float = DEFAULT_TTL) -> JoinTokenCreated:
        """A new token that only this node redeems; ApiError 409 unless this node can sign."""
        if self._ca_key() is None:
            holders = ", ".join(self.authorities.holders()) or "none known"
            raise ApiError(409, f"this node is not a certificate authority; create join tokens on one of: {holders}")
        token_id = secrets.token_hex(8)
        secret = secrets.token_urlsafe(32)
        now = self._clock()
        record = JoinTokenRecord(
            id=token_id,
            secret_hash=_secret_hash(secret),
            created_by=created_by,
            created_at=now,
            expires_at=now + ttl,
            issuer=self.name,
        )
        self._store.put(JOIN_TOKEN_KIND, token_id, msgspec.json.encode(record))
        token = JoinToken(token_id, secret, self._identity.ca_fingerprint, self._api_seeds())
        return JoinTokenCreated(token=encode_token(token), id=token_id, expires_at=record.expires_at, issuer=self.name)

    def prune(self) -> int:
        """Delete join-token records a day after they expired, used or not; returns how many.

        Without this the configuration map (and every node's copy) grows by one record per
        token ever issued. Redemptions are kept until no token they could concern is valid."""
        now = self._clock()
        cutoff = now - USED_TOKEN_RETENTION
        expired = [
            key
            for key, raw in self._store.items(JOIN_TOKEN_KIND)
            if msgspec.json.decode(raw, type=JoinTokenRecord).expires_at < cutoff
        ]
        with self._db.transaction() as conn:
            conn.execute("DELETE FROM join_redemptions WHERE at < ?", (cutoff - MAX_TOKEN_TTL,))
        return sum(self._store.delete(JOIN_TOKEN_KIND, key) for key in expired)

    def admit(
        self, request: JoinRequest, *, name_in_use: Callable[[str], bool], gossip_seeds: list[str]
    ) -> JoinResponse:
        """Check the token and the request, consume the token, sign and register the certificate."""
        raw = self._store.get(JOIN_TOKEN_KIND, request.token_id)
        record = msgspec.json.decode(raw, type=JoinTokenRecord) if raw is not None else None
        if record is None or not hmac.compare_digest(record.secret_hash, _secret_hash(request.secret)):
            raise ApiError(403, "unknown join token or wrong secret")
        if record.issuer != self.name:
            issuer = record.issuer or "a node of an earlier version"
            raise ApiError(409, f"this join token is redeemable only at node {issuer!r}, which issued it")
        ca_key = self._ca_key()
        if ca_key is None:
            raise ApiError(409, "this node is no longer a certificate authority; create a new join token")
        now = self._clock()
        csr = _load_csr(request.csr_pem)
        key_id = _key_id(csr)
        earlier = self._redemption(record.id)
        retry = earlier is not None and _same_requester(earlier, request.name, key_id, now)
        if (earlier is not None or record.used_by is not None) and not retry:
            used_by = earlier[0] if earlier is not None else record.used_by
            raise ApiError(403, f"this join token was already used (by {used_by})")
        if record.expires_at <= now and not retry:
            raise ApiError(403, "this join token has expired; create a new one")
        try:
            validate_node_name(request.name)
        except SettingsError as exc:
            raise ApiError(422, str(exc)) from exc
        if name_in_use(request.name) and not retry:
            raise ApiError(
                409, f"a node named {request.name!r} is already a member; remove it first or pick another name"
            )
        if not retry and not self._claim(record.id, request.name, key_id, now):
            raise ApiError(403, "this join token was already used (by a concurrent join)")
        # The addresses it advertises, and loopback as every node certificate names it
        # (appliance.bootstrap.certificate_addresses): without loopback here, the new node found
        # its certificate short of an address and had it re-issued at its first restart.
        addresses = [_host_ip(request.gossip_address), _host_ip(request.api_address), *pki.LOOPBACK_ADDRESSES]
        cert = pki.issue_node_cert(
            ca_key,
            self._identity.ca_cert,
            csr.public_key(),  # type: ignore[arg-type]  # checked to be P-256 in _load_csr
            name=request.name,
            addresses=[a for a in addresses if a is not None],
            now=dt.datetime.fromtimestamp(now, dt.UTC),
        )
        # Registered before the answer leaves: the entry rides the configuration gossip out to
        # the members while the new node is still starting, so they accept its first dial.
        if self.registry.name_revocation(request.name) is not None:
            self.registry.lift_name(request.name)  # a new join under a removed name
        self.registry.register(cert, issued_by=self.name, now=now)
        if not self.authorities.is_authority(request.name) and self._take_founder_slot():
            self.authorities.designate(request.name, ca_key=ca_key, by=self.name, now=now)
        if not retry:
            used = msgspec.structs.replace(record, used_by=request.name, used_at=now, used_key=key_id)
            self._store.put(JOIN_TOKEN_KIND, record.id, msgspec.json.encode(used))
        config = [
            ConfigEntry(kind, key, value, version, deleted)
            for kind in REPLICATED_KINDS
            for key, value, version, deleted in self._store.versioned_items(kind)
        ]
        return JoinResponse(
            node_cert_pem=pki.cert_to_pem(cert).decode(),
            ca_cert_pem=pki.cert_to_pem(self._identity.ca_cert).decode(),
            cluster_id=self._cluster_id,
            gossip_seeds=gossip_seeds,
            config=config,
        )

    def _take_founder_slot(self) -> bool:
        """True if this node is the founder and may still designate a joiner by default.

        The count is in this node's own node_meta, which no other node writes: only the
        founder has the key at all, and a member that shrinks the replicated set cannot
        make it designate again."""
        with self._db.transaction() as conn:
            row = conn.execute("SELECT value FROM node_meta WHERE key = ?", (FOUNDER_SLOTS_KEY,)).fetchone()
            left = int(row[0]) if row is not None else 0
            if left <= 0:
                return False
            conn.execute("UPDATE node_meta SET value = ? WHERE key = ?", (str(left - 1), FOUNDER_SLOTS_KEY))
        return True

    def _redemption(self, token_id: str) -> tuple[str, str, float] | None:
        row = self._db.conn.execute(
            "SELECT name, key_id, at FROM join_redemptions WHERE token_id = ?", (token_id,)
        ).fetchone()
        return None if row is None else (str(row[0]), str(row[1]), float(row[2]))

    def _claim(self, token_id: str, name: str, key_id: str, now: float) -> bool:
        """Mark the token used by `name`; False if another admission got there first.

        The primary key makes this the one point where single use is decided."""
        with self._db.transaction() as conn:
            cursor = conn.execute(
                "INSERT INTO join_redemptions (token_id, name, key_id, at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (token_id) DO NOTHING",
                (token_id, name, key_id, now),
            )
        return cursor.rowcount == 1


def _key_id(csr: x509.CertificateSigningRequest) -> str:
    der = csr.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


def _same_requester(earlier: tuple[str, str, float], name: str, key_id: str, now: float) -> bool:
    """True if a request by `name` with key `key_id` repeats the admission that used the token."""
    used_by, used_key, used_at = earlier
    if used_by != name or now - used_at > ADMIT_RETRY_WINDOW:
        return False
    return hmac.compare_digest(key_id, used_key)


def _load_csr(pem: str) -> x509.CertificateSigningRequest:
    try:
        csr = x509.load_pem_x509_csr(pem.encode())
    except ValueError as exc:
        raise ApiError(422, "csr_pem is not a PEM certificate signing request") from exc
    if not csr.is_signature_valid:
        raise ApiError(422, "the CSR's signature does not verify")
    try:
        key = csr.public_key()
    except ValueError as exc:
        raise ApiError(422, "the CSR's key is unusable") from exc
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ApiError(422, "the CSR must be for an ECDSA P-256 key")
    return csr


def _host_ip(addr: str) -> pki.IPAddress | None:
    host = addr.rpartition(":")[0].strip("[]")
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None
