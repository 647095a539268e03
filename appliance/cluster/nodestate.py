"""Per-node key spaces, replicated by scuttlebutt: what each member says about itself.

Every node owns a small key space (its API endpoint, software version, hardware facts,
addresses, a status summary; later issues add inventory) that only it writes. Each write
gets a version from the owner's own counter, taken as max(last + 1, wall-clock ms) so it
keeps growing across restarts and re-installs. Other nodes keep copies, persisted in their
SQLite (`node_state`), so a restart loses nothing and a member that is down still shows
its last known facts.

Replication is scuttlebutt (van Renesse et al., "Efficient Reconciliation and Flow Control
for Anti-Entropy Protocols", 2008):
- the digest is the highest version held per owner; a peer answers a digest with, per
  owner, the entries above that version in ascending order (cut at `max_delta_bytes`, which
  keeps the receiver's highest version a true digest: nothing below it is missing);
- every `sync_interval` a node sends one random member a hash of its digest only; equal
  hashes end the exchange, a mismatch leads to the digest exchange;
- a change is also pushed at once to a few members (like the configuration map's rumours),
  who pass on what was new to them; a rumour carries the owner's whole key space (small),
  so that merging it never leaves a gap below the version it brings;
- only rumours are passed on. Catch-up deltas (answers to a digest, a newcomer's hand-over)
  are merged quietly: a node that just joined learns every owner's key space at once, and
  re-rumouring all of it to peers that hold it already cost a 32-node formation ~3 MB.

Left out: per-key deletes (a key space is replaced key by key; a removed member's whole key
space is dropped with `forget`), and flow control between many owners beyond the size cap.
"""

from __future__ import annotations

import hashlib
import logging
import random
import time
from collections.abc import Callable

from appliance.cluster.messages import Message, StateDelta, StateDigest, StateEntry, StateSummary, message_size
from appliance.cluster.replication import Gossiper, Peer
from appliance.store.database import Database

log = logging.getLogger(__name__)


class NodeStateStore:
    """Every member's key space as held on this node (SQLite table `node_state`)."""

    def __init__(self, db: Database, owner: str, *, wall: Callable[[], float] = time.time) -> None:
        self._db = db
        self.owner = owner
        self._wall = wall
        self._listeners: list[Callable[[list[StateEntry]], None]] = []

    def set(self, values: dict[str, bytes]) -> list[StateEntry]:
        """Write keys of this node's own key space; unchanged values are skipped. Returns what changed."""
        current = self.items(self.owner)
        changed = {k: v for k, v in values.items() if current.get(k) != v}
        if not changed:
            return []
        version = max(self.versions().get(self.owner, 0) + 1, int(self._wall() * 1000))
        entries = []
        with self._db.transaction() as conn:
            for key, value in sorted(changed.items()):
                entries.append(StateEntry(self.owner, key, value, version))
                conn.execute(
                    "INSERT INTO node_state (owner, key, value, version) VALUES (?, ?, ?, ?)"
                    " ON CONFLICT (owner, key) DO UPDATE SET value = excluded.value, version = excluded.version",
                    (self.owner, key, value, version),
                )
                version += 1
        self._notify(entries)
        return entries

    def items(self, owner: str) -> dict[str, bytes]:
        rows = self._db.conn.execute("SELECT key, value FROM node_state WHERE owner = ?", (owner,)).fetchall()
        return {str(k): bytes(v) for k, v in rows}

    def owners(self) -> dict[str, dict[str, bytes]]:
        result: dict[str, dict[str, bytes]] = {}
        for owner, key, value in self._db.conn.execute("SELECT owner, key, value FROM node_state").fetchall():
            result.setdefault(str(owner), {})[str(key)] = bytes(value)
        return result

    def versions(self) -> dict[str, int]:
        """The digest: the highest version held for each owner."""
        rows = self._db.conn.execute("SELECT owner, MAX(version) FROM node_state GROUP BY owner").fetchall()
        return {str(owner): int(version) for owner, version in rows}

    def deltas(self, owner: str, above: int) -> list[StateEntry]:
        """The owner's entries newer than `above`, oldest first."""
        rows = self._db.conn.execute(
            "SELECT key, value, version FROM node_state WHERE owner = ? AND version > ? ORDER BY version",
            (owner, above),
        ).fetchall()
        return [StateEntry(owner, str(k), bytes(v), int(ver)) for k, v, ver in rows]

    def merge(self, entries: list[StateEntry]) -> list[StateEntry]:
        """Take entries newer than what is held; never another node's view of our own keys. Returns the new ones."""
        fresh: list[StateEntry] = []
        with self._db.transaction() as conn:
            for entry in entries:
                if entry.owner == self.owner:
                    continue
                cursor = conn.execute(
                    "INSERT INTO node_state (owner, key, value, version) VALUES (?, ?, ?, ?)"
                    " ON CONFLICT (owner, key) DO UPDATE SET value = excluded.value, version = excluded.version"
                    " WHERE excluded.version > node_state.version",
                    (entry.owner, entry.key, entry.value, entry.version),
                )
                if cursor.rowcount:
                    fresh.append(entry)
        if fresh:
            self._notify(fresh)
        return fresh

    def forget(self, owner: str) -> None:
        """Drop a removed member's key space."""
        with self._db.transaction() as conn:
            conn.execute("DELETE FROM node_state WHERE owner = ?", (owner,))

    def on_change(self, listener: Callable[[list[StateEntry]], None]) -> None:
        self._listeners.append(listener)

    def _notify(self, entries: list[StateEntry]) -> None:
        # The entries are committed: a listener that raises is logged and the others still run.
        for listener in self._listeners:
            try:
                listener(entries)
            except Exception:
                log.exception("a node-state change listener failed")


class NodeStateReplicator(Gossiper):
    """Keeps every node's copies of all key spaces in step (see the module docstring)."""

    def __init__(
        self,
        store: NodeStateStore,
        *,
        send: Callable[[Peer, list[Message]], None],
        peers: Callable[[], list[Peer]],
        rng: random.Random,
        now: float,
        ride: Callable[[Message], None] | None = None,
        sync_interval: float = 1.0,
        max_delta_bytes: int = 64 * 1024,
    ) -> None:
        super().__init__(send=send, peers=peers, rng=rng, now=now, ride=ride, sync_interval=sync_interval)
        self._store = store
        self.max_delta_bytes = max_delta_bytes
        store.on_change(self._on_change)

    def summary(self) -> StateSummary:
        digest = hashlib.blake2b(digest_size=16)
        for owner, version in sorted(self._store.versions().items()):
            digest.update(f"{owner}\0{version}\n".encode())
        return StateSummary(digest.digest())

    def handle(self, now: float, sender: Peer, message: Message) -> None:
        match message:
            case StateSummary(digest=digest):
                if digest != self.summary().digest:
                    self._send(sender, [StateDigest(self._store.versions())])
            case StateDigest(versions=theirs, reply=reply):
                ours = self._store.versions()
                self._send_deltas(sender, theirs, ours)
                if not reply and any(version > ours.get(owner, 0) for owner, version in theirs.items()):
                    self._send(sender, [StateDigest(ours, reply=True)])
            case StateDelta(entries=entries, rumour=rumour):
                fresh = self._store.merge(entries)
                if rumour:  # pass on what was new to us, not back to whoever told us
                    self._rumour({e.owner for e in fresh}, exclude=sender[0])
            case _:
                pass

    def introduce(self, peer: Peer) -> None:
        """Hand a member that just joined (or came back) this node's own key space at once,
        rather than leaving it to anti-entropy rounds."""
        own = self._store.deltas(self._store.owner, 0)
        if own and message_size(StateDelta(own)) <= self.max_delta_bytes:
            self._send(peer, [StateDelta(own)])

    def _send_deltas(self, peer: Peer, theirs: dict[str, int], ours: dict[str, int]) -> None:
        batch: list[StateEntry] = []
        size = 0
        for owner, version in sorted(ours.items()):
            if version <= theirs.get(owner, 0):
                continue
            for entry in self._store.deltas(owner, theirs.get(owner, 0)):
                entry_size = message_size(StateDelta([entry]))
                if batch and size + entry_size > self.max_delta_bytes:
                    # The rest waits for the next round: what was sent is a gap-free prefix per owner.
                    self._send(peer, [StateDelta(batch)])
                    return
                batch.append(entry)
                size += entry_size
        if batch:
            self._send(peer, [StateDelta(batch)])

    def _on_change(self, entries: list[StateEntry]) -> None:
        # Our own writes start a rumour. Others' entries only reach the store through `handle`,
        # which knows whether they came as a rumour.
        if any(e.owner == self._store.owner for e in entries):
            self._rumour({self._store.owner}, exclude="")

    def _rumour(self, owners: set[str], *, exclude: str) -> None:
        # A rumour carries the owner's whole key space, not just the changed keys: a receiver
        # that merged only a newer key would claim a version while missing older ones.
        if not owners:
            return
        targets = self._rumour_targets(exclude=exclude)
        for owner in sorted(owners):
            space = self._store.deltas(owner, 0)
            if message_size(StateDelta(space)) > self.max_delta_bytes:
                continue  # too big to rumour: anti-entropy sends it in gap-free pieces
            for peer in targets:
                self._send(peer, [StateDelta(space, rumour=True)])
