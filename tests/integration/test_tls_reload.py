"""A renewed node certificate reaches HTTPS without a restart (appliance/server.py `reload_on_renewal`).

A real node serves; its certificate is re-issued on disk by the function its keeper uses to
renew its own certificate near expiry (`refresh_node_cert`, atomic replace). A fresh TLS
connection must then see the new certificate, served by the same process, while a client
that kept requesting through the switch saw no failure. A replaced pair that does not load
is not taken: HTTPS keeps the certificate it has.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import ssl
import threading
from pathlib import Path

import httpx
import pytest
from cryptography import x509

from appliance.datadir import DataDir
from appliance.identity import pki
from appliance.identity.store import load_identity, refresh_node_cert
from tests.clusterlab import wait_until
from tests.nodeproc import NodeProcess

pytestmark = pytest.mark.integration


def _served_fingerprint(node: NodeProcess) -> str:
    """The fingerprint of the certificate a new TLS connection to the API is shown."""
    context = ssl.create_default_context(cafile=str(node.data_dir / "pki" / "ca.crt"))
    context.check_hostname = False
    with (
        socket.create_connection(("127.0.0.1", node.api_port), timeout=5) as raw,
        context.wrap_socket(raw) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return pki.fingerprint(x509.load_der_x509_certificate(der))


def _file_fingerprint(path: Path) -> str:
    return pki.fingerprint(pki.cert_from_pem(path.read_bytes()))


class _Poller(threading.Thread):
    """Requests GET /api/v1/node over one keep-alive client until stopped; counts failures."""

    def __init__(self, node: NodeProcess) -> None:
        super().__init__(daemon=True)
        self.client = node.admin_client()
        self.stop_event = threading.Event()
        self.done = 0
        self.failures: list[str] = []

    def run(self) -> None:
        with self.client:
            for _ in range(100_000):  # bounded; stopped long before
                if self.stop_event.wait(0.15):  # under the per-user rate limit (10/s)
                    return
                try:
                    status = self.client.get("/api/v1/node").status_code
                except httpx.HTTPError as exc:
                    self.failures.append(repr(exc))
                    continue
                self.done += 1
                if status != 200:
                    self.failures.append(str(status))


def test_a_renewed_certificate_is_served_without_a_restart(tmp_path: Path) -> None:
    with NodeProcess(tmp_path / "node", name="n1") as node:
        node.wait_ready()
        assert node.proc is not None
        pid = node.proc.pid
        cert_path = node.data_dir / "pki" / "node.crt"
        before = _served_fingerprint(node)
        assert before == _file_fingerprint(cert_path)
        poller = _Poller(node)
        poller.start()
        try:
            wait_until(lambda: poller.done >= 5, timeout=10)
            # As the keeper renews its own certificate when the node gained an address (this node
            # holds the CA key); nearing expiry takes the same path.
            identity = load_identity(DataDir(node.data_dir), "n1")
            gained = ipaddress.ip_address("127.0.0.2")
            renewed = refresh_node_cert(identity, [gained], dt.datetime.now(dt.UTC))
            assert gained in pki.san_addresses(renewed.node_cert)
            after = pki.fingerprint(renewed.node_cert)
            assert after != before
            assert _file_fingerprint(cert_path) == after
            wait_until(lambda: _served_fingerprint(node) == after, timeout=20, interval=0.2)
            served_by = poller.done
            wait_until(lambda: poller.done >= served_by + 15, timeout=20)  # past the old worker's end
        finally:
            poller.stop_event.set()
            poller.join(10)
        assert poller.failures == []
        assert node.proc.poll() is None
        assert node.proc.pid == pid
        assert all(_served_fingerprint(node) == after for _ in range(5))
        with node.admin_client() as client:
            assert client.get("/api/v1/node").json()["name"] == "n1"

        # A certificate whose key is not the node's is refused: the renewed one stays served.
        assert identity.ca_key is not None
        stranger = pki.issue_node_cert(
            identity.ca_key, identity.ca_cert, pki.new_key().public_key(), name="n1", addresses=[],
            now=dt.datetime.now(dt.UTC),
        )  # fmt: skip
        cert_path.write_bytes(pki.cert_to_pem(stranger))
        wait_until(lambda: "does not load" in node.stderr() + node.stdout(), timeout=20)
        assert _served_fingerprint(node) == after
        assert node.proc.poll() is None
