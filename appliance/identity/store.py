"""The node's identity on disk: create it once, load and check it on every start.

The cluster CA and this node's key and certificate live in `pki/` of the data dir; the CA
key (`ca.key`) only on authority nodes (`appliance/cluster/authority.py`). Loading checks that
the files parse, that keys are private (0600), that the node certificate belongs to the node
key and was issued by the CA, and that it names this node. A node that holds the CA key
re-issues its own certificate when its addresses changed or it nears expiry; any other node
asks an authority (`appliance/cluster/renewal.py`) and installs the answer with
`install_node_cert`. The node key never changes.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from appliance.datadir import DataDir, read_private_file, write_new_file
from appliance.errors import StartupError
from appliance.identity import pki

log = logging.getLogger(__name__)

RENEW_BEFORE = dt.timedelta(days=30)


@dataclass(frozen=True)
class NodeIdentity:
    """This node's name, key and certificate, and the cluster CA it trusts."""

    name: str
    ca_cert: x509.Certificate
    ca_key: ec.EllipticCurvePrivateKey | None
    node_cert: x509.Certificate
    node_key: ec.EllipticCurvePrivateKey
    ca_cert_path: Path
    node_cert_path: Path
    node_key_path: Path

    @property
    def ca_fingerprint(self) -> str:
        return pki.fingerprint(self.ca_cert)

    @property
    def node_fingerprint(self) -> str:
        return pki.fingerprint(self.node_cert)


def _paths(datadir: DataDir) -> dict[str, Path]:
    return {
        "ca_cert": datadir.pki / "ca.crt",
        "ca_key": datadir.pki / "ca.key",
        "node_cert": datadir.pki / "node.crt",
        "node_key": datadir.pki / "node.key",
    }


def create_identity(
    datadir: DataDir, name: str, cluster_id: str, addresses: list[pki.IPAddress], now: dt.datetime
) -> NodeIdentity:
    """Make a new cluster CA and node identity in a fresh data dir."""
    paths = _paths(datadir)
    ca_key, ca_cert = pki.new_ca(cluster_id, now)
    node_key = pki.new_key()
    node_cert = pki.issue_node_cert(ca_key, ca_cert, node_key.public_key(), name=name, addresses=addresses, now=now)
    write_new_file(paths["ca_key"], pki.key_to_pem(ca_key), mode=0o600)
    write_new_file(paths["ca_cert"], pki.cert_to_pem(ca_cert), mode=0o644)
    write_new_file(paths["node_key"], pki.key_to_pem(node_key), mode=0o600)
    write_new_file(paths["node_cert"], pki.cert_to_pem(node_cert), mode=0o644)
    return NodeIdentity(
        name, ca_cert, ca_key, node_cert, node_key, paths["ca_cert"], paths["node_cert"], paths["node_key"]
    )


def write_joined_identity(
    datadir: DataDir,
    *,
    ca_cert_pem: bytes,
    node_key: ec.EllipticCurvePrivateKey,
    node_cert_pem: bytes,
) -> None:
    """Store the identity a seed issued to this node when it joined, and the CA certificate.

    Never a CA key: a node that becomes an authority fetches it later, from another authority."""
    paths = _paths(datadir)
    write_new_file(paths["ca_cert"], ca_cert_pem, mode=0o644)
    write_new_file(paths["node_key"], pki.key_to_pem(node_key), mode=0o600)
    write_new_file(paths["node_cert"], node_cert_pem, mode=0o644)


def load_identity(datadir: DataDir, name: str) -> NodeIdentity:
    """Load and check the identity in an initialised data dir; StartupError on any defect."""
    paths = _paths(datadir)
    ca_cert = _load_cert(paths["ca_cert"])
    node_cert = _load_cert(paths["node_cert"])
    node_key = _load_key(paths["node_key"])
    ca_key = _load_key(paths["ca_key"]) if paths["ca_key"].exists() else None
    if ca_key is not None and not pki.public_keys_match(ca_key, ca_cert):
        raise StartupError(f"{paths['ca_key']} does not belong to {paths['ca_cert']}")
    if not pki.public_keys_match(node_key, node_cert):
        raise StartupError(f"{paths['node_key']} does not belong to {paths['node_cert']}")
    try:
        pki.verify_issued_by(node_cert, ca_cert)
        cert_name = pki.node_name_of(node_cert)
    except ValueError as exc:
        raise StartupError(f"{paths['node_cert']}: {exc}") from exc
    if cert_name != name:
        raise StartupError(f"{paths['node_cert']} names node {cert_name!r}, but this node is {name!r}")
    return NodeIdentity(
        name, ca_cert, ca_key, node_cert, node_key, paths["ca_cert"], paths["node_cert"], paths["node_key"]
    )


def refresh_node_cert(identity: NodeIdentity, addresses: list[pki.IPAddress], now: dt.datetime) -> NodeIdentity:
    """Re-issue the node certificate if it misses an address or nears expiry and the CA key is here.

    The new certificate replaces the old one atomically (write, fsync, rename); the key stays.
    Without the CA key the certificate is kept as it is here (the running node asks an
    authority, `appliance/cluster/renewal.py`) and a missing address is only logged.
    """
    missing = set(addresses) - pki.san_addresses(identity.node_cert)
    expiring = identity.node_cert.not_valid_after_utc - now < RENEW_BEFORE
    if not missing and not expiring:
        return identity
    if identity.ca_key is None:
        if missing:
            log.warning(
                "node certificate does not cover addresses %s",
                ", ".join(sorted(map(str, missing))),
            )
        return identity
    wanted = sorted(set(addresses) | pki.san_addresses(identity.node_cert), key=str)
    cert = pki.issue_node_cert(
        identity.ca_key,
        identity.ca_cert,
        identity.node_key.public_key(),
        name=identity.name,
        addresses=wanted,
        now=now,
    )
    _replace_file(identity.node_cert_path, pki.cert_to_pem(cert), mode=0o644)
    log.info(
        "re-issued node certificate",
        extra={
            "reason": "expiring" if expiring else "new addresses",
            "not_after": str(cert.not_valid_after_utc),
        },
    )
    return _with_cert(identity, cert)


def needs_renewal(identity: NodeIdentity, addresses: list[pki.IPAddress], now: dt.datetime) -> bool:
    """True if the node certificate misses one of `addresses` or expires within RENEW_BEFORE."""
    missing = set(addresses) - pki.san_addresses(identity.node_cert)
    return bool(missing) or identity.node_cert.not_valid_after_utc - now < RENEW_BEFORE


def install_node_cert(identity: NodeIdentity, cert_pem: bytes) -> NodeIdentity:
    """Replace the node certificate by one an authority issued; ValueError if it is not this
    node's (another key, another name, another CA)."""
    cert = pki.cert_from_pem(cert_pem)
    pki.verify_issued_by(cert, identity.ca_cert)
    if not pki.public_keys_match(identity.node_key, cert):
        raise ValueError("the certificate is not for this node's key")
    if pki.node_name_of(cert) != identity.name:
        raise ValueError(f"the certificate names {pki.node_name_of(cert)!r}, not {identity.name!r}")
    _replace_file(identity.node_cert_path, pki.cert_to_pem(cert), mode=0o644)
    return _with_cert(identity, cert)


def ca_key_path(identity: NodeIdentity) -> Path:
    return identity.ca_cert_path.parent / "ca.key"


def install_ca_key(identity: NodeIdentity, key_pem: bytes) -> ec.EllipticCurvePrivateKey:
    """Store the CA key an authority sent (0600, atomically); ValueError unless it is this CA's."""
    key = pki.key_from_pem(key_pem)
    if not pki.public_keys_match(key, identity.ca_cert):
        raise ValueError("the key does not belong to this cluster's CA")
    _replace_file(ca_key_path(identity), pki.key_to_pem(key), mode=0o600)
    return key


def discard_ca_key(identity: NodeIdentity) -> bool:
    """Delete this node's copy of the CA key (it is no longer an authority); True if there was one."""
    path = ca_key_path(identity)
    existed = path.exists()
    path.unlink(missing_ok=True)
    return existed


def _replace_file(path: Path, data: bytes, *, mode: int) -> None:
    tmp = path.with_suffix(path.suffix + ".new")
    tmp.unlink(missing_ok=True)
    write_new_file(tmp, data, mode=mode)
    os.replace(tmp, path)


def _with_cert(identity: NodeIdentity, cert: x509.Certificate) -> NodeIdentity:
    return NodeIdentity(
        identity.name,
        identity.ca_cert,
        identity.ca_key,
        cert,
        identity.node_key,
        identity.ca_cert_path,
        identity.node_cert_path,
        identity.node_key_path,
    )


def _load_cert(path: Path) -> x509.Certificate:
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise StartupError(f"{path} is missing") from exc
    except PermissionError as exc:
        raise StartupError(f"{path} is not readable: {exc.strerror}") from exc
    try:
        return pki.cert_from_pem(data)
    except ValueError as exc:
        raise StartupError(f"{path} is not a PEM certificate") from exc


def _load_key(path: Path) -> ec.EllipticCurvePrivateKey:
    data = read_private_file(path)
    try:
        return pki.key_from_pem(data)
    except (ValueError, TypeError) as exc:
        raise StartupError(f"{path} is not a usable key: {exc}") from exc
