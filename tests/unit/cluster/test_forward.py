"""The forwarding assertion's checks on the receiving side, the answering-node check, and the
nonce ledger across a reopened database: real keys and certificates, a fake clock."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import ssl
import time
from pathlib import Path

import msgspec
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from appliance.api.forward import ASSERTION_HEADER, MAX_SKEW_SECONDS, SIGNATURE_HEADER, Forwarder
from appliance.api.problems import ApiError
from appliance.api.upstream import PeerRefused
from appliance.auth.permissions import Role
from appliance.auth.principal import Principal
from appliance.cluster.nonces import PRUNE_INTERVAL, NonceLedger
from appliance.identity import pki
from appliance.identity.registry import CertRegistry
from appliance.identity.store import NodeIdentity
from appliance.store.config import ConfigStore
from appliance.store.database import Database
from appliance.store.hlc import HybridClock
from tests.kit.clock import FakeClock

NOW = float(int(time.time()))  # real time: the TLS handshake checks validity on the real clock
CALLER = Principal("ops", Role.VIEWER, "token", "0123456789abcdef", False, source="198.51.100.7")


def _identity(tmp: Path, name: str, ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate) -> NodeIdentity:
    key = pki.new_key()
    cert = pki.issue_node_cert(
        ca_key, ca_cert, key.public_key(), name=name, addresses=[], now=dt.datetime.fromtimestamp(NOW, dt.UTC)
    )
    (tmp / "ca.crt").write_bytes(pki.cert_to_pem(ca_cert))
    (tmp / f"{name}.crt").write_bytes(pki.cert_to_pem(cert))
    (tmp / f"{name}.key").write_bytes(pki.key_to_pem(key))
    return NodeIdentity(name, ca_cert, None, cert, key, tmp / "ca.crt", tmp / f"{name}.crt", tmp / f"{name}.key")


class Cluster:
    """Receiver n1 and forwarder n2 of one cluster CA; `ledger` is n1's nonce ledger."""

    def __init__(self, tmp: Path) -> None:
        self.clock = FakeClock(NOW)
        self.tmp = tmp
        self.ca_key, self.ca_cert = pki.new_ca("test", dt.datetime.fromtimestamp(NOW, dt.UTC))
        self.n1 = _identity(tmp, "n1", self.ca_key, self.ca_cert)
        self.n2 = _identity(tmp, "n2", self.ca_key, self.ca_cert)
        self.revoked: set[str] = set()
        self.db = Database.create(tmp / "n1.db")
        self.receiver = self.forwarder_for(self.n1)
        self.sender = self.forwarder_for(self.n2)

    def forwarder_for(self, identity: NodeIdentity, api: str = "") -> Forwarder:
        ledger = NonceLedger(self.db, margin=MAX_SKEW_SECONDS, clock=self.clock)
        return Forwarder(
            identity=identity,
            member_api=lambda _name: ("alive", api),
            refusal=lambda fp, _name, _key: "revoked" if fp in self.revoked else None,
            accept_nonce=ledger.accept,
            clock=self.clock,
        )

    def headers(self, target: str = "n1", path: str = "/api/v1/nodes/n1") -> dict[str, str]:
        return self.sender._assertion_headers(CALLER, target, "GET", path)


@pytest.fixture
def cluster(tmp_path: Path) -> Cluster:
    return Cluster(tmp_path)


def _refused(cluster: Cluster, headers: dict[str, str], detail: str, path: str = "/api/v1/nodes/n1") -> None:
    with pytest.raises(ApiError) as raised:
        cluster.receiver.verify(headers, "GET", path)
    assert raised.value.status_code == 401
    assert detail in str(raised.value.detail)


def test_a_good_assertion_names_caller_credential_source_and_target(cluster: Cluster) -> None:
    claim = cluster.receiver.verify(cluster.headers(), "GET", "/api/v1/nodes/n1")
    assert (claim.node, claim.target, claim.user, claim.via, claim.credential_id, claim.source) == (
        "n2", "n1", "ops", "token", "0123456789abcdef", "198.51.100.7"
    )  # fmt: skip


def test_an_assertion_for_another_node_is_refused(cluster: Cluster) -> None:
    _refused(cluster, cluster.headers(target="n3"), "is for node 'n3', not this node ('n1')")


def test_a_replayed_assertion_is_refused_also_after_a_restart(cluster: Cluster) -> None:
    headers = cluster.headers()
    cluster.receiver.verify(headers, "GET", "/api/v1/nodes/n1")
    _refused(cluster, headers, "replayed")
    # A restart: a new process opens the same database and builds a new forwarder.
    cluster.db.close()
    cluster.db = Database.open(cluster.tmp / "n1.db")
    cluster.receiver = cluster.forwarder_for(cluster.n1)
    cluster.clock.now += MAX_SKEW_SECONDS - 1  # still fresh
    _refused(cluster, headers, "replayed")
    cluster.receiver.verify(cluster.headers(), "GET", "/api/v1/nodes/n1")  # a new one is fine


def test_stale_forged_and_mismatched_assertions_are_refused(cluster: Cluster) -> None:
    headers = cluster.headers()
    cluster.clock.now += MAX_SKEW_SECONDS + 1
    _refused(cluster, headers, "stale")
    cluster.clock.now = NOW
    _refused(cluster, cluster.headers(), "another request", path="/api/v1/nodes/n1/network")
    # A claim edited after signing (here: another user) no longer verifies.
    edited = dict(cluster.headers())
    claim = msgspec.json.decode(base64.urlsafe_b64decode(edited[ASSERTION_HEADER] + "=="))
    claim["user"] = "admin"
    edited[ASSERTION_HEADER] = base64.urlsafe_b64encode(msgspec.json.encode(claim)).decode().rstrip("=")
    _refused(cluster, edited, "does not verify")
    _refused(cluster, {**cluster.headers(), SIGNATURE_HEADER: "!!"}, "")


def test_a_revoked_forwarder_is_refused(cluster: Cluster) -> None:
    cluster.revoked.add(pki.fingerprint(cluster.n2.node_cert))
    _refused(cluster, cluster.headers(), "revoked")


def test_a_renewed_forwarder_passes_by_its_registered_name_and_key_before_its_entry_arrives(
    cluster: Cluster,
) -> None:
    """A member that re-issued its certificate (same key) is not refused for the seconds its
    registry entry takes to replicate; a new key under the same name is."""
    registry = CertRegistry(ConfigStore(Database.create(cluster.tmp / "config.db"), HybridClock("n1")))
    registry.register(cluster.n2.node_cert, issued_by="n1", now=NOW)
    cluster.receiver = Forwarder(
        identity=cluster.n1,
        member_api=lambda _name: None,
        refusal=lambda fp, name, key: registry.refusal(fp, name, NOW, key),
        accept_nonce=NonceLedger(cluster.db, margin=MAX_SKEW_SECONDS, clock=cluster.clock).accept,
        clock=cluster.clock,
    )
    cluster.receiver.verify(cluster.headers(), "GET", "/api/v1/nodes/n1")
    when = dt.datetime.fromtimestamp(NOW, dt.UTC)
    renewed = pki.issue_node_cert(
        cluster.ca_key, cluster.ca_cert, cluster.n2.node_key.public_key(), name="n2", addresses=[], now=when
    )
    cluster.sender = Forwarder(
        identity=NodeIdentity(
            "n2", cluster.ca_cert, None, renewed, cluster.n2.node_key,
            cluster.n2.ca_cert_path, cluster.n2.node_cert_path, cluster.n2.node_key_path,
        ),
        member_api=lambda _name: None,
        refusal=lambda *_: None,
        accept_nonce=lambda _nonce, _at: True,
        clock=cluster.clock,
    )  # fmt: skip
    assert registry.get(pki.fingerprint(renewed)) is None
    cluster.receiver.verify(cluster.headers(), "GET", "/api/v1/nodes/n1")
    (cluster.tmp / "rekeyed").mkdir()
    rekeyed = _identity(cluster.tmp / "rekeyed", "n2", cluster.ca_key, cluster.ca_cert)
    cluster.sender = cluster.forwarder_for(rekeyed)
    _refused(cluster, cluster.headers(), "refused: not registered")


def test_the_answering_node_must_be_the_target_and_unrevoked(cluster: Cluster) -> None:
    der = cluster.n1.node_cert.public_bytes(serialization.Encoding.DER)
    cluster.sender.check_answering_node(der, "n1")
    with pytest.raises(PeerRefused, match="node 'n1' answered"):
        cluster.sender.check_answering_node(der, "n3")
    outsider_key, outsider_ca = pki.new_ca("other", dt.datetime.fromtimestamp(NOW, dt.UTC))
    (cluster.tmp / "outsider").mkdir()
    impostor = _identity(cluster.tmp / "outsider", "n1", outsider_key, outsider_ca)
    with pytest.raises(PeerRefused, match="not from this cluster"):
        cluster.sender.check_answering_node(impostor.node_cert.public_bytes(serialization.Encoding.DER), "n1")
    with pytest.raises(PeerRefused, match="not from this cluster"):
        cluster.sender.check_answering_node(b"", "n1")  # no TLS certificate at all
    cluster.revoked.add(pki.fingerprint(cluster.n1.node_cert))
    with pytest.raises(PeerRefused, match="revoked"):
        cluster.sender.check_answering_node(der, "n1")


def test_the_nonce_ledger_prunes_what_the_freshness_check_refuses_anyway(tmp_path: Path) -> None:
    clock = FakeClock(NOW)
    db = Database.create(tmp_path / "db")
    ledger = NonceLedger(db, margin=MAX_SKEW_SECONDS, clock=clock)
    assert ledger.accept("a", NOW + MAX_SKEW_SECONDS)
    assert not ledger.accept("a", NOW + MAX_SKEW_SECONDS)
    clock.now += MAX_SKEW_SECONDS  # "a" is at the end of its window: kept
    assert ledger.accept("b", clock.now + MAX_SKEW_SECONDS)
    clock.now += PRUNE_INTERVAL + MAX_SKEW_SECONDS + 1  # "a" and "b" are past it by a margin
    assert ledger.accept("c", clock.now + MAX_SKEW_SECONDS)
    assert ledger.count() == 1
    db.close()


async def test_nothing_is_sent_to_an_impostor_at_the_targets_address(cluster: Cluster) -> None:
    """A member (here n2's certificate, so the TLS handshake passes) answers at the address n1
    announced: the forwarder refuses it before writing the request, assertion included."""
    received: list[bytes] = []

    async def impostor(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        received.append(await reader.read(65536))
        writer.close()

    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cluster.n2.node_cert_path, cluster.n2.node_key_path)
    server = await asyncio.start_server(impostor, "127.0.0.1", 0, ssl=tls)
    port = server.sockets[0].getsockname()[1]
    forwarder = cluster.forwarder_for(cluster.n2, api=f"127.0.0.1:{port}")
    try:
        with pytest.raises(PeerRefused, match="node 'n2' answered"):
            await forwarder.get_json("n1", "/api/v1/nodes/n1", CALLER)
    finally:
        await forwarder.close()
        server.close()
        await server.wait_closed()
    assert b"GET" not in b"".join(received)
