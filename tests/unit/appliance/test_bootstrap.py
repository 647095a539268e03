"""First start initialises a node; later starts reuse it; anything else is refused untouched."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import hashlib
import ipaddress
import os
import stat
from pathlib import Path

import msgspec
import pytest

from appliance.auth.passwords import verify_password
from appliance.auth.types import UserRecord
from appliance.bootstrap import certificate_addresses, open_node
from appliance.datadir import ENROLMENT_NAME, DataDir
from appliance.errors import StartupError
from appliance.identity import pki
from appliance.settings import parse_host_port
from tests.unit.appliance.conftest import HOST_ADDRESSES, settings_for


def _snapshot(root: Path) -> dict[str, str]:
    """Every file under root with its content hash and mode: to prove nothing was written."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() + oct(p.stat().st_mode)
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != "lock"
    }


def test_first_start_creates_private_identity_db_and_admin(tmp_path: Path) -> None:
    data = tmp_path / "data"
    node = open_node(settings_for(data), HOST_ADDRESSES)
    try:
        assert node.created
        assert node.name == "n1"
        assert stat.S_IMODE(data.stat().st_mode) == 0o700
        for secret in ("pki/ca.key", "pki/node.key", "initial-admin-password", "debvisor.db"):
            assert stat.S_IMODE((data / secret).stat().st_mode) == 0o600, secret
        password = (data / "initial-admin-password").read_text().strip()
        assert password == node.initial_admin_password
        raw = node.db.conn.execute("SELECT value FROM config WHERE kind = 'user' AND key = 'admin'").fetchone()[0]
        admin = msgspec.json.decode(raw, type=UserRecord)
        assert admin.role == "admin"
        assert admin.must_change_password
        assert password not in raw.decode()
        assert verify_password(admin.password_hash, password)
        assert not (data / ".initialising").exists()
    finally:
        node.close()


def test_second_start_reuses_everything(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = open_node(settings_for(data), HOST_ADDRESSES)
    identity = (first.node_id, first.cluster_id, pki.fingerprint(first.identity.ca_cert))
    first.close()
    before = _snapshot(data)
    second = open_node(settings_for(data, name=None), HOST_ADDRESSES)
    try:
        assert not second.created
        assert second.initial_admin_password is None
        assert (second.node_id, second.cluster_id, pki.fingerprint(second.identity.ca_cert)) == identity
        assert second.name == "n1"
    finally:
        second.close()
    after = _snapshot(data)
    assert {k: v for k, v in after.items() if "debvisor.db" not in k} == {
        k: v for k, v in before.items() if "debvisor.db" not in k
    }


def test_foreign_directory_is_refused_and_untouched(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "notes.txt").write_text("mine")
    before = _snapshot(data)
    with pytest.raises(StartupError, match="not a DebVisor data dir"):
        open_node(settings_for(data), HOST_ADDRESSES)
    assert _snapshot(data) == before


def test_interrupted_initialisation_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "data"
    open_node(settings_for(data), HOST_ADDRESSES).close()
    (data / ".initialising").write_bytes(b"")
    with pytest.raises(StartupError, match="interrupted"):
        open_node(settings_for(data), HOST_ADDRESSES)


@pytest.mark.parametrize("damage", ["garbage", "missing", "other_key"])
def test_damaged_node_key_is_refused_and_untouched(tmp_path: Path, damage: str) -> None:
    data = tmp_path / "data"
    open_node(settings_for(data), HOST_ADDRESSES).close()
    key = data / "pki" / "node.key"
    if damage == "garbage":
        key.write_bytes(b"-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n")
    elif damage == "missing":
        key.unlink()
    else:
        key.write_bytes(pki.key_to_pem(pki.new_key()))
    before = _snapshot(data)
    with pytest.raises(StartupError, match=r"node\.key"):
        open_node(settings_for(data), HOST_ADDRESSES)
    assert _snapshot(data) == before


def test_key_readable_by_others_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "data"
    open_node(settings_for(data), HOST_ADDRESSES).close()
    os.chmod(data / "pki" / "ca.key", 0o644)
    with pytest.raises(StartupError, match="chmod 600"):
        open_node(settings_for(data), HOST_ADDRESSES)


def test_cert_from_another_cluster_is_refused(tmp_path: Path) -> None:
    data, other = tmp_path / "data", tmp_path / "other"
    open_node(settings_for(data), HOST_ADDRESSES).close()
    open_node(settings_for(other), HOST_ADDRESSES).close()
    (data / "pki" / "node.crt").unlink()
    (data / "pki" / "node.crt").write_bytes((other / "pki" / "node.crt").read_bytes())
    (data / "pki" / "node.key").unlink()
    (data / "pki" / "node.key").write_bytes((other / "pki" / "node.key").read_bytes())
    os.chmod(data / "pki" / "node.key", 0o600)
    with pytest.raises(StartupError, match="CA"):
        open_node(settings_for(data), HOST_ADDRESSES)


def test_newer_database_is_refused(tmp_path: Path) -> None:
    import sqlite3

    data = tmp_path / "data"
    open_node(settings_for(data), HOST_ADDRESSES).close()
    with contextlib.closing(sqlite3.connect(data / "debvisor.db")) as conn:
        conn.execute("PRAGMA user_version = 999")
    with pytest.raises(StartupError, match="newer than this debvisor"):
        open_node(settings_for(data), HOST_ADDRESSES)


def test_other_name_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "data"
    open_node(settings_for(data), HOST_ADDRESSES).close()
    with pytest.raises(StartupError, match="belongs to node 'n1', not 'n2'"):
        open_node(settings_for(data, name="n2"), HOST_ADDRESSES)


def test_a_boot_time_name_names_a_new_node_only(tmp_path: Path) -> None:
    # The kernel command line is a layer below the stored state: a node that has a name keeps
    # it when it reboots with another debvisor.name=, instead of refusing to start.
    data = tmp_path / "data"
    fresh = dataclasses.replace(settings_for(data, name=None), default_name="from-cmdline")
    node = open_node(fresh, HOST_ADDRESSES)
    assert node.name == "from-cmdline"
    node.close()
    again = open_node(dataclasses.replace(fresh, default_name="other"), HOST_ADDRESSES)
    assert again.name == "from-cmdline"
    again.close()


def test_one_process_per_data_dir(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = open_node(settings_for(data), HOST_ADDRESSES)
    try:
        with pytest.raises(StartupError, match="in use"):
            open_node(settings_for(data), HOST_ADDRESSES)
    finally:
        first.close()


def test_wildcard_listen_names_all_routable_host_addresses() -> None:
    addrs = certificate_addresses([parse_host_port("0.0.0.0:8443", 1)], HOST_ADDRESSES)
    assert {str(a) for a in addrs} == {"127.0.0.1", "::1", "192.0.2.10", "2001:db8::10"}
    specific = certificate_addresses([parse_host_port("192.0.2.99:8443", 1)], HOST_ADDRESSES)
    assert {str(a) for a in specific} == {"127.0.0.1", "::1", "192.0.2.99"}


def test_node_cert_is_reissued_when_the_listen_address_changes(tmp_path: Path) -> None:
    data = tmp_path / "data"
    open_node(settings_for(data), HOST_ADDRESSES).close()
    node = open_node(settings_for(data, api="198.51.100.7:8443"), HOST_ADDRESSES)
    try:
        assert ipaddress.ip_address("198.51.100.7") in pki.san_addresses(node.identity.node_cert)
        assert ipaddress.ip_address("198.51.100.7") in pki.san_addresses(
            pki.cert_from_pem((data / "pki" / "node.crt").read_bytes())
        )
    finally:
        node.close()


def test_node_cert_is_renewed_before_expiry(tmp_path: Path) -> None:
    data = tmp_path / "data"
    open_node(settings_for(data), HOST_ADDRESSES).close()
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=350)
    node = open_node(settings_for(data), HOST_ADDRESSES, clock=later.timestamp)
    try:
        assert node.identity.node_cert.not_valid_after_utc > later + dt.timedelta(days=300)
    finally:
        node.close()


def test_a_data_dir_holding_only_a_waiting_enrolment_is_fresh(tmp_path: Path) -> None:
    # A PXE-booted machine keeps its poll secret in the data dir while it waits for approval
    # (the one place the service may write under ProtectSystem=strict); the join that follows
    # must still find the directory fresh, and anything else makes it not fresh.
    datadir = DataDir(tmp_path / "data")
    datadir.root.mkdir()
    (datadir.root / ENROLMENT_NAME).write_text("{}")
    assert datadir.is_fresh()
    (datadir.root / "debvisor.db").write_bytes(b"")
    assert not datadir.is_fresh()


def test_a_joined_authority_keeps_its_certificate_across_restarts(tmp_path: Path) -> None:
    """The certificate a join issues names what the node's own rule asks for (its addresses and
    loopback): an authority that restarts has no reason to re-issue it (it used to, every time
    the first restart after its join, for loopback)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from appliance.cluster.join import JoinRequest, JoinResponse, JoinService, JoinToken
    from appliance.identity.store import install_ca_key
    from appliance.store.config import ConfigStore
    from appliance.store.hlc import HybridClock

    seed = open_node(settings_for(tmp_path / "seed", name="seed"), HOST_ADDRESSES)
    try:
        store = ConfigStore(seed.db, HybridClock(seed.node_id))
        joins = JoinService(
            store=store, db=seed.db, identity=seed.identity, cluster_id=seed.cluster_id, api_seeds=lambda: ["seed"]
        )

        def join(token: JoinToken, *, name: str, key: ec.EllipticCurvePrivateKey, **addrs: str) -> JoinResponse:
            csr = pki.new_csr(key, name).public_bytes(serialization.Encoding.PEM).decode()
            request = JoinRequest(token_id=token.id, secret=token.secret, name=name, csr_pem=csr, **addrs)
            return joins.admit(request, name_in_use=lambda _: False, gossip_seeds=[])

        data = tmp_path / "joined"
        settings = dataclasses.replace(
            settings_for(data, name="j1", api="192.0.2.20:8443"),
            gossip=parse_host_port("192.0.2.20:7946", 7946),
            join=joins.create_token(created_by="admin").token,
        )
        joined = open_node(settings, HOST_ADDRESSES, joiner=join)
        assert joined.cert_addresses  # the keeper checks them during this first run too
        assert set(joined.cert_addresses) <= pki.san_addresses(joined.identity.node_cert)
        assert seed.identity.ca_key is not None
        install_ca_key(joined.identity, pki.key_to_pem(seed.identity.ca_key))  # as a designated authority
        joined.close()
        issued = (data / "pki" / "node.crt").read_bytes()
        for _ in range(2):
            again = open_node(dataclasses.replace(settings, join=None), HOST_ADDRESSES)
            assert again.identity.ca_key is not None
            again.close()
            assert (data / "pki" / "node.crt").read_bytes() == issued
    finally:
        seed.close()
