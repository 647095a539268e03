"""REST through any node: replay a request for another node's resource to that node.

The forwarding node has already authenticated and rate-limited the caller. It sends the
request to the target's API over HTTPS verified against the cluster CA, on a kept-alive
connection per target, without the caller's credentials; instead it attaches a *forwarding
assertion*: who the caller is (user, role, how they authenticated), the method and path, a
time and a nonce, signed with the forwarding node's key, together with that node's
certificate. The target accepts the assertion only if the certificate chains to the cluster
CA, is not revoked, names the forwarding node, the signature verifies, it is fresh and not
replayed, and it describes this very request. A forwarded request is never forwarded again.

Outcomes the caller sees: the target's own answer, streamed back; 404 for a node that is not
a member; 503 naming the state of a node that is dead, has left, or cannot be reached; 504
when it does not answer within the deadline.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import secrets
import ssl
import time
import urllib.parse
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import msgspec
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from litestar import Request, Response
from litestar.response import Stream

from appliance.api.problems import ApiError
from appliance.auth.permissions import Role
from appliance.cluster.transport import split_addr
from appliance.cluster.upstream import UpstreamError, UpstreamPool, UpstreamResponse
from appliance.identity import pki
from appliance.identity.store import NodeIdentity

ASSERTION_HEADER = "x-debvisor-forwarded"
SIGNATURE_HEADER = "x-debvisor-signature"
CERT_HEADER = "x-debvisor-forwarder-cert"
MAX_SKEW_SECONDS = 30.0
DEADLINE_SECONDS = 5.0
_HOP_HEADERS = {"host", "connection", "content-length", "authorization", "cookie", "x-csrf-token", "transfer-encoding"}
_HOP_HEADERS |= {ASSERTION_HEADER, SIGNATURE_HEADER, CERT_HEADER}
_PASSED_BACK = ("content-type", "retry-after", "www-authenticate", "content-disposition")
BUFFER_LIMIT = 1024 * 1024  # answers up to this size are read whole and sent on in one piece


class ForwardedIdentity(msgspec.Struct, frozen=True, kw_only=True):
    """The signed statement a forwarding node makes about the caller of one request."""

    node: str
    user: str
    role: Role
    via: str
    credential_id: str
    method: str
    path: str
    at: float
    nonce: str


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Forwarder:
    """Forwards requests to other members and verifies requests forwarded to this node."""

    def __init__(
        self,
        *,
        identity: NodeIdentity,
        member_api: Callable[[str], tuple[str, str] | None],
        is_revoked: Callable[[str], bool],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._identity = identity
        self._member_api = member_api  # name -> (state, "host:port") or None
        self._is_revoked = is_revoked
        self._clock = clock
        self._cert_header = _b64(identity.node_cert.public_bytes(serialization.Encoding.DER))
        context = ssl.create_default_context(cafile=str(identity.ca_cert_path))
        context.check_hostname = False  # members are pinned by the cluster CA
        self._pool = UpstreamPool(context)
        self._nonces: OrderedDict[str, float] = OrderedDict()
        self._peer_certs: dict[str, tuple[x509.Certificate, str]] = {}

    @property
    def name(self) -> str:
        return self._identity.name

    async def close(self) -> None:
        await self._pool.aclose()

    # -- forwarding -------------------------------------------------------------------------

    async def forward(self, request: Request[Any, Any, Any], target: str) -> Response[Any]:
        """Replay `request` on member `target` and stream its answer back."""
        if request.scope.get("state", {}).get("debvisor_forwarded"):
            raise ApiError(421, f"this request was already forwarded once; node {target!r} is not this node")
        found = self._member_api(target)
        if found is None:
            raise ApiError(404, f"no node {target!r} in this cluster")
        state, api = found
        if state in ("dead", "left"):
            raise ApiError(503, f"node {target!r} is {state}")
        if not api:
            raise ApiError(503, f"node {target!r} has not announced its API address")
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_HEADERS}
        headers |= self._assertion_headers(request.user, request.method, request.url.path)
        body = await request.body()
        target_path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        try:
            upstream = await self._send(api, request.method, target_path, headers, body)
        except TimeoutError as exc:
            raise ApiError(504, f"node {target!r} did not answer within {DEADLINE_SECONDS:g} s") from exc
        except (OSError, ssl.SSLError, UpstreamError) as exc:
            raise ApiError(503, f"node {target!r} ({state}) cannot be reached: {type(exc).__name__}") from exc
        passed = {k: v for k, v in upstream.headers.items() if k in _PASSED_BACK}
        length = upstream.content_length
        if length is not None and length <= BUFFER_LIMIT:
            # The usual case (a JSON answer): one piece, no streaming machinery.
            try:
                async with asyncio.timeout(DEADLINE_SECONDS):
                    content = await upstream.read()
            except TimeoutError as exc:
                upstream.close()
                raise ApiError(504, f"node {target!r} did not finish its answer in time") from exc
            except (OSError, ssl.SSLError, UpstreamError) as exc:
                raise ApiError(503, f"node {target!r} broke off its answer: {type(exc).__name__}") from exc
            return Response(content, status_code=upstream.status, headers=passed, media_type=passed.get("content-type"))

        async def body_chunks() -> Any:
            try:
                async for chunk in upstream.chunks():
                    yield chunk
            finally:
                upstream.close()

        return Stream(body_chunks(), status_code=upstream.status, headers=passed)

    async def _send(self, api: str, method: str, path: str, headers: dict[str, str], body: bytes) -> UpstreamResponse:
        """The target's answer head, within the deadline (the body is read by the caller)."""
        host, port = split_addr(api)
        async with asyncio.timeout(DEADLINE_SECONDS):
            return await self._pool.request(host, port, method, path, headers=headers, body=body)

    async def get_json(
        self, target: str, path: str, principal: Any, params: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        """GET `path` on member `target` as `principal` (a cluster-internal fan-out; the caller
        bounds the time)."""
        found = self._member_api(target)
        if found is None or not found[1]:
            raise ApiError(404, f"no node {target!r} with an API address")
        headers = self._assertion_headers(principal, "GET", path)
        query = urllib.parse.urlencode(params or {})
        upstream = await self._send(found[1], "GET", path + (f"?{query}" if query else ""), headers, b"")
        async with asyncio.timeout(DEADLINE_SECONDS):
            return upstream.status, msgspec.json.decode(await upstream.read())

    async def fetch(self, node: str, path: str, params: dict[str, str], principal: Any) -> Any:
        """The JSON a member answers with; ValueError unless it answered 200."""
        status, body = await self.get_json(node, path, principal, params)
        if status != 200:
            raise ValueError(f"{node} answered {status}")
        return body

    def _assertion_headers(self, principal: Any, method: str, path: str) -> dict[str, str]:
        assertion = msgspec.json.encode(
            ForwardedIdentity(
                node=self.name,
                user=principal.name,
                role=principal.role,
                via=principal.via,
                credential_id=principal.credential_id,
                method=method,
                path=path,
                at=self._clock(),
                nonce=secrets.token_hex(12),
            )
        )
        signature = self._identity.node_key.sign(assertion, ec.ECDSA(hashes.SHA256()))
        return {ASSERTION_HEADER: _b64(assertion), SIGNATURE_HEADER: _b64(signature), CERT_HEADER: self._cert_header}

    # -- accepting --------------------------------------------------------------------------

    def verify(self, headers: dict[str, str], method: str, path: str) -> ForwardedIdentity:
        """The caller a member vouches for; ApiError 401 unless every check passes."""
        try:
            assertion = _unb64(headers[ASSERTION_HEADER])
            signature = _unb64(headers[SIGNATURE_HEADER])
            cert_der = _unb64(headers[CERT_HEADER])
            claim = msgspec.json.decode(assertion, type=ForwardedIdentity)
        except (KeyError, ValueError, msgspec.DecodeError) as exc:
            raise ApiError(401, "malformed forwarding assertion") from exc
        cert, fingerprint = self._certificate(cert_der)
        if self._is_revoked(fingerprint):
            raise ApiError(401, "the forwarding node's certificate is revoked")
        if pki.node_name_of(cert) != claim.node:
            raise ApiError(401, "the forwarding assertion names another node than its certificate")
        key = cert.public_key()
        try:
            assert isinstance(key, ec.EllipticCurvePublicKey)
            key.verify(signature, assertion, ec.ECDSA(hashes.SHA256()))
        except (InvalidSignature, AssertionError) as exc:
            raise ApiError(401, "the forwarding assertion's signature does not verify") from exc
        now = self._clock()
        if abs(now - claim.at) > MAX_SKEW_SECONDS:
            raise ApiError(401, "the forwarding assertion is stale (check the nodes' clocks)")
        if claim.method != method or claim.path != path:
            raise ApiError(401, "the forwarding assertion is for another request")
        if claim.nonce in self._nonces:
            raise ApiError(401, "the forwarding assertion was replayed")
        self._nonces[claim.nonce] = now
        while self._nonces and next(iter(self._nonces.values())) < now - 2 * MAX_SKEW_SECONDS:
            self._nonces.popitem(last=False)
        return claim

    def _certificate(self, der: bytes) -> tuple[x509.Certificate, str]:
        digest = hashlib.sha256(der).hexdigest()
        cached = self._peer_certs.get(digest)
        if cached is not None:
            return cached
        try:
            cert = x509.load_der_x509_certificate(der)
            pki.verify_issued_by(cert, self._identity.ca_cert)
        except ValueError as exc:
            raise ApiError(401, "the forwarding node's certificate is not from this cluster") from exc
        now = self._clock()
        if not cert.not_valid_before_utc.timestamp() <= now <= cert.not_valid_after_utc.timestamp():
            raise ApiError(401, "the forwarding node's certificate is not valid now")
        entry = (cert, pki.fingerprint(cert))
        if len(self._peer_certs) > 1024:
            self._peer_certs.clear()
        self._peer_certs[digest] = entry
        return entry
