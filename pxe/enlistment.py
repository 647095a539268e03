"""Durable enlistment: the machines that fetched a boot script from this node, in its SQLite.

A machine is recorded when it fetches its per-MAC script (`fetched`: last IP, first and last
seen, boot count, the name its script carried) and completed when the booted image reports its
hardware (`enlisted`). Only a MAC already recorded may report, so a host that never booted from
this node cannot add rows. The table keeps the `MAX_MACHINES` most recently seen machines and
drops the oldest beyond that: a site's racks fit many times over, a flood of forged DHCP/HTTP
MACs cannot grow the database without bound.

A machine's state is not stored but derived when read (`state_of`), so it never goes stale:
`unknown` (no per-MAC settings), `known` (settings exist), `enlisted` (it reported an
inventory), then its enrolment (`pxe.enrolment`) when it has one: `pending` (waits for
approval), `approved` (approved; its join token is handed over on its next poll, or was),
`refused`, `expired` (nobody approved it in time); and `joined` (a cluster member carries the
name an operator gave it, or the one its enrolment was approved under). The name that decides
`joined` is the operator's (settings, approval, or the one its script carried), never the
reported one: reports are display only.

Deliberately left out: replication (the table is this node's, like its dnsmasq leases) and the
per-MAC settings themselves (`pxe.service.PxeSettings.machines`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import msgspec

from pxe.enrolment import EnrolmentView
from pxe.inventory import Inventory
from pxe.sqlite import Database, MemoryDatabase

MAX_MACHINES = 4096

MachineState = Literal["unknown", "known", "enlisted", "pending", "approved", "refused", "expired", "joined"]

_INVENTORY = msgspec.json.Decoder(Inventory)
_SELECT = "SELECT mac, ip, first_seen, last_seen, boots, name, inventory, enlisted_at FROM pxe_machines"


class MachineRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One stored row."""

    mac: str
    ip: str
    first_seen: float
    last_seen: float
    boots: int
    name: str | None  # the name its last script carried
    inventory: Inventory | None
    enlisted_at: float | None


class HardwareSummary(msgspec.Struct, frozen=True, kw_only=True):
    """A reported inventory in one line's worth of fields, for the machine list."""

    cpu_count: int
    memory_bytes: int
    disks: int
    disk_bytes: int
    vendor: str
    product: str
    version: str

    @classmethod
    def of(cls, inventory: Inventory) -> HardwareSummary:
        return cls(
            cpu_count=inventory.cpu_count,
            memory_bytes=inventory.memory_bytes,
            disks=len(inventory.disks),
            disk_bytes=sum(d.size_bytes for d in inventory.disks),
            vendor=inventory.dmi.vendor,
            product=inventory.dmi.product,
            version=inventory.version,
        )


class EnlistedMachine(msgspec.Struct, frozen=True, kw_only=True):
    """A machine that booted from this node, as the machine list shows it."""

    mac: str
    state: MachineState
    name: str | None  # the operator's name for it (its settings, else what its script carried)
    ip: str  # the address it last fetched its script from
    first_seen: float  # Unix time
    last_seen: float
    boots: int  # scripts fetched
    enlisted_at: float | None  # when it last reported its inventory
    hardware: HardwareSummary | None
    enrolment: EnrolmentView | None = None  # None: it never enrolled


class EnlistedMachineDetail(EnlistedMachine, frozen=True, kw_only=True):
    """One machine with everything it reported."""

    booted_name: str | None  # the name its last script carried
    inventory: Inventory | None


def state_of(
    record: MachineRecord,
    *,
    configured: bool,
    named: str | None,
    is_member: Callable[[str], bool],
    enrolment: EnrolmentView | None = None,
) -> MachineState:
    """The state of a recorded machine: joined > its enrolment > enlisted > known > unknown."""
    if named is not None and is_member(named):
        return "joined"
    if enrolment is not None:
        return "approved" if enrolment.state == "issued" else enrolment.state  # type: ignore[return-value]
    if record.inventory is not None:
        return "enlisted"
    return "known" if configured else "unknown"


def view(
    record: MachineRecord,
    *,
    configured_name: str | None,
    configured: bool,
    is_member: Callable[[str], bool],
    enrolment: EnrolmentView | None = None,
) -> EnlistedMachineDetail:
    """The API's view of a record, given the machine's settings, its enrolment and who is a cluster member."""
    name = configured_name if configured_name is not None else record.name
    if enrolment is not None and enrolment.name is not None:
        name = enrolment.name  # approval decided it: what it joins under
    return EnlistedMachineDetail(
        mac=record.mac,
        state=state_of(record, configured=configured, named=name, is_member=is_member, enrolment=enrolment),
        name=name,
        ip=record.ip,
        first_seen=record.first_seen,
        last_seen=record.last_seen,
        boots=record.boots,
        enlisted_at=record.enlisted_at,
        hardware=HardwareSummary.of(record.inventory) if record.inventory is not None else None,
        enrolment=enrolment,
        booted_name=record.name,
        inventory=record.inventory,
    )


def summary(detail: EnlistedMachineDetail) -> EnlistedMachine:
    """The list entry of a machine (its summary, without the full inventory)."""
    fields = msgspec.structs.asdict(detail)
    del fields["booted_name"], fields["inventory"]
    return EnlistedMachine(**fields)


# The table as the node's migrations leave it (appliance/store/migrations.py), for `in_memory`.
SCHEMA = """
CREATE TABLE pxe_machines (
    mac          TEXT PRIMARY KEY,
    ip           TEXT NOT NULL,
    first_seen   REAL NOT NULL,
    last_seen    REAL NOT NULL,
    boots        INTEGER NOT NULL,
    name         TEXT,
    inventory    BLOB,
    enlisted_at  REAL
) STRICT;
CREATE INDEX pxe_machines_last_seen ON pxe_machines (last_seen);"""


class EnlistmentStore:
    """The `pxe_machines` table of a node database (use from the event loop's thread)."""

    def __init__(self, db: Database, *, limit: int = MAX_MACHINES) -> None:
        self._db = db
        self._limit = limit

    @classmethod
    def in_memory(cls, *, limit: int = MAX_MACHINES) -> EnlistmentStore:
        """A store that lasts as long as the process (`python -m pxe serve`, tests)."""
        return cls(MemoryDatabase(SCHEMA), limit=limit)

    def fetched(self, mac: str, ip: str, name: str | None, at: float) -> None:
        """Record that `mac` fetched its boot script from `ip`, carrying `name`."""
        with self._db.transaction() as conn:
            conn.execute(
                "INSERT INTO pxe_machines (mac, ip, first_seen, last_seen, boots, name) VALUES (?, ?, ?, ?, 1, ?)"
                " ON CONFLICT (mac) DO UPDATE SET ip = excluded.ip, last_seen = excluded.last_seen,"
                " boots = pxe_machines.boots + 1, name = excluded.name",
                (mac, ip, at, at, name),
            )
            count = int(conn.execute("SELECT count(*) FROM pxe_machines").fetchone()[0])
            if count > self._limit:
                conn.execute(
                    "DELETE FROM pxe_machines WHERE mac IN"
                    " (SELECT mac FROM pxe_machines ORDER BY last_seen ASC, mac LIMIT ?)",
                    (count - self._limit,),
                )

    def enlisted(self, mac: str, inventory: Inventory, at: float) -> bool:
        """Store what a recorded machine reported; False (nothing stored) for a MAC never seen."""
        with self._db.transaction() as conn:
            cursor = conn.execute(
                "UPDATE pxe_machines SET inventory = ?, enlisted_at = ? WHERE mac = ?",
                (msgspec.json.encode(inventory), at, mac),
            )
        return cursor.rowcount > 0

    def get(self, mac: str) -> MachineRecord | None:
        row = self._db.conn.execute(_SELECT + " WHERE mac = ?", (mac,)).fetchone()
        return None if row is None else _record(row)

    def all(self) -> list[MachineRecord]:
        """Every recorded machine, most recently seen first."""
        rows = self._db.conn.execute(_SELECT + " ORDER BY last_seen DESC, mac").fetchall()
        return [_record(row) for row in rows]

    def forget(self, mac: str) -> bool:
        """Delete a machine's record; False if there was none."""
        with self._db.transaction() as conn:
            cursor = conn.execute("DELETE FROM pxe_machines WHERE mac = ?", (mac,))
        return cursor.rowcount > 0


def _record(row: tuple[object, ...]) -> MachineRecord:
    mac, ip, first_seen, last_seen, boots, name, inventory, enlisted_at = row
    decoded: Inventory | None = None
    if isinstance(inventory, bytes):
        try:
            decoded = _INVENTORY.decode(inventory)
        except msgspec.DecodeError:  # written by a newer version (fields this one does not know): absent
            decoded = None
    return MachineRecord(
        mac=str(mac),
        ip=str(ip),
        first_seen=float(str(first_seen)),
        last_seen=float(str(last_seen)),
        boots=int(str(boots)),
        name=None if name is None else str(name),
        inventory=decoded,
        enlisted_at=None if enlisted_at is None else float(str(enlisted_at)),
    )
