"""Bring a node's persistent state up: initialise a fresh data dir, or open and check one.

This is the only code that decides between "new node" and "existing node". On a fresh
directory it creates the cluster CA, the node key and certificate, the database and the
bootstrap admin, marking the directory as under initialisation until all of it exists; the
founder is the first authority and registers its own certificate. A joining node stores its
certificate and the CA certificate (never the CA key) and the settings its seed sent. On an
existing one it checks every piece and refuses (StartupError, one line) anything foreign,
corrupt, newer or inconsistent, without writing to it.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from appliance import lone
from appliance.auth.accounts import AccountService
from appliance.cluster import join_client
from appliance.cluster.authority import DEFAULT_SIZE, FOUNDER_SLOTS_KEY, Authorities
from appliance.cluster.join import JoinResponse, decode_token
from appliance.cluster.join_client import JoinError
from appliance.datadir import DataDir, write_new_file
from appliance.errors import StartupError
from appliance.identity import pki
from appliance.identity.registry import CertRegistry
from appliance.identity.store import (
    NodeIdentity,
    create_identity,
    load_identity,
    refresh_node_cert,
    write_joined_identity,
)
from appliance.node.enrol import enrol_before_join
from appliance.node.types import InterfaceAddress
from appliance.settings import HostPort, ServeSettings, default_node_name
from appliance.store.config import ConfigStore
from appliance.store.database import Database
from appliance.store.hlc import HybridClock

log = logging.getLogger(__name__)

API_ADVERTISE_KEY = "api_advertise"


@dataclass
class OpenedNode:
    """The node's persistent state, open and checked."""

    datadir: DataDir
    db: Database
    identity: NodeIdentity
    name: str
    node_id: str
    cluster_id: str
    created: bool
    initial_admin_password: str | None  # set only on the start that created the node
    gossip_seeds: list[str] = field(default_factory=list)  # from the seed, on the start that joined
    cert_addresses: list[pki.IPAddress] = field(default_factory=list)  # what the node certificate should name

    def close(self) -> None:
        self.db.close()
        self.datadir.unlock()


def certificate_addresses(listens: list[HostPort], host_addresses: list[InterfaceAddress]) -> list[pki.IPAddress]:
    """Addresses the node certificate must name: each listen address, or all host addresses for a wildcard.

    Loopback is always included so that local tools verify the certificate on 127.0.0.1/::1.
    IPv6 link-local addresses are left out: they need a zone that certificates cannot carry.
    """
    result: set[pki.IPAddress] = set(pki.LOOPBACK_ADDRESSES)
    if any(listen.is_wildcard for listen in listens):
        for item in host_addresses:
            addr = ipaddress.ip_address(item.address)
            if not addr.is_link_local:
                result.add(addr)
    result.update(listen.host for listen in listens if not listen.is_wildcard)
    return sorted(result, key=lambda a: (a.version, int(a)))


def routable_ips(host_addresses: list[InterfaceAddress]) -> list[str]:
    """Host addresses peers could reach: global scope first, IPv4 before IPv6."""
    found = [a for a in host_addresses if a.scope == "global"]
    return [a.address for a in sorted(found, key=lambda a: a.family != "inet")]


Joiner = Callable[..., JoinResponse]


def open_node(
    settings: ServeSettings,
    host_addresses: list[InterfaceAddress],
    clock: Callable[[], float] = time.time,
    joiner: Joiner = join_client.join,
    enroller: Callable[[ServeSettings], ServeSettings] = enrol_before_join,
) -> OpenedNode:
    """Open the node in `settings.data_dir`, initialising it first if it is fresh.

    A fresh node founds a new cluster, or with `settings.join` (or a PXE enrolment) joins the
    token's cluster. A data dir holding a node is opened as it is, unless told to join while it
    holds a lone cluster nobody used: that is given up for the join (`appliance.lone`).
    """
    datadir = DataDir(settings.data_dir)
    os.umask(0o077)
    addresses = certificate_addresses([settings.api, settings.gossip], host_addresses)
    now = dt.datetime.fromtimestamp(clock(), dt.UTC)
    if datadir.is_fresh():
        settings = enroller(settings)  # a PXE-booted machine waits for approval here
        if settings.join:
            fresh = _initialise_joined(datadir, settings, routable_ips(host_addresses), now, joiner)
        else:
            fresh = _initialise(datadir, settings, addresses, now)
        fresh.cert_addresses = addresses  # the keeper renews a certificate missing one, this run too
        return fresh
    datadir.check_initialised()
    datadir.lock()
    try:
        if settings.join or settings.enrol:
            joined = _join_instead_of_lone(
                datadir, settings, routable_ips(host_addresses), now, joiner=joiner, enroller=enroller
            )
            if joined is not None:
                joined.cert_addresses = addresses
                return joined
        opened = _open_existing(datadir, settings, addresses, now)
        opened.cert_addresses = addresses
        return opened
    except BaseException:
        datadir.unlock()
        raise


def _join_instead_of_lone(
    datadir: DataDir,
    settings: ServeSettings,
    ips: list[str],
    now: dt.datetime,
    *,
    joiner: Joiner,
    enroller: Callable[[ServeSettings], ServeSettings],
) -> OpenedNode | None:
    """Told to join (`--join`, or a PXE enrolment) while the data dir holds a node: join instead
    if that node is a lone cluster nobody used (`appliance.lone`), else None (open it as it is).

    The caller holds the data dir's lock. A PXE-booted machine enrols and waits for approval
    first; the lone node's files go only once the join succeeded."""
    found, reason = lone.inspect(datadir)
    what = "--join" if settings.join else "debvisor.enrol="
    if found is None:
        log.info(
            "data dir already holds a node (%s); %s is ignored", reason, what, extra={"data_dir": str(datadir.root)}
        )
        return None
    log.warning(
        "data dir holds a lone cluster nobody used (%s): %s; it is given up once this machine joins",
        reason,
        "enrolling with the PXE boot server" if settings.enrol and not settings.join else "joining with the token",
        extra={"data_dir": str(datadir.root)},
    )
    settings = enroller(settings)
    if not settings.join:
        return None
    return _initialise_joined(datadir, settings, ips, now, joiner, replacing=found)


def _create_database(
    datadir: DataDir, *, name: str, node_id: str, cluster_id: str, now: dt.datetime, extra: dict[str, str] | None = None
) -> Database:
    """The new node's database (0600) with its identity recorded in node_meta."""
    db = Database.create(datadir.db_path)
    os.chmod(datadir.db_path, 0o600)
    meta = {"name": name, "node_id": node_id, "cluster_id": cluster_id, "created_at": now.isoformat(), **(extra or {})}
    with db.transaction() as conn:
        conn.executemany("INSERT INTO node_meta (key, value) VALUES (?, ?)", list(meta.items()))
    return db


def _initialise(
    datadir: DataDir, settings: ServeSettings, addresses: list[pki.IPAddress], now: dt.datetime
) -> OpenedNode:
    name = settings.name or settings.default_name or default_node_name()
    try:
        datadir.create()
    except FileExistsError as exc:
        raise StartupError(f"data dir {datadir.root} is being initialised by another process") from exc
    except OSError as exc:
        raise StartupError(f"cannot create data dir {datadir.root}: {exc.strerror}") from exc
    datadir.lock()
    cluster_id, node_id = str(uuid.uuid4()), str(uuid.uuid4())
    identity = create_identity(datadir, name, cluster_id, addresses, now)
    # Only the founder gets default designations to make, counted in its local node_meta.
    slots = {FOUNDER_SLOTS_KEY: str(DEFAULT_SIZE - 1)}
    db = _create_database(datadir, name=name, node_id=node_id, cluster_id=cluster_id, now=now, extra=slots)
    store = ConfigStore(db, HybridClock(node_id))
    CertRegistry(store).register(identity.node_cert, issued_by=name, now=now.timestamp())
    assert identity.ca_key is not None  # a founder made the CA
    Authorities(store, identity.ca_cert, cluster_id).designate(
        name, ca_key=identity.ca_key, by=name, now=now.timestamp(), holds_key=True
    )
    accounts = AccountService(store, clock=now.timestamp)
    password = accounts.create_bootstrap_admin()
    write_new_file(datadir.admin_password_path, (password + "\n").encode(), mode=0o600)
    datadir.finish_initialisation()
    log.info("initialised new node", extra={"node": name, "node_id": node_id, "data_dir": str(datadir.root)})
    return OpenedNode(datadir, db, identity, name, node_id, cluster_id, True, password)


def _initialise_joined(
    datadir: DataDir,
    settings: ServeSettings,
    ips: list[str],
    now: dt.datetime,
    joiner: Joiner,
    *,
    replacing: lone.LoneCluster | None = None,
) -> OpenedNode:
    assert settings.join is not None
    try:
        token = decode_token(settings.join)
    except ValueError as exc:
        raise StartupError(f"--join: {exc}") from exc
    name = settings.name or settings.default_name or default_node_name()
    key = pki.new_key()
    try:
        response = joiner(
            token,
            name=name,
            key=key,
            gossip_address=settings.advertised(settings.gossip, ips),
            api_address=settings.advertised(settings.api, ips),
        )
    except JoinError as exc:
        raise StartupError(f"cannot join the cluster: {exc}") from exc
    extra = {"joined_via": ",".join(token.seeds)}
    if replacing is not None:
        lone.discard(datadir)
        extra["replaced_lone_cluster"] = replacing.cluster_id
        log.warning(
            "gave up the lone cluster nobody used",
            extra={"cluster_id": replacing.cluster_id, "node": replacing.name, "data_dir": str(datadir.root)},
        )
    try:
        datadir.create()
    except (FileExistsError, OSError) as exc:
        raise StartupError(f"cannot create data dir {datadir.root}: {exc}") from exc
    datadir.lock()
    node_id = str(uuid.uuid4())
    write_joined_identity(
        datadir,
        ca_cert_pem=response.ca_cert_pem.encode(),
        node_key=key,
        node_cert_pem=response.node_cert_pem.encode(),
    )
    db = _create_database(
        datadir,
        name=name,
        node_id=node_id,
        cluster_id=response.cluster_id,
        now=now,
        extra=extra,
    )
    store = ConfigStore(db, HybridClock(node_id))
    for entry in response.config:
        store.merge(entry.kind, entry.key, entry.value, entry.version, deleted=entry.deleted)
    datadir.finish_initialisation()
    identity = load_identity(datadir, name)
    log.info("joined cluster", extra={"node": name, "cluster_id": response.cluster_id, "seeds": ",".join(token.seeds)})
    return OpenedNode(datadir, db, identity, name, node_id, response.cluster_id, True, None, response.gossip_seeds)


def _open_existing(
    datadir: DataDir, settings: ServeSettings, addresses: list[pki.IPAddress], now: dt.datetime
) -> OpenedNode:
    db = Database.open(datadir.db_path)
    try:
        name, node_id, cluster_id = (db.get_meta(k) for k in ("name", "node_id", "cluster_id"))
        if name is None or node_id is None or cluster_id is None:
            raise StartupError(f"{datadir.db_path} lacks the node's identity (name, node_id, cluster_id)")
        if settings.name is not None and settings.name != name:
            raise StartupError(f"data dir {datadir.root} belongs to node {name!r}, not {settings.name!r}")
        identity = refresh_node_cert(load_identity(datadir, name), addresses, now)
        if identity.ca_key is not None:
            _register_own(ConfigStore(db, HybridClock(node_id)), identity, cluster_id, now)
    except BaseException:
        db.close()
        raise
    return OpenedNode(datadir, db, identity, name, node_id, cluster_id, False, None)


def _register_own(store: ConfigStore, identity: NodeIdentity, cluster_id: str, now: dt.datetime) -> None:
    """An authority registers a certificate it issued itself (a renewal at start-up).

    Also the upgrade from a version without registry or authority set: every node then holds
    the CA key; each registers its own certificate and, while the set is empty, becomes an
    authority (root on an authority's console narrows the set afterwards, and the others
    delete their copies).
    Empty means no entry verifies: entries from before designations were signed do not count."""
    registry = CertRegistry(store)
    if registry.get(identity.node_fingerprint) is None:
        registry.register(identity.node_cert, issued_by=identity.name, now=now.timestamp())
    authorities = Authorities(store, identity.ca_cert, cluster_id)
    if not authorities.names() and identity.ca_key is not None:
        authorities.designate(
            identity.name, ca_key=identity.ca_key, by=identity.name, now=now.timestamp(), holds_key=True
        )


@dataclass
class LocalState:
    """An initialised node's database opened by a local command, beside a running node.

    No lock is taken: SQLite serialises writers, and the running node notices changes to
    the configuration map within a second.
    """

    db: Database
    name: str
    node_id: str

    def close(self) -> None:
        self.db.close()


def open_local_state(data_dir: Path) -> LocalState:
    """Open the database of the node in `data_dir` for a local administrative command."""
    datadir = DataDir(data_dir)
    if datadir.is_fresh():
        raise StartupError(f"no node in {datadir.root}: start one with `debvisor serve` first")
    datadir.check_initialised()
    db = Database.open(datadir.db_path)
    name, node_id = db.get_meta("name"), db.get_meta("node_id")
    if name is None or node_id is None:
        db.close()
        raise StartupError(f"{datadir.db_path} lacks the node's identity (name, node_id)")
    return LocalState(db, name, node_id)
