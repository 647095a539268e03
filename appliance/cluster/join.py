"""Join tokens and admitting new nodes.

A join token (`dvj_...`) carries a token id and secret, the SHA-256 fingerprint of the
cluster CA, and the API addresses of the node that issued it (like kubeadm and Incus
tokens). The new node fetches the CA from a seed, checks it against the fingerprint, then
talks to the seed over TLS verified against that CA: it proves the secret and sends a CSR.
The seed checks the token (known, unused, unexpired), that the name is free, signs the CSR
and answers with the certificate, the CA (with its key: every node can admit and renew, so
no node is special), the cluster id, gossip seeds and the replicated configuration (users
and API tokens). Tokens are single use; only a hash of the secret is stored. A joiner
whose answer was lost (it timed out on a busy seed) may repeat its own admission within
ADMIT_RETRY_WINDOW, under the same name with the same key, and gets a certificate again.
"""

from __future__ import annotations

import base64
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
from appliance.cluster.messages import ConfigEntry
from appliance.identity import pki
from appliance.identity.store import NodeIdentity
from appliance.settings import SettingsError, validate_node_name
from appliance.store.config import ConfigStore

JOIN_TOKEN_KIND = "join-token"  # noqa: S105 - a record kind
TOKEN_PREFIX = "dvj_"  # noqa: S105 - the public prefix of join tokens
DEFAULT_TTL = 3 * 3600
# A joiner whose admission answer was lost (a timeout on a busy seed) may present the token again
# for this long with the same name and key, and is admitted again: the CSR's signature proves it
# holds the key that used the token.
ADMIT_RETRY_WINDOW = 600.0
USED_TOKEN_RETENTION = 24 * 3600  # how long after expiry a token's record stays ("already used by X")
REPLICATED_KINDS = ("user", "token")


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
    node_cert_pem: str
    ca_cert_pem: str
    ca_key_pem: str
    cluster_id: str
    gossip_seeds: list[str]
    config: list[ConfigEntry]


class JoinTokenCreated(msgspec.Struct, frozen=True, kw_only=True):
    token: str
    id: str
    expires_at: float


class CaInfo(msgspec.Struct, frozen=True, kw_only=True):
    ca_pem: str
    fingerprint: str


def encode_token(token: JoinToken) -> str:
    raw = msgspec.json.encode(token)
    return TOKEN_PREFIX + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(text: str) -> JoinToken:
    """Parse a join token; ValueError with a one-line reason if it is not one."""
    text = text.strip()
    if not text.startswith(TOKEN_PREFIX):
        raise ValueError("not a DebVisor join token (it should start with dvj_)")
    body = text[len(TOKEN_PREFIX) :]
    try:
        raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        token = msgspec.json.decode(raw, type=JoinToken)
    except (ValueError, msgspec.DecodeError) as exc:
        raise ValueError("the join token is damaged (was it copied whole?)") from exc
    if not token.seeds or len(token.ca_fingerprint) != 64:
        raise ValueError("the join token is damaged (no seed or CA fingerprint)")
    return token


def _secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class JoinService:
    """Issues join tokens and admits the nodes that present them."""

    def __init__(
        self,
        *,
        store: ConfigStore,
        identity: NodeIdentity,
        cluster_id: str,
        api_seeds: Callable[[], list[str]],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._identity = identity
        self._cluster_id = cluster_id
        self._api_seeds = api_seeds
        self._clock = clock

    def ca_info(self) -> CaInfo:
        return CaInfo(
            ca_pem=pki.cert_to_pem(self._identity.ca_cert).decode(), fingerprint=self._identity.ca_fingerprint
        )

    def create_token(self, *, created_by: str, ttl: float = DEFAULT_TTL) -> JoinTokenCreated:
        token_id = secrets.token_hex(8)
        secret = secrets.token_urlsafe(32)
        now = self._clock()
        record = JoinTokenRecord(
            id=token_id, secret_hash=_secret_hash(secret), created_by=created_by, created_at=now, expires_at=now + ttl
        )
        self._store.put(JOIN_TOKEN_KIND, token_id, msgspec.json.encode(record))
        token = JoinToken(token_id, secret, self._identity.ca_fingerprint, self._api_seeds())
        return JoinTokenCreated(token=encode_token(token), id=token_id, expires_at=record.expires_at)

    def prune(self) -> int:
        """Delete join-token records a day after they expired, used or not; returns how many.

        Without this the configuration map (and every node's copy) grows by one record per
        token ever issued."""
        cutoff = self._clock() - USED_TOKEN_RETENTION
        expired = [
            key
            for key, raw in self._store.items(JOIN_TOKEN_KIND)
            if msgspec.json.decode(raw, type=JoinTokenRecord).expires_at < cutoff
        ]
        return sum(self._store.delete(JOIN_TOKEN_KIND, key) for key in expired)

    def admit(
        self, request: JoinRequest, *, name_in_use: Callable[[str], bool], gossip_seeds: list[str]
    ) -> JoinResponse:
        """Check the token and the request, sign the node's certificate, consume the token."""
        raw = self._store.get(JOIN_TOKEN_KIND, request.token_id)
        record = msgspec.json.decode(raw, type=JoinTokenRecord) if raw is not None else None
        if record is None or not hmac.compare_digest(record.secret_hash, _secret_hash(request.secret)):
            raise ApiError(403, "unknown join token or wrong secret")
        now = self._clock()
        retry = record.used_by is not None and _same_requester(record, request, now)
        if record.used_by is not None and not retry:
            raise ApiError(403, f"this join token was already used (by {record.used_by})")
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
        csr = _load_csr(request.csr_pem)
        addresses = [_host_ip(request.gossip_address), _host_ip(request.api_address)]
        if self._identity.ca_key is None:
            raise ApiError(409, "this node does not hold the cluster CA key; join through another node")
        cert = pki.issue_node_cert(
            self._identity.ca_key,
            self._identity.ca_cert,
            csr.public_key(),  # type: ignore[arg-type]  # checked to be P-256 in _load_csr
            name=request.name,
            addresses=[a for a in addresses if a is not None],
            now=dt.datetime.fromtimestamp(now, dt.UTC),
        )
        if not retry:
            used = msgspec.structs.replace(record, used_by=request.name, used_at=now, used_key=_key_id(csr))
            self._store.put(JOIN_TOKEN_KIND, record.id, msgspec.json.encode(used))
        config = [
            ConfigEntry(kind, key, value, version, deleted)
            for kind in REPLICATED_KINDS
            for key, value, version, deleted in self._store.versioned_items(kind)
        ]
        return JoinResponse(
            node_cert_pem=pki.cert_to_pem(cert).decode(),
            ca_cert_pem=pki.cert_to_pem(self._identity.ca_cert).decode(),
            ca_key_pem=pki.key_to_pem(self._identity.ca_key).decode(),
            cluster_id=self._cluster_id,
            gossip_seeds=gossip_seeds,
            config=config,
        )


def _key_id(csr: x509.CertificateSigningRequest) -> str:
    der = csr.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


def _same_requester(record: JoinTokenRecord, request: JoinRequest, now: float) -> bool:
    """True if `request` repeats the admission that used `record`: same name, same key, recently."""
    if record.used_by != request.name or record.used_key is None or record.used_at is None:
        return False
    if now - record.used_at > ADMIT_RETRY_WINDOW:
        return False
    try:
        csr = _load_csr(request.csr_pem)
    except ApiError:
        return False
    return hmac.compare_digest(_key_id(csr), record.used_key)


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
