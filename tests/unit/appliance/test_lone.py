"""A node told to join while its data dir holds a lone cluster nobody used gives that cluster
up and joins; a node anyone used, or that anyone joined, is opened as it is (appliance.lone)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from appliance import lone
from appliance.auth.accounts import BOOTSTRAP_ADMIN, AccountService
from appliance.auth.permissions import Role
from appliance.bootstrap import open_node
from appliance.cluster.join import JoinRequest, JoinResponse, JoinService, JoinToken
from appliance.datadir import DataDir
from appliance.errors import StartupError
from appliance.identity import pki
from appliance.settings import ServeSettings
from appliance.store.config import ConfigStore
from appliance.store.hlc import HybridClock
from tests.unit.appliance.conftest import HOST_ADDRESSES, settings_for


def _found(root: Path, name: str = "debvisor") -> str:
    """A lone node founded in `root` (as an unnamed boot makes one), stopped; its cluster id."""
    node = open_node(settings_for(root, name=name), HOST_ADDRESSES)
    cluster_id = node.cluster_id
    node.close()
    return cluster_id


class Seed:
    """A founder that admits joiners in process, as its join route would."""

    def __init__(self, root: Path) -> None:
        self.node = open_node(settings_for(root, name="seed"), HOST_ADDRESSES)
        self.store = ConfigStore(self.node.db, HybridClock(self.node.node_id))
        self.joins = JoinService(
            store=self.store, db=self.node.db, identity=self.node.identity, cluster_id=self.node.cluster_id,
            api_seeds=lambda: ["127.0.0.1:1"],
        )  # fmt: skip
        self.calls = 0

    def token(self) -> str:
        return self.joins.create_token(created_by="admin").token

    def join(self, token: JoinToken, *, name: str, key: ec.EllipticCurvePrivateKey, **_: str) -> JoinResponse:
        self.calls += 1
        csr = pki.new_csr(key, name).public_bytes(serialization.Encoding.PEM).decode()
        request = JoinRequest(
            token_id=token.id, secret=token.secret, name=name, csr_pem=csr,
            gossip_address="192.0.2.20:7946", api_address="192.0.2.20:8443",
        )  # fmt: skip
        return self.joins.admit(request, name_in_use=lambda _: False, gossip_seeds=["192.0.2.10:7946"])


@pytest.fixture
def seed(tmp_path: Path) -> Iterator[Seed]:
    made = Seed(tmp_path / "seed")
    yield made
    made.node.close()


def _refused_enrolment(settings: ServeSettings) -> ServeSettings:
    raise AssertionError("a node in use must not enrol")


def test_a_freshly_founded_node_is_a_lone_cluster_nobody_used(tmp_path: Path) -> None:
    cluster_id = _found(tmp_path / "data")
    found, _ = lone.inspect(DataDir(tmp_path / "data"))
    assert found == lone.LoneCluster("debvisor", cluster_id)


def _change_password(root: Path) -> None:
    node = open_node(settings_for(root, name=None), HOST_ADDRESSES)
    AccountService(ConfigStore(node.db, HybridClock(node.node_id))).set_password(BOOTSTRAP_ADMIN, "A-new-password-42")
    node.close()


def _add_user(root: Path) -> None:
    node = open_node(settings_for(root, name=None), HOST_ADDRESSES)
    accounts = AccountService(ConfigStore(node.db, HybridClock(node.node_id)))
    accounts.create_user("alice", Role.VIEWER, "Alice-password-42")
    node.close()


def _configure_network(root: Path) -> None:
    (root / "netconfig").mkdir(exist_ok=True)
    (root / "netconfig" / "desired.json").write_text("{}")


def _foreign_file(root: Path) -> None:
    (root / "notes.txt").write_text("mine")


@pytest.mark.parametrize(
    ("use", "reason"),
    [
        (_change_password, "changed the initial password"),
        (_add_user, "account 'alice'"),
        (_configure_network, "host networking was configured"),
        (_foreign_file, "notes.txt"),
    ],
)
def test_a_node_anyone_used_is_kept(tmp_path: Path, use: Callable[[Path], None], reason: str) -> None:
    root = tmp_path / "data"
    _found(root)
    use(root)
    found, why = lone.inspect(DataDir(root))
    assert found is None
    assert reason in why


def test_a_join_gives_up_a_lone_cluster_nobody_used(tmp_path: Path, seed: Seed) -> None:
    # "Boot first, name after": an unnamed first boot founded a cluster on the data disk; the
    # next start, told to join, joins instead of opening it, and again after a restart.
    root = tmp_path / "data"
    lone_id = _found(root)
    settings = dataclasses.replace(settings_for(root, name="rack1-n2"), join=seed.token())
    node = open_node(settings, HOST_ADDRESSES, joiner=seed.join)
    try:
        assert (node.name, node.cluster_id, node.created) == ("rack1-n2", seed.node.cluster_id, True)
        assert node.db.get_meta("replaced_lone_cluster") == lone_id
        assert node.db.get_meta("joined_via") == "127.0.0.1:1"
        assert not (root / "initial-admin-password").exists()  # the lone cluster's admin is gone
        assert pki.fingerprint(node.identity.ca_cert) == pki.fingerprint(seed.node.identity.ca_cert)
        node_id = node.node_id
    finally:
        node.close()
    again = open_node(dataclasses.replace(settings, join=seed.token()), HOST_ADDRESSES, joiner=seed.join)
    try:
        assert (again.node_id, again.created, seed.calls) == (node_id, False, 1)  # a member now: no second join
    finally:
        again.close()


def test_a_pxe_machine_enrols_first_and_joins_under_the_approved_name(tmp_path: Path, seed: Seed) -> None:
    root = tmp_path / "data"
    lone_id = _found(root)
    token = seed.token()

    def approved(settings: ServeSettings) -> ServeSettings:
        assert DataDir(root).db_path.exists()  # the lone cluster is still there while it waits
        return dataclasses.replace(settings, join=token, default_name="rack1-n3")

    enrolling = dataclasses.replace(settings_for(root, name=None), enrol="dve_" + "x" * 20)
    node = open_node(enrolling, HOST_ADDRESSES, joiner=seed.join, enroller=approved)
    try:
        assert (node.name, node.cluster_id) == ("rack1-n3", seed.node.cluster_id)
        assert node.db.get_meta("replaced_lone_cluster") == lone_id
    finally:
        node.close()


def test_a_refused_enrolment_leaves_the_lone_cluster_and_the_lock(tmp_path: Path) -> None:
    root = tmp_path / "data"
    lone_id = _found(root)

    def refused(settings: ServeSettings) -> ServeSettings:
        raise StartupError("cannot enrol with the PXE boot server: refused")

    enrolling = dataclasses.replace(settings_for(root, name=None), enrol="dve_" + "x" * 20)
    with pytest.raises(StartupError, match="refused"):
        open_node(enrolling, HOST_ADDRESSES, enroller=refused)
    node = open_node(settings_for(root, name=None), HOST_ADDRESSES)  # unlocked, untouched
    try:
        assert node.cluster_id == lone_id
    finally:
        node.close()


def test_a_used_node_ignores_the_join_and_does_not_enrol(tmp_path: Path, seed: Seed) -> None:
    root = tmp_path / "data"
    lone_id = _found(root)
    _change_password(root)
    enrolling = dataclasses.replace(settings_for(root, name=None), enrol="dve_" + "x" * 20)
    node = open_node(enrolling, HOST_ADDRESSES, joiner=seed.join, enroller=_refused_enrolment)
    node.close()
    joining = dataclasses.replace(settings_for(root, name=None), join=seed.token())
    node = open_node(joining, HOST_ADDRESSES, joiner=seed.join)
    try:
        assert (node.cluster_id, seed.calls) == (lone_id, 0)
    finally:
        node.close()
