"""Replicating the cluster configuration map between nodes, over the gossip transport.

Two mechanisms, as in Dynamo-style and scuttlebutt-style systems:
- *rumour*: a change (local, or merged from a peer and new here) is pushed at once to
  `fanout` random members, who merge it and pass on only what was new to them. A rumour that
  every node passes on once to f others misses about e^-f of the nodes, so the fanout grows
  with ln(n): ~2 in 10 000 nodes are left to anti-entropy at any size;
- *anti-entropy*: every `sync_interval` (1 s) a node sends one random member a 16-byte hash of all
  its (kind, key, version) triples. Equal hashes end the exchange (the steady state: ~40 bytes
  per interval whatever the map's size). A receiver whose hash differs answers with its full
  digest; each side then pushes the entries the other lacks or has older, so anything a rumour
  missed (a node that was down or partitioned) converges within a few intervals.

Merging is last-writer-wins on hybrid-logical-clock versions with tombstones
(`ConfigStore.merge`), so delivery order and duplicates do not matter. Pushes are cut into
frames of at most `max_push_bytes`, which bounds the time any one write holds a peer's
connection (probes to that peer queue behind it, probes to others do not).
"""

from __future__ import annotations

import hashlib
import logging
import math
import random
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Protocol

from appliance.cluster.messages import ConfigDigest, ConfigEntry, ConfigPush, ConfigSummary, Message, message_size

log = logging.getLogger(__name__)

Peer = tuple[str, str]  # (name, gossip address)


class ConfigMap(Protocol):
    """What replication needs of a configuration map (`appliance.store.config.ConfigStore`)."""

    def versions(self) -> list[tuple[str, str, str]]: ...

    def entry(self, kind: str, key: str) -> tuple[bytes, str, bool] | None: ...

    def merge(self, kind: str, key: str, value: bytes, version: str, *, deleted: bool = False) -> bool: ...

    def on_change(self, listener: Callable[[str, str, bool], None]) -> None: ...


def rumour_fanout(members: int) -> int:
    """Members each new change is pushed to: ln(n) + 2, at least 3 (see the module docstring)."""
    return max(3, math.ceil(math.log(max(members, 1))) + 2)


class Gossiper(ABC):
    """What both replicators share: whom to send to, the periodic summary, rumour targets.

    `ride`, if given, takes the periodic summary instead of sending it to a random peer: the
    service attaches it to the next membership frame it sends anyway (a probe goes to a
    random member several times a second), which saves a TLS record, a TCP segment and its
    ACK per summary."""

    def __init__(
        self,
        *,
        send: Callable[[Peer, list[Message]], None],
        peers: Callable[[], list[Peer]],
        rng: random.Random,
        now: float,
        ride: Callable[[Message], None] | None,
        sync_interval: float,
    ) -> None:
        self._send = send
        self._peers = peers
        self._rng = rng
        self._ride = ride
        self.sync_interval = sync_interval
        self.next_sync = now + rng.uniform(0, sync_interval)

    @abstractmethod
    def summary(self) -> Message:
        """The small periodic message a peer compares with its own state."""

    def tick(self, now: float) -> None:
        if now < self.next_sync:
            return
        self.next_sync = now + self.sync_interval
        if self._ride is not None:
            self._ride(self.summary())
            return
        peers = self._peers()
        if peers:
            self._send(self._rng.choice(peers), [self.summary()])

    def _rumour_targets(self, *, exclude: str, fanout: int | None = None) -> list[Peer]:
        everyone = self._peers()
        count = fanout if fanout is not None else rumour_fanout(len(everyone) + 1)
        peers = [p for p in everyone if p[0] != exclude]
        return peers if len(peers) <= count else self._rng.sample(peers, count)


class ConfigReplicator(Gossiper):
    """Keeps this node's configuration map in step with its peers'."""

    def __init__(
        self,
        store: ConfigMap,
        *,
        send: Callable[[Peer, list[Message]], None],
        peers: Callable[[], list[Peer]],
        rng: random.Random,
        now: float,
        ride: Callable[[Message], None] | None = None,
        fanout: int | None = None,
        sync_interval: float = 1.0,
        max_push_bytes: int = 256 * 1024,
    ) -> None:
        super().__init__(send=send, peers=peers, rng=rng, now=now, ride=ride, sync_interval=sync_interval)
        self._store = store
        self.fanout = fanout
        self.max_push_bytes = max_push_bytes
        self.merged = 0
        store.on_change(self._on_change)

    def summary(self) -> ConfigSummary:
        """The hash of every (kind, key, version) here, in key order."""
        versions = self._store.versions()
        digest = hashlib.blake2b(digest_size=16)
        for kind, key, version in versions:
            digest.update(f"{kind}\0{key}\0{version}\n".encode())
        return ConfigSummary(digest.digest(), len(versions))

    def handle(self, now: float, sender: Peer, message: Message) -> None:
        match message:
            case ConfigPush(entries=entries):
                fresh = [e for e in entries if self._merge(e)]
                if fresh:
                    # Names only: values may hold password hashes and token digests.
                    shown = ", ".join(f"{e.kind}/{e.key}{' (deleted)' if e.deleted else ''}" for e in fresh[:5])
                    more = f" and {len(fresh) - 5} more" if len(fresh) > 5 else ""
                    log.info(
                        "configuration merged",
                        extra={"peer": sender[0], "count": len(fresh), "entries": shown + more},
                    )
                    self._rumour(fresh, exclude=sender[0])
            case ConfigSummary(digest=digest):
                if digest != self.summary().digest:
                    self._send(sender, [ConfigDigest(self._store.versions())])
            case ConfigDigest(versions=versions, reply=reply):
                theirs = {(kind, key): version for kind, key, version in versions}
                ours = {(kind, key): version for kind, key, version in self._store.versions()}
                newer_here = [k for k, v in ours.items() if theirs.get(k, "") < v]
                newer_there = any(ours.get(k, "") < v for k, v in theirs.items())
                self._push(sender, newer_here)
                if newer_there and not reply:
                    self._send(sender, [ConfigDigest(list((k, key, v) for (k, key), v in ours.items()), reply=True)])
            case _:
                pass

    def _merge(self, entry: ConfigEntry) -> bool:
        taken = self._store.merge(entry.kind, entry.key, entry.value, entry.version, deleted=entry.deleted)
        if taken:
            self.merged += 1
        return taken

    def _on_change(self, kind: str, key: str, local: bool) -> None:
        if local:
            found = self._store.entry(kind, key)
            if found is not None:
                value, version, deleted = found
                self._rumour([ConfigEntry(kind, key, value, version, deleted)], exclude="")

    def _rumour(self, entries: list[ConfigEntry], *, exclude: str) -> None:
        for peer in self._rumour_targets(exclude=exclude, fanout=self.fanout):
            for chunk in self._chunks(entries):
                self._send(peer, [ConfigPush(chunk)])

    def _push(self, peer: Peer, keys: list[tuple[str, str]]) -> None:
        entries = []
        for kind, key in keys:
            found = self._store.entry(kind, key)
            if found is not None:
                entries.append(ConfigEntry(kind, key, *found))
        for chunk in self._chunks(entries):
            self._send(peer, [ConfigPush(chunk)])

    def _chunks(self, entries: list[ConfigEntry]) -> list[list[ConfigEntry]]:
        chunks: list[list[ConfigEntry]] = []
        current: list[ConfigEntry] = []
        size = 0
        for entry in entries:
            entry_size = message_size(ConfigPush([entry]))
            if current and size + entry_size > self.max_push_bytes:
                chunks.append(current)
                current, size = [], 0
            current.append(entry)
            size += entry_size
        if current:
            chunks.append(current)
        return chunks
