"""Authority nodes: the few members that hold the cluster CA key and issue certificates.

The set lives in the replicated configuration map (kind `authority`, one entry per node, so
two concurrent designations do not overwrite each other). The founder is the first; the
authority that admits a node designates it while the set has fewer than DEFAULT_SIZE
members, so by default the first three nodes are authorities. An admin changes the set
through the API (`PUT /api/v1/cluster/authorities`).

A designated node that lacks the key fetches it from an authority that holds it, over HTTPS
with a request signed by its registered node certificate (`nodeauth`), never through a join
answer; it then marks its entry `holds_key`. A node taken out of the set deletes its copy,
but only once some node of the set says it holds the key, so a change of the whole set never
loses the key. `plan` is that decision, pure; `Authorities` reads and writes the map.
"""

from __future__ import annotations

import enum

import msgspec

from appliance.store.config import ConfigStore

AUTHORITY_KIND = "authority"
DEFAULT_SIZE = 3


class Designation(msgspec.Struct, frozen=True, kw_only=True):
    by: str
    at: float
    holds_key: bool = False


class KeyStep(enum.Enum):
    KEEP = "keep"  # nothing to do
    FETCH = "fetch"  # designated, no key yet: fetch it from a holder
    DISCARD = "discard"  # no longer designated and the key is safe elsewhere: delete it
    ANNOUNCE = "announce"  # designated, has the key, entry does not say so yet


def plan(*, me: str, designated: dict[str, Designation], have_key: bool) -> KeyStep:
    """What this node must do about its copy of the CA key."""
    mine = designated.get(me)
    if mine is not None:
        if not have_key:
            return KeyStep.FETCH
        return KeyStep.KEEP if mine.holds_key else KeyStep.ANNOUNCE
    if have_key and any(d.holds_key for name, d in designated.items() if name != me):
        return KeyStep.DISCARD
    return KeyStep.KEEP


class Authorities:
    """The authority set in this node's configuration map."""

    def __init__(self, store: ConfigStore) -> None:
        self._store = store

    def designated(self) -> dict[str, Designation]:
        return {name: msgspec.json.decode(raw, type=Designation) for name, raw in self._store.items(AUTHORITY_KIND)}

    def names(self) -> list[str]:
        return sorted(self.designated())

    def holders(self) -> list[str]:
        return sorted(name for name, d in self.designated().items() if d.holds_key)

    def is_authority(self, name: str) -> bool:
        return self._store.get(AUTHORITY_KIND, name) is not None

    def designate(self, name: str, *, by: str, now: float, holds_key: bool = False) -> None:
        self._store.put(AUTHORITY_KIND, name, msgspec.json.encode(Designation(by=by, at=now, holds_key=holds_key)))

    def designate_if_few(self, name: str, *, by: str, now: float) -> bool:
        """The default: a new node becomes an authority while there are fewer than DEFAULT_SIZE."""
        current = self.designated()
        if name in current or len(current) >= DEFAULT_SIZE:
            return False
        self.designate(name, by=by, now=now)
        return True

    def announce_key(self, name: str, *, now: float) -> None:
        current = self.designated().get(name)
        if current is not None and not current.holds_key:
            self._store.put(AUTHORITY_KIND, name, msgspec.json.encode(msgspec.structs.replace(current, holds_key=True)))

    def withdraw(self, name: str) -> bool:
        return self._store.delete(AUTHORITY_KIND, name)

    def replace(self, names: list[str], *, by: str, now: float) -> tuple[list[str], list[str]]:
        """Make `names` the set; returns (added, removed). Kept entries keep their holds_key."""
        current = self.designated()
        added = [n for n in names if n not in current]
        removed = [n for n in current if n not in names]
        for name in added:
            self.designate(name, by=by, now=now)
        for name in removed:
            self.withdraw(name)
        return added, sorted(removed)
