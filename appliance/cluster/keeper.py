"""This node's side of the cluster PKI at run time: its CA key copy and its certificate.

`PkiKeeper` holds the node's current identity and CA key (both change while it runs) and
- follows the authority set (`authority.plan`): a designated node fetches the CA key from an
  authority that holds it, a node taken out of the set deletes its copy;
- renews the node certificate before it expires (or when an address is missing): an
  authority issues it itself and registers it, any other node asks an authority over a
  signed node call (`nodeauth`), which registers what it issues.
The server side of both calls (`CaKeyAnswer`, `RenewRequest`...) is in `controller.py`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import logging
import ssl
import time
from collections.abc import Callable
from typing import TypeVar

import msgspec
from cryptography.hazmat.primitives.asymmetric import ec

from appliance.api.upstream import UpstreamError
from appliance.audit.log import AuditLog
from appliance.cluster.authority import Authorities, Designation, KeyStep, plan
from appliance.cluster.nodeauth import NodeCaller
from appliance.identity import pki
from appliance.identity.registry import CertRegistry
from appliance.identity.store import (
    NodeIdentity,
    discard_ca_key,
    install_ca_key,
    install_node_cert,
    needs_renewal,
    refresh_node_cert,
)

log = logging.getLogger(__name__)

_Answer = TypeVar("_Answer")

CA_KEY_PATH = "/api/v1/cluster/internal/ca-key"
RENEW_PATH = "/api/v1/cluster/internal/renew"


class CaKeyRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Ask an authority for the CA key (the caller must be designated)."""


class CaKeyAnswer(msgspec.Struct, frozen=True, kw_only=True):
    ca_key_pem: str
    designation: Designation | None = None  # the entry the sender judged the handover by


class RenewRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Ask an authority for a new certificate for the calling node's key and name."""

    addresses: list[str]


class RenewAnswer(msgspec.Struct, frozen=True, kw_only=True):
    node_cert_pem: str


class PkiKeeper:
    """This node's current identity and CA key, kept in line with the cluster."""

    def __init__(
        self,
        *,
        identity: NodeIdentity,
        registry: CertRegistry,
        authorities: Authorities,
        member_api: Callable[[str], tuple[str, str] | None],
        audit: AuditLog,
        addresses: list[pki.IPAddress] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.identity = identity
        self._addresses = addresses or []  # what the certificate should name (listen addresses)
        self.ca_key: ec.EllipticCurvePrivateKey | None = identity.ca_key
        self._registry = registry
        self._authorities = authorities
        self._member_api = member_api
        self._audit = audit
        self._clock = clock
        self.caller = NodeCaller(identity, cert=lambda: self.identity.node_cert, clock=clock)

    @property
    def name(self) -> str:
        return self.identity.name

    async def close(self) -> None:
        await self.caller.close()

    # -- the CA key -------------------------------------------------------------------------

    async def run(self, interval: float) -> None:
        """Follow the authority set until cancelled, one step every `interval` seconds."""
        while True:
            await asyncio.sleep(interval)
            try:
                await self.sync_key()
            except Exception:
                log.exception("following the authority set failed")

    async def sync_key(self) -> KeyStep:
        """One step towards "only designated nodes hold the key"; returns what it did."""
        step = plan(me=self.name, designated=self._authorities.designated(), have_key=self.ca_key is not None)
        seen: Designation | None = None
        if step == KeyStep.FETCH:
            answer = await self._fetch_key()
            if answer is None:
                return KeyStep.KEEP
            seen = answer.designation
        if step in (KeyStep.FETCH, KeyStep.ANNOUNCE) and self.ca_key is not None:
            # Signed with the key just received: the announcement itself shows this node holds it.
            self._authorities.announce_key(self.name, ca_key=self.ca_key, seen=seen)
        elif step == KeyStep.DISCARD:
            discard_ca_key(self.identity)
            self.ca_key = None
            log.warning("no longer a certificate authority: deleted this node's copy of the CA key")
            self._record("cluster.authority.key.discard", "deleted this node's copy of the CA key")
        return step

    async def _fetch_key(self) -> CaKeyAnswer | None:
        for holder in self._authorities.holders():
            answer = await self._call(holder, CA_KEY_PATH, CaKeyRequest(), CaKeyAnswer)
            if answer is None:
                continue
            try:
                self.ca_key = install_ca_key(self.identity, answer.ca_key_pem.encode())
            except ValueError as exc:
                log.warning("an authority sent an unusable CA key", extra={"from": holder, "reason": str(exc)})
                continue
            log.info("now a certificate authority: received the CA key", extra={"from": holder})
            self._record("cluster.authority.key.receive", f"received the CA key from {holder}")
            return answer
        return None

    # -- the node certificate ---------------------------------------------------------------

    async def renew_loop(self, contexts: tuple[ssl.SSLContext, ...], first: float, interval: float) -> None:
        """Check the certificate `first` seconds after the start, then every `interval`; a
        renewed one is loaded into `contexts` (gossip uses it at once)."""
        delay = first
        while True:
            await asyncio.sleep(delay)
            delay = interval
            try:
                renewed = await self.renew_if_due(dt.datetime.fromtimestamp(self._clock(), dt.UTC))
            except Exception:
                log.exception("renewing the node certificate failed")
                continue
            if renewed:
                for context in contexts:
                    context.load_cert_chain(str(self.identity.node_cert_path), str(self.identity.node_key_path))
                log.info("gossip uses the renewed node certificate; HTTPS follows within seconds (appliance/server.py)")

    async def renew_if_due(self, now: dt.datetime) -> bool:
        """Renew the node certificate if it nears expiry or misses an address; True if renewed."""
        identity = self.identity
        addresses = sorted(pki.san_addresses(identity.node_cert) | set(self._addresses), key=str)
        if not needs_renewal(identity, addresses, now):
            return False
        if self.ca_key is not None:
            with_key = NodeIdentity(
                identity.name, identity.ca_cert, self.ca_key, identity.node_cert, identity.node_key,
                identity.ca_cert_path, identity.node_cert_path, identity.node_key_path,
            )  # fmt: skip
            renewed = refresh_node_cert(with_key, addresses, now)
            self._registry.register(renewed.node_cert, issued_by=self.name, now=now.timestamp())
            self._record("cluster.cert.renew", f"issued itself serial {renewed.node_cert.serial_number:x}")
        else:
            renewed_or_none = await self._renew_by_authority(addresses)
            if renewed_or_none is None:
                return False
            renewed = renewed_or_none
        self.identity = renewed
        return True

    async def _renew_by_authority(self, addresses: list[pki.IPAddress]) -> NodeIdentity | None:
        request = RenewRequest(addresses=[str(a) for a in addresses])
        for authority in self._authorities.holders():
            answer = await self._call(authority, RENEW_PATH, request, RenewAnswer)
            if answer is None:
                continue
            try:
                renewed = install_node_cert(self.identity, answer.node_cert_pem.encode())
            except ValueError as exc:
                log.warning("an authority sent an unusable certificate", extra={"from": authority, "reason": str(exc)})
                continue
            log.info("node certificate renewed by an authority", extra={"from": authority})
            return renewed
        log.warning("no authority renewed this node's certificate; trying again later")
        return None

    # -- helpers ----------------------------------------------------------------------------

    async def _call(self, node: str, path: str, payload: msgspec.Struct, answer: type[_Answer]) -> _Answer | None:
        if node == self.name:
            return None
        found = self._member_api(node)
        if found is None or found[0] not in ("alive", "suspect") or not found[1]:
            return None
        try:
            status, body = await self.caller.post(found[1], path, payload)
        except (OSError, ssl.SSLError, UpstreamError, TimeoutError) as exc:
            log.info("node call failed", extra={"node": node, "path": path, "reason": f"{type(exc).__name__} {exc}"})
            return None
        if status != 200:
            log.info("node call refused", extra={"node": node, "path": path, "status": status, "body": body[:200]})
            return None
        try:
            return msgspec.json.decode(body, type=answer)
        except msgspec.DecodeError:
            return None

    def _record(self, action: str, detail: str) -> None:
        self._audit.append(
            user="cluster", source=self.name, action=action, target=self.name, outcome="success", detail=detail
        )


def parse_addresses(texts: list[str]) -> list[pki.IPAddress]:
    """IP addresses a renewal asks for; ValueError naming the first that is not one."""
    result: list[pki.IPAddress] = []
    for text in texts:
        try:
            result.append(ipaddress.ip_address(text))
        except ValueError as exc:
            raise ValueError(f"{text!r} is not an IP address") from exc
    return result
