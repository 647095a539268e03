"""Durable enlistment: records per MAC, reports only for recorded MACs, the bound, derived states."""

from __future__ import annotations

from pathlib import Path

from appliance.store.database import Database
from pxe.enlistment import EnlistmentStore, MachineRecord, state_of, summary, view
from pxe.inventory import DiskInfo, DmiInfo, Inventory

A = "52:54:00:aa:bb:01"
B = "52:54:00:aa:bb:02"
INVENTORY = Inventory(
    name="box",
    cpu_count=4,
    memory_bytes=8 << 30,
    disks=[DiskInfo(name="sda", size_bytes=100), DiskInfo(name="sdb", size_bytes=50)],
    dmi=DmiInfo(vendor="ACME", product="R1"),
    version="0.1.0",
)


def test_fetching_records_and_counts_boots_keeping_the_first_sighting() -> None:
    store = EnlistmentStore.in_memory()
    store.fetched(A, "10.0.0.5", None, 100.0)
    store.fetched(A, "10.0.0.6", "rack1-n1", 200.0)
    store.fetched(B, "10.0.0.7", None, 150.0)
    record = store.get(A)
    assert record == MachineRecord(
        mac=A, ip="10.0.0.6", first_seen=100.0, last_seen=200.0, boots=2, name="rack1-n1", inventory=None,
        enlisted_at=None,
    )  # fmt: skip
    assert [r.mac for r in store.all()] == [A, B]  # most recently seen first


def test_only_a_recorded_mac_may_report_and_forgetting_removes_everything() -> None:
    store = EnlistmentStore.in_memory()
    assert store.enlisted(A, INVENTORY, 300.0) is False
    assert store.all() == []
    store.fetched(A, "10.0.0.5", None, 100.0)
    assert store.enlisted(A, INVENTORY, 300.0) is True
    record = store.get(A)
    assert record is not None
    assert (record.inventory, record.enlisted_at) == (INVENTORY, 300.0)
    assert store.forget(A) is True
    assert store.forget(A) is False
    assert store.get(A) is None


def test_the_table_keeps_only_the_most_recently_seen_machines() -> None:
    store = EnlistmentStore.in_memory(limit=3)
    for i in range(5):
        store.fetched(f"52:54:00:00:00:0{i}", "10.0.0.1", None, float(i))
    store.fetched("52:54:00:00:00:02", "10.0.0.1", None, 10.0)  # seen again: newest
    store.fetched("52:54:00:00:00:09", "10.0.0.1", None, 11.0)
    assert [r.mac for r in store.all()] == ["52:54:00:00:00:09", "52:54:00:00:00:02", "52:54:00:00:00:04"]


def test_records_survive_reopening_the_database(tmp_path: Path) -> None:
    db = Database.create(tmp_path / "node.db")
    EnlistmentStore(db).fetched(A, "10.0.0.5", "n1", 100.0)
    EnlistmentStore(db).enlisted(A, INVENTORY, 200.0)
    db.close()
    reopened = Database.open(tmp_path / "node.db")
    try:
        record = EnlistmentStore(reopened).get(A)
    finally:
        reopened.close()
    assert record is not None
    assert (record.name, record.inventory) == ("n1", INVENTORY)


def test_states_derive_from_settings_reports_and_membership() -> None:
    seen = MachineRecord(
        mac=A, ip="10.0.0.5", first_seen=1, last_seen=2, boots=1, name=None, inventory=None, enlisted_at=None
    )
    enlisted = MachineRecord(
        mac=A, ip="10.0.0.5", first_seen=1, last_seen=2, boots=1, name="n2", inventory=INVENTORY, enlisted_at=3
    )
    nobody = frozenset[str]().__contains__
    assert state_of(seen, configured=False, named=None, is_member=nobody) == "unknown"
    assert state_of(seen, configured=True, named="n2", is_member=nobody) == "known"
    assert state_of(enlisted, configured=False, named="n2", is_member=nobody) == "enlisted"
    assert state_of(enlisted, configured=True, named="n2", is_member={"n2"}.__contains__) == "joined"


def test_the_view_prefers_the_operators_name_and_the_list_drops_the_full_inventory() -> None:
    record = MachineRecord(
        mac=A, ip="10.0.0.5", first_seen=1, last_seen=2, boots=1, name="old", inventory=INVENTORY, enlisted_at=3
    )
    detail = view(record, configured_name="new", configured=True, is_member=lambda _n: False)
    assert (detail.name, detail.booted_name, detail.state) == ("new", "old", "enlisted")
    assert detail.hardware is not None
    assert (detail.hardware.disks, detail.hardware.disk_bytes, detail.hardware.vendor) == (2, 150, "ACME")
    listed = summary(detail)
    assert not hasattr(listed, "inventory")
    assert listed.hardware == detail.hardware
    # The reported name ("box") never decides anything: without settings the booted name is used.
    assert view(record, configured_name=None, configured=False, is_member=lambda _n: False).name == "old"
