"""Designations of authority nodes are believed only when the cluster CA key signed them.

A compromised member can write any entry into its configuration map (which gossips); these
tests show that what it can write without the CA key (an unsigned entry, its own node key's
signature, a signed entry with a field changed, another cluster's entry) is ignored by every
reader, that the console refuses a change of the set on a node without the key or one that
would strand the key, and that `holds_key` is signed with the key the announcing node holds.
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

import msgspec
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from appliance.cluster.authority import (
    AUTHORITY_KIND,
    HANDOVER_WINDOW,
    STRANDED,
    Authorities,
    Designation,
    change_refusal,
    sign,
    verify,
)
from appliance.identity import pki
from appliance.store.config import ConfigStore
from appliance.store.database import Database
from appliance.store.hlc import HybridClock

NOW = 1_800_000_000.0
CLUSTER = "cluster-1"


@pytest.fixture(scope="module")
def ca() -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    return pki.new_ca(CLUSTER, dt.datetime.fromtimestamp(NOW, dt.UTC))


@pytest.fixture
def store(tmp_path: Path) -> ConfigStore:
    return ConfigStore(Database.create(tmp_path / "db"), HybridClock("node"))


def test_a_signed_designation_verifies(ca: tuple[ec.EllipticCurvePrivateKey, x509.Certificate]) -> None:
    key, cert = ca
    entry = sign(key, CLUSTER, "n1", by="n0", at=NOW, requested_by="admin")
    assert verify(cert, CLUSTER, "n1", entry)
    # It survives the trip through the configuration map (JSON) unchanged.
    assert verify(cert, CLUSTER, "n1", msgspec.json.decode(msgspec.json.encode(entry), type=Designation))


@pytest.mark.parametrize(
    ("name", "cluster", "changes"),
    [
        ("n3", CLUSTER, {}),  # n1's designation copied under another node's name
        ("n1", "cluster-2", {}),  # a designation from another cluster (same CA key would be needed anyway)
        ("n1", CLUSTER, {"holds_key": True}),  # says it holds the key, not re-signed
        ("n1", CLUSTER, {"by": "n9"}),
        ("n1", CLUSTER, {"at": NOW + 1}),
        ("n1", CLUSTER, {"requested_by": "mallory"}),
        ("n1", CLUSTER, {"signature": ""}),  # unsigned
        ("n1", CLUSTER, {"signature": "not base64!"}),
    ],
)
def test_any_change_to_a_signed_designation_breaks_it(
    ca: tuple[ec.EllipticCurvePrivateKey, x509.Certificate], name: str, cluster: str, changes: dict[str, object]
) -> None:
    key, cert = ca
    entry = msgspec.structs.replace(sign(key, CLUSTER, "n1", by="n0", at=NOW), **changes)
    assert not verify(cert, cluster, name, entry)


def test_a_designation_signed_by_another_key_is_refused(
    ca: tuple[ec.EllipticCurvePrivateKey, x509.Certificate],
) -> None:
    _, cert = ca
    own_node_key = pki.new_key()  # what a compromised member holds
    other_ca_key, _ = pki.new_ca(CLUSTER, dt.datetime.fromtimestamp(NOW, dt.UTC))
    for key in (own_node_key, other_ca_key):
        assert not verify(cert, CLUSTER, "n3", sign(key, CLUSTER, "n3", by="n3", at=NOW, holds_key=True))


def test_a_member_writing_itself_into_the_set_is_ignored_and_logged_once(
    ca: tuple[ec.EllipticCurvePrivateKey, x509.Certificate], store: ConfigStore, caplog: pytest.LogCaptureFixture
) -> None:
    key, cert = ca
    authorities = Authorities(store, cert, CLUSTER)
    authorities.designate("n0", ca_key=key, by="n0", now=NOW, holds_key=True)
    # What root on n3 can write into its own map: unsigned, or signed with its node key.
    store.put(AUTHORITY_KIND, "n3", msgspec.json.encode(Designation(by="n0", at=NOW, holds_key=True)))
    forged = sign(pki.new_key(), CLUSTER, "n4", by="n0", at=NOW)
    store.put(AUTHORITY_KIND, "n4", msgspec.json.encode(forged))
    store.put(AUTHORITY_KIND, "n5", b"not json")
    with caplog.at_level(logging.WARNING, logger="appliance.cluster.authority"):
        for _ in range(3):
            assert authorities.names() == ["n0"]
            assert authorities.holders() == ["n0"]
            assert not authorities.is_authority("n3")
    ignored = [r for r in caplog.records if r.getMessage() == "ignored an authority designation"]
    assert sorted(getattr(r, "node", "") for r in ignored) == ["n3", "n4", "n5"]  # once each
    assert authorities.refusal("n3") == "its designation is not signed by the cluster CA key"
    assert authorities.refusal("n5") == "its designation is unreadable"
    assert authorities.refusal("n6") == "not a designated authority"
    assert authorities.refusal("n0") is None


def test_an_admin_change_signs_its_designations_and_replaces_forged_ones(
    ca: tuple[ec.EllipticCurvePrivateKey, x509.Certificate], store: ConfigStore
) -> None:
    key, cert = ca
    authorities = Authorities(store, cert, CLUSTER)
    authorities.designate("n0", ca_key=key, by="n0", now=NOW, holds_key=True)
    store.put(AUTHORITY_KIND, "n2", msgspec.json.encode(Designation(by="n0", at=NOW, holds_key=True)))
    added, removed = authorities.replace(["n0", "n2"], ca_key=key, by="n0", requested_by="admin", now=NOW + 5)
    assert (added, removed) == (["n2"], [])  # the forged entry counted as absent
    n2 = authorities.designated()["n2"]
    assert (n2.by, n2.requested_by, n2.holds_key) == ("n0", "admin", False)  # not the forged holds_key
    # n2 announces the key once it has it, signed with that key: the announcement verifies.
    authorities.announce_key("n2", ca_key=key)
    assert authorities.holders() == ["n0", "n2"]
    assert authorities.designated()["n2"].requested_by == "admin"


def test_an_announcement_from_a_stale_view_does_not_roll_back_the_newer_designation(
    ca: tuple[ec.EllipticCurvePrivateKey, x509.Certificate], store: ConfigStore
) -> None:
    """The member's map still holds an old entry when an authority hands it the key for a new
    one (the admin's change has not replicated to it yet): the announcement keeps the new one."""
    key, cert = ca
    authorities = Authorities(store, cert, CLUSTER)
    authorities.designate("n2", ca_key=key, by="n0", now=NOW - 3600)  # the stale copy here
    newer = sign(key, CLUSTER, "n2", by="n0", at=NOW, requested_by="root")  # what the sender judged
    forged = msgspec.structs.replace(newer, at=NOW + 60, requested_by="mallory")  # signature no longer fits
    authorities.announce_key("n2", ca_key=key, seen=forged)
    stale = authorities.designated()["n2"]
    assert (stale.at, stale.requested_by, stale.holds_key) == (NOW - 3600, "", True)  # a forgery is not a basis
    authorities.designate("n2", ca_key=key, by="n0", now=NOW - 3600)
    authorities.announce_key("n2", ca_key=key, seen=newer)
    n2 = authorities.designated()["n2"]
    assert (n2.at, n2.requested_by, n2.holds_key) == (NOW, "root", True)


def test_the_key_is_handed_over_only_for_a_recent_designation_still_waiting_for_it(
    ca: tuple[ec.EllipticCurvePrivateKey, x509.Certificate], store: ConfigStore
) -> None:
    key, cert = ca
    authorities = Authorities(store, cert, CLUSTER)
    authorities.designate("n0", ca_key=key, by="n0", now=NOW, holds_key=True)
    authorities.designate("n1", ca_key=key, by="n0", now=NOW)
    assert authorities.handover_refusal("n1", NOW + 5) is None
    assert "already holds" in (authorities.handover_refusal("n0", NOW + 5) or "")
    assert authorities.handover_refusal("n2", NOW + 5) == "not a designated authority"
    # An old designation (say, saved before the node was taken out of the set and put back
    # by it later) no longer fetches the key ...
    late = NOW + HANDOVER_WINDOW + 1
    assert "too old" in (authorities.handover_refusal("n1", late) or "")
    # ... until an admin sets the set again, which signs the waiting entry anew.
    assert authorities.replace(["n0", "n1"], ca_key=key, by="n0", requested_by="admin", now=late) == ([], [])
    assert authorities.handover_refusal("n1", late + 5) is None
    assert authorities.designated()["n0"].at == NOW  # an entry holding the key is kept as it was


def test_the_console_changes_the_set_only_with_the_key_and_never_to_a_set_without_a_holder() -> None:
    members = {"n0", "n1", "n2", "n3"}.__contains__

    def refusal(names: list[str], *, me: str = "n0", have_key: bool = True) -> str | None:
        return change_refusal(names, me=me, have_key=have_key, holders=["n0", "n1"], is_member=members)

    assert refusal([]) == "give the names of all nodes that should be authorities"
    ordinary = refusal(["n0", "n3"], me="n3", have_key=False) or ""
    assert ordinary.startswith("this node (n3) does not hold the CA key")
    assert "n0, n1" in ordinary
    assert refusal(["n1", "n9"]) == "not members of this cluster: n9"
    # Replacing every holder with nodes that do not hold the key yet would strand it.
    assert refusal(["n2", "n3"]) == STRANDED
    assert refusal(["n1", "n2", "n3"]) is None  # a holder stays: the new ones fetch from it
    assert refusal(["n0", "n2"]) is None  # this node holds it (its own entry may not say so yet)
