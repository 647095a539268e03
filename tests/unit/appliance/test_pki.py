"""The cluster PKI: CA and node certificates carry what TLS peers will check."""

from __future__ import annotations

import datetime as dt
import ipaddress

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from appliance.identity import pki

NOW = dt.datetime(2026, 11, 28, 12, 0, tzinfo=dt.UTC)


def test_ca_is_a_p256_ca_valid_for_years() -> None:
    key, cert = pki.new_ca("c1", NOW)
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert pki.public_keys_match(key, cert)
    assert cert.not_valid_after_utc - NOW > dt.timedelta(days=3000)
    assert "c1" in cert.subject.rfc4514_string()


def test_node_cert_names_node_and_addresses_and_serves_both_tls_roles() -> None:
    ca_key, ca_cert = pki.new_ca("c1", NOW)
    node_key = pki.new_key()
    addrs = [ipaddress.ip_address("192.0.2.1"), ipaddress.ip_address("::1")]
    cert = pki.issue_node_cert(ca_key, ca_cert, node_key.public_key(), name="n1", addresses=addrs, now=NOW)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["n1", "localhost"]
    assert pki.san_addresses(cert) == set(addrs)
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in eku
    assert ExtendedKeyUsageOID.CLIENT_AUTH in eku
    assert pki.node_name_of(cert) == "n1"
    pki.verify_issued_by(cert, ca_cert)
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_node_cert_never_outlives_its_ca() -> None:
    ca_key, ca_cert = pki.new_ca("c1", NOW)
    cert = pki.issue_node_cert(
        ca_key,
        ca_cert,
        pki.new_key().public_key(),
        name="n1",
        addresses=[],
        now=NOW,
        validity=dt.timedelta(days=10_000),
    )
    assert cert.not_valid_after_utc == ca_cert.not_valid_after_utc


def test_cert_from_another_ca_does_not_verify() -> None:
    _, our_ca = pki.new_ca("ours", NOW)
    their_key, their_ca = pki.new_ca("theirs", NOW)
    cert = pki.issue_node_cert(their_key, their_ca, pki.new_key().public_key(), name="n1", addresses=[], now=NOW)
    pki.verify_issued_by(cert, their_ca)
    with pytest.raises(ValueError, match="CA"):
        pki.verify_issued_by(cert, our_ca)


def test_pem_round_trip_and_fingerprint() -> None:
    key, cert = pki.new_ca("c1", NOW)
    assert pki.fingerprint(pki.cert_from_pem(pki.cert_to_pem(cert))) == pki.fingerprint(cert)
    assert len(pki.fingerprint(cert)) == 64
    assert pki.public_keys_match(pki.key_from_pem(pki.key_to_pem(key)), cert)


def test_key_from_pem_refuses_other_key_types() -> None:
    from cryptography.hazmat.primitives.asymmetric import ed25519
    from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

    pem = ed25519.Ed25519PrivateKey.generate().private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    with pytest.raises(ValueError, match="P-256"):
        pki.key_from_pem(pem)


def test_csr_carries_node_name() -> None:
    key = pki.new_key()
    csr = pki.new_csr(key, "n7")
    assert csr.is_signature_valid
    assert csr.subject.rfc4514_string() == "CN=n7"
