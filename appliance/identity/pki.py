"""The cluster's PKI as plain functions: keys, a CA, node certificates, CSRs, fingerprints.

Everything is ECDSA P-256 (DESIGN.md). Functions take the time they should consider "now"
so that expiry and renewal are testable without a clock. No file or network I/O here; the
identity store puts results on disk.
"""

from __future__ import annotations

import datetime as dt
import ipaddress

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_VALIDITY = dt.timedelta(days=3650)
NODE_VALIDITY = dt.timedelta(days=365)
# Certificates are back-dated a little so that a peer whose clock is slightly behind accepts them.
CLOCK_SKEW = dt.timedelta(minutes=5)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# Every node certificate names these, so that local tools verify it on 127.0.0.1/::1.
LOOPBACK_ADDRESSES: tuple[IPAddress, ...] = (ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1"))


def new_key() -> ec.EllipticCurvePrivateKey:
    """A fresh ECDSA P-256 private key."""
    return ec.generate_private_key(ec.SECP256R1())


def key_to_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def key_from_pem(data: bytes) -> ec.EllipticCurvePrivateKey:
    """Load a PEM private key; raise ValueError unless it is an unencrypted EC P-256 key."""
    key = serialization.load_pem_private_key(data, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ValueError("not an ECDSA P-256 private key")
    return key


def cert_to_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def cert_from_pem(data: bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificate(data)


def fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 of the DER certificate as lowercase hex: how join tokens name the CA."""
    return cert.fingerprint(hashes.SHA256()).hex()


def new_ca(cluster_id: str, now: dt.datetime) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A self-signed cluster CA whose subject names the cluster."""
    key = new_key()
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "DebVisor"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"DebVisor cluster CA {cluster_id}"),
        ]
    )
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def new_csr(key: ec.EllipticCurvePrivateKey, name: str) -> x509.CertificateSigningRequest:
    """A CSR for a node: the subject's common name is the node name."""
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    return x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())


def issue_node_cert(
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    node_public_key: ec.EllipticCurvePublicKey,
    *,
    name: str,
    addresses: list[IPAddress],
    now: dt.datetime,
    validity: dt.timedelta = NODE_VALIDITY,
) -> x509.Certificate:
    """A node certificate usable as TLS server and client; SAN = node name, localhost, addresses."""
    dns_names = [x509.DNSName(name)]
    if name != "localhost":
        dns_names.append(x509.DNSName("localhost"))
    ip_names = [x509.IPAddress(addr) for addr in sorted(set(addresses), key=_address_sort_key)]
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_cert.subject)
        .public_key(node_public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(min(now + validity, ca_cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=True,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
        .add_extension(x509.SubjectAlternativeName([*dns_names, *ip_names]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(node_public_key), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )


def node_name_of(cert: x509.Certificate) -> str:
    """The node name a certificate was issued to (its subject common name)."""
    attrs = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(attrs) != 1:
        raise ValueError("certificate has no single common name")
    return str(attrs[0].value)


def san_addresses(cert: x509.Certificate) -> set[IPAddress]:
    """The IP addresses in a certificate's subject alternative names."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    return {a for a in san.get_values_for_type(x509.IPAddress) if isinstance(a, IPAddress)}


def verify_issued_by(cert: x509.Certificate, ca_cert: x509.Certificate) -> None:
    """Raise ValueError unless `cert` carries a valid signature of `ca_cert`."""
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"not issued by this cluster's CA: {exc}") from exc
    except Exception as exc:  # cryptography raises InvalidSignature, not a ValueError
        raise ValueError("signature does not verify against this cluster's CA") from exc


def public_keys_match(key: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> bool:
    """True when `cert` certifies the public half of `key`."""
    fmt = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return key.public_key().public_bytes(*fmt) == cert.public_key().public_bytes(*fmt)


def _address_sort_key(addr: IPAddress) -> tuple[int, int]:
    return (addr.version, int(addr))
