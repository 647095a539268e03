"""The cluster PKI's decisions: which certificates are accepted (registry), what a node does
with its CA key copy (authority plan), and which node calls are believed (node signatures)."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from typing import NamedTuple

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from appliance.api.problems import ApiError
from appliance.cluster.authority import Authorities, Designation, KeyStep, plan
from appliance.cluster.nodeauth import NodeVerifier, sign_headers
from appliance.identity import pki
from appliance.identity.registry import UNKNOWN, CertRecord, CertRegistry, NameRevocation, judge, key_id
from appliance.store.config import ConfigStore
from appliance.store.database import Database
from appliance.store.hlc import HybridClock

NOW = 1_800_000_000.0


def record(name: str = "n1", issued_at: float = NOW - 100, not_after: float = NOW + 1000) -> CertRecord:
    return CertRecord(name=name, serial="1", not_after=not_after, issued_by="n0", issued_at=issued_at)


def test_registered_unrevoked_certificates_are_accepted() -> None:
    assert judge(record(), name="n1", revoked=False, name_revoked=None, now=NOW) is None
    assert judge(record(), name=None, revoked=False, name_revoked=None, now=NOW) is None


@pytest.mark.parametrize(
    ("entry", "name", "revoked", "name_revoked", "reason"),
    [
        (None, "n1", False, None, UNKNOWN),  # minted by a CA-key holder, never registered
        (record(), "n1", True, None, "revoked"),
        (record(), "n2", False, None, "registered for 'n1'"),  # another node's entry
        (record(), "n1", False, NameRevocation(at=NOW - 50, by="n0"), "was removed"),  # issued before removal
        (record(not_after=NOW - 1), "n1", False, None, "expired"),
    ],
)
def test_refusals(
    entry: CertRecord | None, name: str, revoked: bool, name_revoked: NameRevocation | None, reason: str
) -> None:
    verdict = judge(entry, name=name, revoked=revoked, name_revoked=name_revoked, now=NOW)
    assert verdict is not None
    assert reason in verdict


def test_a_certificate_issued_after_the_removal_counts_again() -> None:
    removed = NameRevocation(at=NOW - 200, by="n0")
    assert judge(record(issued_at=NOW - 100), name="n1", revoked=False, name_revoked=removed, now=NOW) is None


def d(holds: bool = False) -> Designation:
    return Designation(by="admin", at=NOW, holds_key=holds)


@pytest.mark.parametrize(
    ("designated", "have_key", "step"),
    [
        ({"me": d()}, False, KeyStep.FETCH),
        ({"me": d()}, True, KeyStep.ANNOUNCE),
        ({"me": d(holds=True)}, True, KeyStep.KEEP),
        ({"other": d(holds=True)}, True, KeyStep.DISCARD),
        # Out of the set, but nobody in it holds the key yet: keep it, or the key is lost.
        ({"other": d()}, True, KeyStep.KEEP),
        ({"other": d(holds=True)}, False, KeyStep.KEEP),
        ({}, True, KeyStep.KEEP),
    ],
)
def test_key_plan(designated: dict[str, Designation], have_key: bool, step: KeyStep) -> None:
    assert plan(me="me", designated=designated, have_key=have_key) is step


class Pki(NamedTuple):
    ca: x509.Certificate
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey


@pytest.fixture(scope="module")
def cluster_pki() -> Pki:
    now = dt.datetime.fromtimestamp(time.time(), dt.UTC)
    ca_key, ca = pki.new_ca("c", now)
    key = pki.new_key()
    return Pki(ca, pki.issue_node_cert(ca_key, ca, key.public_key(), name="n2", addresses=[], now=now), key)


def verifier(ca: x509.Certificate, registered: set[str]) -> NodeVerifier:
    return NodeVerifier(ca, lambda fp, _name, _key: None if fp in registered else UNKNOWN)


def test_a_signed_node_call_is_believed_once(cluster_pki: Pki) -> None:
    ca, cert, key = cluster_pki
    check = verifier(ca, {pki.fingerprint(cert)})
    headers = sign_headers(cert, key, method="POST", path="/p", body=b"{}", now=time.time())
    name, seen = check.verify(headers, "POST", "/p", b"{}")
    assert name == "n2"
    assert seen == cert
    with pytest.raises(ApiError, match="replayed"):
        check.verify(headers, "POST", "/p", b"{}")


@pytest.mark.parametrize(
    ("method", "path", "body", "reason"),
    [
        ("POST", "/other", b"{}", "another request"),
        ("POST", "/p", b'{"x": 1}', "does not cover this body"),
    ],
)
def test_a_node_call_is_bound_to_its_request(
    cluster_pki: Pki,
    method: str,
    path: str,
    body: bytes,
    reason: str,
) -> None:
    ca, cert, key = cluster_pki
    headers = sign_headers(cert, key, method="POST", path="/p", body=b"{}", now=time.time())
    with pytest.raises(ApiError, match=reason):
        verifier(ca, {pki.fingerprint(cert)}).verify(headers, method, path, body)


def test_an_unregistered_or_foreign_certificate_is_refused(cluster_pki: Pki) -> None:
    ca, cert, key = cluster_pki
    headers = sign_headers(cert, key, method="POST", path="/p", body=b"", now=time.time())
    with pytest.raises(ApiError, match="refused: not registered"):
        verifier(ca, set()).verify(headers, "POST", "/p", b"")
    now = dt.datetime.fromtimestamp(time.time(), dt.UTC)
    other_ca_key, other_ca = pki.new_ca("other", now)
    outsider = pki.issue_node_cert(other_ca_key, other_ca, key.public_key(), name="n2", addresses=[], now=now)
    headers = sign_headers(outsider, key, method="POST", path="/p", body=b"", now=time.time())
    with pytest.raises(ApiError, match="not from this cluster"):
        verifier(ca, {pki.fingerprint(outsider)}).verify(headers, "POST", "/p", b"")


def test_a_stale_node_call_is_refused(cluster_pki: Pki) -> None:
    ca, cert, key = cluster_pki
    headers = sign_headers(cert, key, method="POST", path="/p", body=b"", now=time.time() - 120)
    with pytest.raises(ApiError, match="stale"):
        verifier(ca, {pki.fingerprint(cert)}).verify(headers, "POST", "/p", b"")


def test_a_renewal_is_accepted_by_its_key_until_the_node_is_removed(tmp_path: Path) -> None:
    db = Database.create(tmp_path / "db")
    store = ConfigStore(db, HybridClock("node"))
    registry = CertRegistry(store)
    now = dt.datetime.fromtimestamp(time.time(), dt.UTC)
    ca_key, ca = pki.new_ca("c", now)
    key = pki.new_key()
    first = pki.issue_node_cert(ca_key, ca, key.public_key(), name="n1", addresses=[], now=now)
    renewed = pki.issue_node_cert(ca_key, ca, key.public_key(), name="n1", addresses=[], now=now)
    minted = pki.issue_node_cert(ca_key, ca, pki.new_key().public_key(), name="n1", addresses=[], now=now)
    registry.register(first, issued_by="n0", now=now.timestamp() - 10)
    fp, kid = pki.fingerprint(renewed), key_id(renewed)
    assert registry.refusal(fp, "n1", now.timestamp(), kid) is None  # its entry is still on its way
    assert registry.refusal(fp, "n1", now.timestamp()) == UNKNOWN  # the forwarder only knows fingerprints
    assert registry.refusal(fp, "n2", now.timestamp(), kid) == UNKNOWN
    assert registry.refusal(pki.fingerprint(minted), "n1", now.timestamp(), key_id(minted)) == UNKNOWN
    registry.revoke_name("n1", by="n0", now=now.timestamp())
    assert registry.refusal(fp, "n1", now.timestamp(), kid) == UNKNOWN
    assert "removed" in (registry.refusal(pki.fingerprint(first), "n1", now.timestamp()) or "")
    db.close()


def test_the_authority_set_is_replaced_and_keeps_what_kept_entries_said(tmp_path: Path) -> None:
    db = Database.create(tmp_path / "db")
    ca_key, ca = pki.new_ca("c", dt.datetime.fromtimestamp(NOW, dt.UTC))
    authorities = Authorities(ConfigStore(db, HybridClock("node")), ca, "c")
    authorities.designate("n0", ca_key=ca_key, by="n0", now=NOW, holds_key=True)
    for name in ("n1", "n2"):
        authorities.designate(name, ca_key=ca_key, by="n0", now=NOW)
    assert authorities.names() == ["n0", "n1", "n2"]
    assert authorities.holders() == ["n0"]
    authorities.announce_key("n1", ca_key=ca_key)
    assert authorities.holders() == ["n0", "n1"]
    added, removed = authorities.replace(["n1", "n3"], ca_key=ca_key, by="n1", requested_by="root", now=NOW)
    assert (added, removed) == (["n3"], ["n0", "n2"])
    assert authorities.designated()["n1"].holds_key  # kept entries keep what they said
    n3 = authorities.designated()["n3"]
    assert (n3.by, n3.requested_by, n3.at, n3.holds_key) == ("n1", "root", NOW, False)
    db.close()
