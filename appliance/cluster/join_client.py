"""The joining side: turn a join token into a certificate and the cluster's settings.

Runs once, before a fresh node starts. The seed's CA is fetched without trusting anything,
then accepted only if its SHA-256 fingerprint equals the one in the token; every later
request is verified against that CA, so a seed of another cluster (or an impostor) is caught
before the secret leaves this machine.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import ssl
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import msgspec
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from appliance.api.upstream import split_addr
from appliance.cluster.join import CaInfo, JoinRequest, JoinResponse, JoinToken
from appliance.identity import pki

log = logging.getLogger(__name__)

TIMEOUT = 10.0
# How long a joiner keeps trying seeds that do not answer (busy, rebooting, a link still coming
# up) before it gives up; retries wait 1, 2, 4, 8, 8... seconds. A refusal ends it at once.
PATIENCE = 60.0


class JoinError(Exception):
    """Joining failed; the message says why in one line."""


def https_request(
    server: str, method: str, path: str, context: ssl.SSLContext, body: bytes | None = None
) -> tuple[int, bytes]:
    """One request to a node's API (a JSON body if any) on a fresh connection: status and body."""
    host, port = split_addr(server)
    conn = http.client.HTTPSConnection(host, port, timeout=TIMEOUT, context=context)
    try:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def problem_detail(payload: bytes) -> str:
    """The `detail` of a problem+json answer, or the start of whatever else came back."""
    try:
        return str(msgspec.json.decode(payload).get("detail") or "")[:300]
    except (msgspec.DecodeError, AttributeError):
        return payload[:200].decode(errors="replace")


def pinned_context(ca_pem: bytes) -> ssl.SSLContext:
    """A TLS context that trusts only this CA (a node is pinned by the CA it must chain to)."""
    with tempfile.NamedTemporaryFile(suffix=".pem") as ca_file:
        Path(ca_file.name).write_bytes(ca_pem)
        context = ssl.create_default_context(cafile=ca_file.name)
    context.check_hostname = False
    return context


def fetch_ca(seed: str, expected_fingerprint: str) -> bytes:
    """The seed's CA certificate (PEM), checked against the token's fingerprint."""
    blind = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    blind.check_hostname = False
    blind.verify_mode = ssl.CERT_NONE
    status, payload = https_request(seed, "GET", "/api/v1/cluster/ca", blind)
    if status != 200:
        raise JoinError(f"seed {seed} answered {status} for its CA: {problem_detail(payload)}")
    info = msgspec.json.decode(payload, type=CaInfo)
    ca = x509.load_pem_x509_certificate(info.ca_pem.encode())
    actual = pki.fingerprint(ca)
    if actual != expected_fingerprint:
        raise JoinError(
            f"seed {seed} belongs to another cluster: its CA fingerprint {actual[:16]}... "
            f"is not the token's {expected_fingerprint[:16]}..."
        )
    return info.ca_pem.encode()


def join(
    token: JoinToken,
    *,
    name: str,
    key: ec.EllipticCurvePrivateKey,
    gossip_address: str,
    api_address: str,
    patience: float = PATIENCE,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> JoinResponse:
    """Ask the token's seeds, in turn, to admit this node; raise JoinError if one refuses, or
    if none answers within `patience` seconds of trying again. Repeating the request is safe:
    a seed that admitted us but whose answer was lost admits the same name and key again."""
    csr = pki.new_csr(key, name)
    request = JoinRequest(
        token_id=token.id,
        secret=token.secret,
        name=name,
        csr_pem=csr.public_bytes(serialization.Encoding.PEM).decode(),
        gossip_address=gossip_address,
        api_address=api_address,
    )
    deadline = clock() + patience
    delay = 1.0
    while True:
        response, errors = _try_seeds(token, request)
        if response is not None:
            return response
        if clock() + delay > deadline:
            raise JoinError("no seed could be reached: " + "; ".join(errors))
        log.warning("no seed answered; trying again", extra={"retry_in": delay, "errors": "; ".join(errors)})
        sleep(delay)
        delay = min(delay * 2, 8.0)


def _try_seeds(token: JoinToken, request: JoinRequest) -> tuple[JoinResponse | None, list[str]]:
    """One pass over the seeds: the first admission, or the reasons none could be reached."""
    errors: list[str] = []
    for seed in token.seeds:
        try:
            ca_pem = fetch_ca(seed, token.ca_fingerprint)
            verified = pinned_context(ca_pem)
            status, payload = https_request(
                seed, "POST", "/api/v1/cluster/join", verified, msgspec.json.encode(request)
            )
        except JoinError:
            raise
        except (OSError, ssl.SSLError, http.client.HTTPException) as exc:
            errors.append(f"{seed}: {exc}")
            continue
        if status != 200:
            raise JoinError(f"seed {seed} refused to admit {request.name!r}: {problem_detail(payload)}")
        response = msgspec.json.decode(payload, type=JoinResponse)
        if hashlib.sha256(ca_pem).digest() != hashlib.sha256(response.ca_cert_pem.encode()).digest():
            raise JoinError(f"seed {seed} answered with a CA other than the one it presented")
        return response, errors
    return None, errors
