"""Node-to-node calls authenticated by the calling node's registered certificate.

The internal routes (fetching the CA key, renewing a certificate) answer only members.
The HTTPS API does not ask for client certificates (browsers and the CLI use it too), so
the caller proves possession of its node key in the request instead: it sends its
certificate and a signature over the method, path, a hash of the body, the time and a
nonce. The receiver accepts the call only if the certificate chains to the cluster CA, is
in the certificate registry and not revoked (`refusal`), the signature verifies, the time is
within MAX_SKEW_SECONDS and the nonce is new. The channel itself is TLS verified against the
cluster CA, so answers (a CA key) travel encrypted to the node that proved its identity.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import ssl
import time
from collections import OrderedDict
from collections.abc import Callable

import msgspec
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from appliance.api import b64url
from appliance.api.problems import ApiError
from appliance.api.upstream import UpstreamPool, split_addr
from appliance.identity import pki
from appliance.identity.registry import key_id
from appliance.identity.store import NodeIdentity

CLAIM_HEADER = "x-debvisor-node-claim"
SIGNATURE_HEADER = "x-debvisor-node-signature"
CERT_HEADER = "x-debvisor-node-cert"
MAX_SKEW_SECONDS = 30.0
DEADLINE_SECONDS = 10.0


class NodeClaim(msgspec.Struct, frozen=True, kw_only=True):
    node: str
    method: str
    path: str
    body_sha256: str
    at: float
    nonce: str


def sign_headers(
    cert: x509.Certificate, key: ec.EllipticCurvePrivateKey, *, method: str, path: str, body: bytes, now: float
) -> dict[str, str]:
    """Headers that prove this call comes from the holder of `key` (certified by `cert`)."""
    claim = msgspec.json.encode(
        NodeClaim(
            node=pki.node_name_of(cert),
            method=method,
            path=path,
            body_sha256=hashlib.sha256(body).hexdigest(),
            at=now,
            nonce=secrets.token_hex(12),
        )
    )
    signature = key.sign(claim, ec.ECDSA(hashes.SHA256()))
    return {
        CLAIM_HEADER: b64url.encode(claim),
        SIGNATURE_HEADER: b64url.encode(signature),
        CERT_HEADER: b64url.encode(cert.public_bytes(serialization.Encoding.DER)),
    }


class NodeVerifier:
    """Checks signed node calls; remembers nonces for twice the allowed skew."""

    def __init__(
        self,
        ca_cert: x509.Certificate,
        refusal: Callable[[str, str, str], str | None],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._ca = ca_cert
        self._refusal = refusal  # (fingerprint, name, key id) -> why refused, or None
        self._clock = clock
        self._nonces: OrderedDict[str, float] = OrderedDict()

    def verify(self, headers: dict[str, str], method: str, path: str, body: bytes) -> tuple[str, x509.Certificate]:
        """The calling node's name and certificate; ApiError 401 unless every check passes."""
        try:
            raw_claim = b64url.decode(headers[CLAIM_HEADER])
            signature = b64url.decode(headers[SIGNATURE_HEADER])
            cert = x509.load_der_x509_certificate(b64url.decode(headers[CERT_HEADER]))
            claim = msgspec.json.decode(raw_claim, type=NodeClaim)
        except (KeyError, ValueError, msgspec.DecodeError) as exc:
            raise ApiError(401, "this route answers only cluster nodes (no valid node signature)") from exc
        try:
            pki.verify_issued_by(cert, self._ca)
            name = pki.node_name_of(cert)
        except ValueError as exc:
            raise ApiError(401, "the calling node's certificate is not from this cluster") from exc
        reason = self._refusal(pki.fingerprint(cert), name, key_id(cert))
        if reason is not None:
            raise ApiError(401, f"the calling node's certificate is refused: {reason}")
        key = cert.public_key()
        try:
            assert isinstance(key, ec.EllipticCurvePublicKey)
            key.verify(signature, raw_claim, ec.ECDSA(hashes.SHA256()))
        except (InvalidSignature, AssertionError) as exc:
            raise ApiError(401, "the node signature does not verify") from exc
        now = self._clock()
        if claim.node != name or claim.method != method or claim.path != path:
            raise ApiError(401, "the node signature is for another request")
        if claim.body_sha256 != hashlib.sha256(body).hexdigest():
            raise ApiError(401, "the node signature does not cover this body")
        if abs(now - claim.at) > MAX_SKEW_SECONDS:
            raise ApiError(401, "the node signature is stale (check the nodes' clocks)")
        if claim.nonce in self._nonces:
            raise ApiError(401, "the node call was replayed")
        self._nonces[claim.nonce] = now
        while self._nonces and next(iter(self._nonces.values())) < now - 2 * MAX_SKEW_SECONDS:
            self._nonces.popitem(last=False)
        return name, cert


class NodeCaller:
    """Makes signed calls to other members' internal routes."""

    def __init__(
        self,
        identity: NodeIdentity,
        cert: Callable[[], x509.Certificate] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._identity = identity
        self._cert = cert or (lambda: identity.node_cert)  # the current one, after a renewal
        self._clock = clock
        context = ssl.create_default_context(cafile=str(identity.ca_cert_path))
        context.check_hostname = False  # members are pinned by the cluster CA
        self._pool = UpstreamPool(context)

    async def post(self, api: str, path: str, payload: msgspec.Struct) -> tuple[int, bytes]:
        """POST `payload` as JSON to `path` on the member at `api`; (status, body)."""
        body = msgspec.json.encode(payload)
        headers = {"content-type": "application/json"}
        headers |= sign_headers(
            self._cert(), self._identity.node_key, method="POST", path=path, body=body, now=self._clock()
        )
        host, port = split_addr(api)
        async with asyncio.timeout(DEADLINE_SECONDS):
            upstream = await self._pool.request(host, port, "POST", path, headers=headers, body=body)
            return upstream.status, await upstream.read()

    async def close(self) -> None:
        await self._pool.aclose()
