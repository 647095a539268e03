"""Authority nodes: the few members that hold the cluster CA key and issue certificates.

The set lives in the replicated configuration map (kind `authority`, one entry per node, so
two concurrent designations do not overwrite each other). The founder is the first, and the
founder alone designates the first two nodes it admits (DEFAULT_SIZE in all): it counts them
in its own node_meta (FOUNDER_SLOTS_KEY), which is local to its database and never
replicated. The size of the replicated set decides nothing, so a member that deletes entries
cannot get the next joiner designated, and no other authority designates by default. After
that the set changes only by root on an authority's console (`debvisor authorities set`,
`change_refusal`): it signs the new designations with the CA key in that node's data dir.
There is no API route for it: any member can write account records (they are replicated
configuration too), so root on an ordinary node could make itself an admin account that
logs in at an authority; no API credential can stand for "an authority's operator".

Any member can write any entry of the configuration map (writes are not authenticated per
writer), so an entry is believed only if it is signed with the cluster CA key: only a node
that holds the key can designate. Each entry carries an ECDSA signature by the CA key over
the purpose, the cluster id, the designated node's name, the authority that designated it,
the admin who asked for it (if any), the time and `holds_key` (`signed_bytes`). Every node
checks the signature against the CA certificate (`verify`) before it counts an entry; an
unsigned or badly signed entry is ignored everywhere (and logged once per value), so an
ordinary node that writes itself into the set gains nothing: no authority sends it the key.

`holds_key` is CA-signed too, and that is possible because a node announces it only after it
has received the key: it re-signs its own entry with the key it now holds. A node signature
would only show that the node says so; the CA signature shows it can sign with the key,
which is what `holds_key` claims. So no field of an entry rests on a weaker signature.

A signature does not say when it stops counting, and a member can put back an entry it saw
earlier (the map is last-writer-wins on versions any writer sets). So the CA key is handed
over (`handover_refusal`) only for a designation that does not yet say `holds_key` and was
signed less than HANDOVER_WINDOW ago: a designated node fetches the key within seconds, and
an old designation of a node that was later taken out of the set, replayed, gets nothing.
Setting the set again re-signs the entries still waiting for the key.

What this does not stop: a member can still delete or overwrite entries (shrinking the set, a
denial of service that root on an authority's console repairs by setting the set again; an
authority that sees another holder leaves the key to it, so the key is never lost), and
anyone holding a copy of the CA key (an authority, or a removed one that kept its copy) can
sign anything: that is what the certificate registry and revocation, and finally a new CA,
are for.

A designated node that lacks the key fetches it from an authority that holds it, over HTTPS
with a request signed by its registered node certificate (`nodeauth`), never through a join
answer; it then marks its entry `holds_key`. A node taken out of the set deletes its copy,
but only once some node of the set says it holds the key; and the console refuses a set in
which no node holds the key (`STRANDED`), so a change of the set never loses the key.
`plan` is that decision, pure; `Authorities` reads and writes the map.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import logging
from collections.abc import Callable

import msgspec
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from appliance.store.config import ConfigStore

log = logging.getLogger(__name__)

AUTHORITY_KIND = "authority"
DEFAULT_SIZE = 3
PURPOSE = "debvisor-authority-designation/1"  # a signature made for this cannot be taken for another
MAX_LOGGED = 1000  # bad entries remembered so that each is logged once
HANDOVER_WINDOW = 3600.0  # seconds after its designation a node may still be sent the key
# In the founder's node_meta only (never replicated): how many joiners it may still designate.
FOUNDER_SLOTS_KEY = "default_authorities_left"
STRANDED = (
    "none of these nodes holds the CA key: add the new nodes first, wait until `debvisor authorities` "
    "shows they hold the key, then remove the old ones"
)


class Designation(msgspec.Struct, frozen=True, kw_only=True):
    by: str  # the authority node that designated it (signed with its CA key copy)
    at: float
    holds_key: bool = False
    requested_by: str = ""  # the admin whose change it executes; "" for the default designations
    signature: str = ""  # base64 ECDSA-SHA256 by the cluster CA key over `signed_bytes`


class _Signed(msgspec.Struct, frozen=True, array_like=True):
    """What the CA signature covers, in a fixed order (an array: no field names to reorder)."""

    purpose: str
    cluster_id: str
    name: str
    by: str
    requested_by: str
    at: float
    holds_key: bool


def signed_bytes(cluster_id: str, name: str, d: Designation) -> bytes:
    return msgspec.json.encode(_Signed(PURPOSE, cluster_id, name, d.by, d.requested_by, d.at, d.holds_key))


def sign(
    ca_key: ec.EllipticCurvePrivateKey,
    cluster_id: str,
    name: str,
    *,
    by: str,
    at: float,
    holds_key: bool = False,
    requested_by: str = "",
) -> Designation:
    """A designation of `name` signed with the CA key."""
    unsigned = Designation(by=by, at=at, holds_key=holds_key, requested_by=requested_by)
    signature = ca_key.sign(signed_bytes(cluster_id, name, unsigned), ec.ECDSA(hashes.SHA256()))
    return msgspec.structs.replace(unsigned, signature=base64.b64encode(signature).decode())


def verify(ca_cert: x509.Certificate, cluster_id: str, name: str, d: Designation) -> bool:
    """True if `d` designates `name` in this cluster and the cluster CA key signed it."""
    key = ca_cert.public_key()
    if not d.signature or not isinstance(key, ec.EllipticCurvePublicKey):
        return False
    try:
        signature = base64.b64decode(d.signature, validate=True)
        key.verify(signature, signed_bytes(cluster_id, name, d), ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError):
        return False
    return True


def change_refusal(
    names: list[str], *, me: str, have_key: bool, holders: list[str], is_member: Callable[[str], bool]
) -> str | None:
    """Why the console of node `me` refuses to make `names` the authority set (None: it may).

    `holders`: the nodes whose verified entries say they hold the key. A set none of whose
    nodes holds the key would strand it: the new nodes fetch it only from designated holders,
    and the old ones keep their copies until a designated node holds it."""
    if not names:
        return "give the names of all nodes that should be authorities"
    if not have_key:
        where = ", ".join(holders) or "none known"
        return f"this node ({me}) does not hold the CA key; run this on the console of an authority: {where}"
    unknown = [n for n in names if n != me and not is_member(n)]
    if unknown:
        return f"not members of this cluster: {', '.join(unknown)}"
    if not set(names) & ({me} | set(holders)):
        return STRANDED
    return None


class KeyStep(enum.Enum):
    KEEP = "keep"  # nothing to do
    FETCH = "fetch"  # designated, no key yet: fetch it from a holder
    DISCARD = "discard"  # no longer designated and the key is safe elsewhere: delete it
    ANNOUNCE = "announce"  # designated, has the key, entry does not say so yet


def plan(*, me: str, designated: dict[str, Designation], have_key: bool) -> KeyStep:
    """What this node must do about its copy of the CA key (`designated`: verified entries only)."""
    mine = designated.get(me)
    if mine is not None:
        if not have_key:
            return KeyStep.FETCH
        return KeyStep.KEEP if mine.holds_key else KeyStep.ANNOUNCE
    if have_key and any(d.holds_key for name, d in designated.items() if name != me):
        return KeyStep.DISCARD
    return KeyStep.KEEP


class Authorities:
    """The authority set in this node's configuration map: reads verify, writes sign."""

    def __init__(self, store: ConfigStore, ca_cert: x509.Certificate, cluster_id: str) -> None:
        self._store = store
        self._ca_cert = ca_cert
        self._cluster_id = cluster_id
        self._logged: set[str] = set()  # hashes of the bad entries already logged

    def designated(self) -> dict[str, Designation]:
        """The entries whose CA signature verifies; the others are ignored (logged once)."""
        result: dict[str, Designation] = {}
        for name, raw in self._store.items(AUTHORITY_KIND):
            reason = self._refusal(name, raw)
            if reason is None:
                result[name] = msgspec.json.decode(raw, type=Designation)
            else:
                self._log_once(name, raw, reason)
        return result

    def refusal(self, name: str) -> str | None:
        """Why `name` is not an authority here (None if its designation verifies)."""
        raw = self._store.get(AUTHORITY_KIND, name)
        if raw is None:
            return "not a designated authority"
        reason = self._refusal(name, raw)
        if reason is not None:
            self._log_once(name, raw, reason)
        return reason

    def handover_refusal(self, name: str, now: float) -> str | None:
        """Why `name` is not to be sent the CA key now (None: send it)."""
        reason = self.refusal(name)
        if reason is not None:
            return reason
        entry = self.designated()[name]
        if entry.holds_key:
            return "its designation says it already holds the key"
        if now - entry.at > HANDOVER_WINDOW:
            return "its designation is too old to fetch the key with; root on an authority sets the authorities again"
        return None

    def names(self) -> list[str]:
        return sorted(self.designated())

    def holders(self) -> list[str]:
        return sorted(name for name, d in self.designated().items() if d.holds_key)

    def is_authority(self, name: str) -> bool:
        return self.refusal(name) is None

    def designate(
        self,
        name: str,
        *,
        ca_key: ec.EllipticCurvePrivateKey,
        by: str,
        now: float,
        holds_key: bool = False,
        requested_by: str = "",
    ) -> None:
        entry = sign(ca_key, self._cluster_id, name, by=by, at=now, holds_key=holds_key, requested_by=requested_by)
        self._store.put(AUTHORITY_KIND, name, msgspec.json.encode(entry))

    def announce_key(self, name: str, *, ca_key: ec.EllipticCurvePrivateKey, seen: Designation | None = None) -> None:
        """Mark `name`'s entry `holds_key`, re-signed with the key it now holds.

        `seen` is the entry the sending authority judged; when it is newer than this node's
        copy (the change that made the handover possible has not replicated here yet), the
        announcement is based on it, so it never rolls a newer designation back."""
        current = self.designated().get(name)
        newer = seen is not None and (current is None or seen.at > current.at)
        if newer and seen is not None and verify(self._ca_cert, self._cluster_id, name, seen):
            current = seen
        if current is not None and not current.holds_key:
            self.designate(
                name, ca_key=ca_key, by=current.by, now=current.at, holds_key=True, requested_by=current.requested_by
            )

    def withdraw(self, name: str) -> bool:
        return self._store.delete(AUTHORITY_KIND, name)

    def replace(
        self, names: list[str], *, ca_key: ec.EllipticCurvePrivateKey, by: str, requested_by: str, now: float
    ) -> tuple[list[str], list[str]]:
        """Make `names` the set; returns (added, removed). Kept entries keep their holds_key.

        An entry that does not verify counts as absent: a name in `names` gets a signed one.
        A kept entry still waiting for the key is signed again, so it may fetch it again."""
        current = self.designated()
        added = [n for n in names if n not in current]
        removed = [n for n in current if n not in names]
        waiting = [n for n in names if n in current and not current[n].holds_key]
        for name in added + waiting:
            self.designate(name, ca_key=ca_key, by=by, now=now, requested_by=requested_by)
        for name in removed:
            self.withdraw(name)
        return added, sorted(removed)

    # -- internals ----------------------------------------------------------------------------

    def _refusal(self, name: str, raw: bytes) -> str | None:
        try:
            entry = msgspec.json.decode(raw, type=Designation)
        except msgspec.DecodeError:
            return "its designation is unreadable"
        if not verify(self._ca_cert, self._cluster_id, name, entry):
            return "its designation is not signed by the cluster CA key"
        return None

    def _log_once(self, name: str, raw: bytes, reason: str) -> None:
        digest = hashlib.sha256(name.encode() + b"\0" + raw).hexdigest()
        if digest in self._logged:
            return
        if len(self._logged) >= MAX_LOGGED:
            self._logged.clear()
        self._logged.add(digest)
        log.warning("ignored an authority designation", extra={"node": name, "reason": reason})
