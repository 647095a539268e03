"""REST through any node: replay a request for another node's resource to that node.

The forwarding node has already authenticated and rate-limited the caller. It sends the
request to the target's API over HTTPS verified against the cluster CA, on a kept-alive
connection per target, without the caller's credentials. Before a byte of the request goes
out it checks that the certificate that answered names the target node and is accepted by
the certificate registry (`check_answering_node`), so an assertion is never handed to an
impostor at the target's address. Instead of the credentials it attaches a *forwarding
assertion*: who the caller is (user, the kind and id of the credential they showed, their
address), the target node, the method and path, a time and a nonce, signed with the
forwarding node's key, together with that node's certificate. The target accepts the
assertion only if the certificate chains to the cluster CA, is accepted by the certificate
registry (registered, or a renewal of a registered certificate with the same name and key,
and not revoked), names the forwarding node, the signature verifies, it names this node, it
is fresh, its nonce was never accepted before (remembered across restarts,
appliance/cluster/nonces.py), and it describes this very request. The caller's role is then
derived from the replicated user and token records (appliance/auth/principal.py), never
taken from the assertion. A forwarded request is never forwarded again.

Outcomes the caller sees: the target's own answer, streamed back; 404 for a node that is not
a member; 502 when something other than the target answers at its address; 503 naming the
state of a node that is dead, has left, or cannot be reached; 504 when it does not answer
within the deadline.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
import ssl
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import msgspec
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from litestar import Request, Response
from litestar.response import Stream

from appliance.api import b64url
from appliance.api.problems import ApiError
from appliance.api.upstream import PeerRefused, UpstreamError, UpstreamPool, UpstreamResponse, split_addr
from appliance.auth.permissions import Role
from appliance.auth.principal import Principal
from appliance.identity import pki
from appliance.identity.registry import key_id
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

log = logging.getLogger(__name__)


class ForwardedIdentity(msgspec.Struct, frozen=True, kw_only=True):
    """The signed statement a forwarding node makes about the caller of one request."""

    node: str  # the forwarding node (its certificate must name it)
    target: str  # the node this assertion is for; any other refuses it
    user: str
    # The role the forwarding node sees. The target derives the role from its replicated
    # records and lets this only lower it (a demotion counts wherever it is seen first); it
    # stays on the wire too so that nodes of the previous release, which require it, can
    # still decode assertions during a rolling upgrade.
    role: Role
    via: Literal["session", "token"]  # the credential the caller showed the forwarding node
    credential_id: str  # its id (never a secret)
    source: str  # the caller's address as the forwarding node saw it
    method: str
    path: str
    at: float
    nonce: str


@dataclass(frozen=True)
class _Cert:
    cert: x509.Certificate
    fingerprint: str
    name: str
    key: str  # SHA-256 of its public key: what a renewed certificate keeps


class Forwarder:
    """Forwards requests to other members and verifies requests forwarded to this node."""

    def __init__(
        self,
        *,
        identity: NodeIdentity,
        member_api: Callable[[str], tuple[str, str] | None],
        refusal: Callable[[str, str | None, str | None], str | None],
        accept_nonce: Callable[[str, float], bool],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._identity = identity
        self._member_api = member_api  # name -> (state, "host:port") or None
        # (fingerprint, name, key) -> why the certificate registry refuses it, or None; a renewed
        # certificate whose entry is still on its way passes by its registered name and key.
        self._refusal = refusal
        self._accept_nonce = accept_nonce  # (nonce, valid until) -> False if accepted before
        self._clock = clock
        self._cert_header = b64url.encode(identity.node_cert.public_bytes(serialization.Encoding.DER))
        context = ssl.create_default_context(cafile=str(identity.ca_cert_path))
        # Members are pinned by the cluster CA; the name is checked against the node the
        # request is for, from the certificate, by `check_answering_node`.
        context.check_hostname = False
        self.context = context  # for connections the pool does not make (forward_ws.py)
        self._pool = UpstreamPool(context)
        self._peer_certs: dict[str, _Cert] = {}

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
        headers |= self._assertion_headers(request.user, target, request.method, request.url.path)
        body = await request.body()
        # The path as the client sent it (still percent-encoded): a decoded one may hold a space or
        # other bytes an HTTP request line cannot carry (a unit name like `not a unit` to refuse).
        raw = request.scope.get("raw_path") or request.url.path.encode()
        target_path = raw.decode("latin-1") + (f"?{request.url.query}" if request.url.query else "")
        try:
            upstream = await self._send(target, api, request.method, target_path, headers=headers, body=body)
        except PeerRefused as exc:
            raise ApiError(502, f"the node answering at {api} is not {target!r}: {exc}") from exc
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

    async def _send(
        self, target: str, api: str, method: str, path: str, *, headers: dict[str, str], body: bytes
    ) -> UpstreamResponse:
        """The target's answer head, within the deadline (the body is read by the caller)."""
        host, port = split_addr(api)

        def answering(der: bytes) -> None:
            self.check_answering_node(der, target)

        async with asyncio.timeout(DEADLINE_SECONDS):
            return await self._pool.request(host, port, method, path, headers=headers, body=body, peer_check=answering)

    async def get_json(
        self, target: str, path: str, principal: Principal, params: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        """GET `path` on member `target` as `principal` (a cluster-internal fan-out; the caller
        bounds the time)."""
        found = self._member_api(target)
        if found is None or not found[1]:
            raise ApiError(404, f"no node {target!r} with an API address")
        headers = self._assertion_headers(principal, target, "GET", path)
        query = urllib.parse.urlencode(params or {})
        upstream = await self._send(
            target, found[1], "GET", path + (f"?{query}" if query else ""), headers=headers, body=b""
        )
        async with asyncio.timeout(DEADLINE_SECONDS):
            return upstream.status, msgspec.json.decode(await upstream.read())

    async def fetch(self, node: str, path: str, params: dict[str, str], principal: Principal) -> Any:
        """The JSON a member answers with; ValueError unless it answered 200."""
        status, body = await self.get_json(node, path, principal, params)
        if status != 200:
            raise ValueError(f"{node} answered {status}")
        return body

    def member_api(self, target: str) -> tuple[str, str] | None:
        """(state, "host:port") of member `target`, None when it is not a member."""
        return self._member_api(target)

    def assertion_headers(self, principal: Principal, target: str, method: str, path: str) -> dict[str, str]:
        """The signed headers that vouch for `principal` calling `method path` on `target`."""
        return self._assertion_headers(principal, target, method, path)

    def _assertion_headers(self, principal: Principal, target: str, method: str, path: str) -> dict[str, str]:
        assertion = msgspec.json.encode(
            ForwardedIdentity(
                node=self.name,
                target=target,
                user=principal.name,
                role=principal.role,
                via=principal.credential_kind,
                credential_id=principal.credential_id,
                source=principal.source,
                method=method,
                path=path,
                at=self._clock(),
                nonce=secrets.token_hex(12),
            )
        )
        signature = self._identity.node_key.sign(assertion, ec.ECDSA(hashes.SHA256()))
        return {
            ASSERTION_HEADER: b64url.encode(assertion),
            SIGNATURE_HEADER: b64url.encode(signature),
            CERT_HEADER: self._cert_header,
        }

    # -- accepting --------------------------------------------------------------------------

    def verify(self, headers: dict[str, str], method: str, path: str) -> ForwardedIdentity:
        """The caller a member vouches for; ApiError 401 unless every check passes.

        The claim says who the caller is, not what they may do: the receiver derives their
        role from its own records (appliance/auth/principal.py `Authenticator.vouched`)."""
        try:
            assertion = b64url.decode(headers[ASSERTION_HEADER])
            signature = b64url.decode(headers[SIGNATURE_HEADER])
            cert_der = b64url.decode(headers[CERT_HEADER])
            claim = msgspec.json.decode(assertion, type=ForwardedIdentity)
        except (KeyError, ValueError, msgspec.DecodeError) as exc:
            raise ApiError(401, "malformed forwarding assertion") from exc
        try:
            signer = self._certificate(cert_der)
        except ValueError as exc:
            raise ApiError(401, f"the forwarding node's certificate {exc}") from exc
        reason = self._refusal(signer.fingerprint, signer.name, signer.key)
        if reason is not None:
            raise ApiError(401, f"the forwarding node's certificate is refused: {reason}")
        if signer.name != claim.node:
            raise ApiError(401, "the forwarding assertion names another node than its certificate")
        key = signer.cert.public_key()
        try:
            assert isinstance(key, ec.EllipticCurvePublicKey)
            key.verify(signature, assertion, ec.ECDSA(hashes.SHA256()))
        except (InvalidSignature, AssertionError) as exc:
            raise ApiError(401, "the forwarding assertion's signature does not verify") from exc
        if claim.target != self.name:
            raise ApiError(401, f"the forwarding assertion is for node {claim.target!r}, not this node ({self.name!r})")
        now = self._clock()
        if abs(now - claim.at) > MAX_SKEW_SECONDS:
            raise ApiError(401, "the forwarding assertion is stale (check the nodes' clocks)")
        if claim.method != method or claim.path != path:
            raise ApiError(401, "the forwarding assertion is for another request")
        # Past at + skew the freshness check refuses it anyway: the nonce need not be kept longer.
        if not self._accept_nonce(claim.nonce, claim.at + MAX_SKEW_SECONDS):
            raise ApiError(401, "the forwarding assertion was replayed")
        return claim

    def check_answering_node(self, der: bytes, target: str) -> None:
        """PeerRefused unless the certificate that answered at `target`'s address is `target`'s:
        issued by the cluster CA, valid now, naming `target`, and accepted by the certificate
        registry (`refusal`, the same check a forwarding node's certificate passes). Runs before any request is
        written on a connection, new or reused."""
        try:
            peer = self._certificate(der)
        except ValueError as exc:
            raise PeerRefused(f"its certificate {exc}") from exc
        if peer.name != target:
            log.warning("refused to forward to %s: node %r answered at its address", target, peer.name)
            raise PeerRefused(f"node {peer.name!r} answered")
        reason = self._refusal(peer.fingerprint, peer.name, peer.key)
        if reason is not None:
            log.warning("refused to forward to %s: its certificate %s is %s", target, peer.fingerprint[:16], reason)
            raise PeerRefused(f"its certificate is refused: {reason}")

    def _certificate(self, der: bytes) -> _Cert:
        """A member's certificate, checked against the cluster CA and the clock; ValueError
        completes "the certificate ..." with why not."""
        digest = hashlib.sha256(der).hexdigest()
        cached = self._peer_certs.get(digest)
        now = self._clock()
        if cached is None:
            try:
                cert = x509.load_der_x509_certificate(der)
                pki.verify_issued_by(cert, self._identity.ca_cert)
                name = pki.node_name_of(cert)
            except ValueError as exc:
                raise ValueError("is not from this cluster") from exc
            cached = _Cert(cert, pki.fingerprint(cert), name, key_id(cert))
            if len(self._peer_certs) > 1024:
                self._peer_certs.clear()
            self._peer_certs[digest] = cached
        if not cached.cert.not_valid_before_utc.timestamp() <= now <= cached.cert.not_valid_after_utc.timestamp():
            raise ValueError("is not valid now")
        return cached
