"""A data dir holding a lone cluster nobody used: what a node told to join may give up.

A machine booted before anyone decided what it is (an ISO boot without `debvisor.join=`, a
PXE boot from a standalone `python -m pxe serve`, or from a release before enrolment) founds a
one-node cluster on its data partition. Later given a join token, or a PXE enrolment
credential, it would otherwise open that cluster again on every boot and never join. So a
start that carries `--join` / `debvisor.join=` or `debvisor.enrol=` on a data dir holding a
node gives that node up for the join, but only when all of this holds (`judge`, pure;
`inspect` reads it):

- it founded its cluster (it joined none) and no other node ever joined it (no redeemed join
  token, no other member's state or certificate, no other authority);
- nobody used it: the bootstrap admin is the only account and still has to change its initial
  password (so nobody could log in and act), no API or join tokens, no network or PXE settings,
  nothing in the configuration map but what founding and running alone write (its own
  certificates, its own authority designation, the admin), tombstones included;
- the directory holds only the node's own files.

Anything else is a node in use: it is opened as it is and the token is ignored (and logged),
as before. Giving up deletes the lone node's files (`discard`), after the join succeeded:
its CA and keys certify nothing anyone relies on. Deliberately left out: giving up a cluster
that anyone used, whatever an operator or a boot parameter says.
"""

from __future__ import annotations

import shutil
import sqlite3
from dataclasses import dataclass, field

import msgspec

from appliance.auth.accounts import BOOTSTRAP_ADMIN, USER_KIND
from appliance.auth.types import UserRecord
from appliance.cluster.authority import AUTHORITY_KIND
from appliance.datadir import (
    ADMIN_PASSWORD_NAME,
    DB_NAME,
    ENROLMENT_NAME,
    INIT_MARKER,
    LOCK_NAME,
    PKI_DIR,
    DataDir,
)
from appliance.errors import StartupError
from appliance.identity.registry import CERT_KIND, CertRecord
from appliance.store.database import Database

NETCONFIG_DIR = "netconfig"
# What a lone node's data dir may hold (netconfig/ only its lock files: no network set).
_OWN_FILES = frozenset(
    {
        DB_NAME,
        f"{DB_NAME}-wal",
        f"{DB_NAME}-shm",
        PKI_DIR,
        ADMIN_PASSWORD_NAME,
        NETCONFIG_DIR,
        LOCK_NAME,
        ENROLMENT_NAME,
    }
)
_KEEP = frozenset({LOCK_NAME, ENROLMENT_NAME})  # the lock is held; the enrolment is the new wait's


@dataclass(frozen=True)
class ConfigRow:
    kind: str
    key: str
    value: bytes
    deleted: bool


@dataclass(frozen=True)
class Snapshot:
    """What `judge` looks at, read from a data dir."""

    name: str
    cluster_id: str
    meta: dict[str, str]
    config: list[ConfigRow]
    state_owners: set[str]
    local_rows: dict[str, int]  # table -> rows: join redemptions, PXE machines and enrolments
    files: set[str]
    netconfig_files: set[str] = field(default_factory=set)  # file names under netconfig/


@dataclass(frozen=True)
class LoneCluster:
    """A lone cluster nobody used, found in a data dir."""

    name: str
    cluster_id: str


def judge(snap: Snapshot) -> str | None:
    """Why the data dir's node is in use (must be kept), or None: a lone cluster nobody used."""
    foreign = sorted(snap.files - _OWN_FILES)
    busy = [table for table, rows in sorted(snap.local_rows.items()) if rows]
    checks = [
        ("joined_via" in snap.meta, "it joined that cluster"),
        (bool(foreign), f"the data dir holds {', '.join(foreign[:3])}"),
        (bool(snap.netconfig_files - {LOCK_NAME}), "its host networking was configured"),
        (bool(busy), f"its {', '.join(busy)} table is not empty"),
        (bool(snap.state_owners - {snap.name}), "other nodes were members of its cluster"),
    ]
    for failed, reason in checks:
        if failed:
            return reason
    return next((r for r in (_used_by(row, snap.name) for row in snap.config) if r is not None), None)


def _used_by(row: ConfigRow, name: str) -> str | None:
    """Why this configuration entry shows the cluster was used or shared, or None."""
    if row.deleted:
        return f"its configuration had a {row.kind} {row.key!r}, since deleted"
    if row.kind == AUTHORITY_KIND:
        return None if row.key == name else f"{row.key!r} is one of its authorities"
    if row.kind not in (USER_KIND, CERT_KIND):
        return f"its configuration holds a {row.kind} ({row.key!r})"
    try:
        return _cert_used(row, name) if row.kind == CERT_KIND else _user_used(row)
    except msgspec.DecodeError:
        return f"its {row.kind} {row.key!r} cannot be read"


def _cert_used(row: ConfigRow, name: str) -> str | None:
    cert = msgspec.json.decode(row.value, type=CertRecord)
    return None if cert.name == name else f"it issued a certificate to {cert.name!r}"


def _user_used(row: ConfigRow) -> str | None:
    user = msgspec.json.decode(row.value, type=UserRecord)
    if row.key != BOOTSTRAP_ADMIN or user.name != BOOTSTRAP_ADMIN:
        return f"it has the account {row.key!r}"
    return None if user.must_change_password else f"its {BOOTSTRAP_ADMIN} changed the initial password"


_LOCAL_TABLES = ("join_redemptions", "pxe_machines", "pxe_enrolments")


def inspect(datadir: DataDir) -> tuple[LoneCluster | None, str]:
    """The lone cluster nobody used in `datadir` (None if the node is in use), and a reason for the log."""
    snap = _read(datadir)
    if snap is None:
        return None, "the data dir holds no complete node"
    reason = judge(snap)
    if reason is not None:
        return None, f"node {snap.name} of cluster {snap.cluster_id} is kept: {reason}"
    return LoneCluster(snap.name, snap.cluster_id), f"node {snap.name} founded cluster {snap.cluster_id}, unused"


def _read(datadir: DataDir) -> Snapshot | None:
    if not datadir.db_path.is_file() or (datadir.root / INIT_MARKER).exists():
        return None
    try:
        db = Database.open(datadir.db_path)
    except StartupError:
        return None
    try:
        conn = db.conn
        meta = {str(k): str(v) for k, v in conn.execute("SELECT key, value FROM node_meta")}
        if "name" not in meta or "cluster_id" not in meta:
            return None
        config = [
            ConfigRow(str(kind), str(key), bytes(value), bool(deleted))
            for kind, key, value, deleted in conn.execute("SELECT kind, key, value, deleted FROM config")
        ]
        owners = {str(row[0]) for row in conn.execute("SELECT DISTINCT owner FROM node_state")}
        local = {t: int(conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]) for t in _LOCAL_TABLES}  # noqa: S608
    except sqlite3.Error:
        return None
    finally:
        db.close()
    netconfig = datadir.root / NETCONFIG_DIR
    netconfig_files = {p.name for p in netconfig.rglob("*") if not p.is_dir()} if netconfig.is_dir() else set()
    files = {p.name for p in datadir.root.iterdir()}
    return Snapshot(meta["name"], meta["cluster_id"], meta, config, owners, local, files, netconfig_files)


def discard(datadir: DataDir) -> None:
    """Delete the lone node's files (the caller holds the data dir's lock and checked `inspect`)."""
    for entry in datadir.root.iterdir():
        if entry.name in _KEEP:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
