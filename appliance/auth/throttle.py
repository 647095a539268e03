"""Request rate limits and the login back-off, as plain logic on an injected clock.

`RateLimiter` is a token bucket per user: `rate` requests per second on average, bursts up
to `burst`.

`LoginThrottle` slows password guessing without letting a guesser lock anyone out. It counts
failed password checks (logins and the current-password check of a password change) under
three keys, each with its own `Schedule` (some free failures, then a delay that doubles per
failure up to a ceiling):

- the pair (user name, source): the guesser's own back-off. Five free failures, then 1 s
  doubling to 15 min. A success from that source for that name clears it.
- the source: one address trying many names. Ten free failures, then 1 s doubling to 15 min.
  A success from that source clears it.
- the user name, over all sources: the slower ceiling against a guesser spread over many
  addresses. Twenty free failures, then 1 s doubling to 5 min. It holds only the sources that
  have themselves failed for that name, so a source that has not been failing still gets to
  try the right password however hard others hammer the name; a success does not clear it
  (the guessers' sources would get fresh tries), it is forgotten a day after the last failure.

A source is an address, except that IPv6 sources count per /64 (one host owns a whole /64).
The answer never depends on whether the user exists: keys are made from the name as typed.
Refused (throttled) attempts are not checked and not counted, so hammering a held key costs
the hammerer nothing but extends nothing either.

A password check takes tens of milliseconds off the event loop, so a guesser could send many
at once and have them all pass before the first failure is counted. `login_begin` therefore
reserves the attempt under all three keys, and a key counts its attempts in flight as if they
had failed: no more checks run at once than failures are still free, and once a key is in its
back-off, one at a time. Reservations live in memory only; `login_failed`, `login_succeeded`
or `login_release` ends each one.

State is kept in memory (bounded: the `max_keys` most recently failed keys) and written through
a `BackoffStore` on every change, which happens only on failures and on the first success after
failures, never on an ordinary successful login. On start the store's entries are loaded, so a
restart does not wipe the back-off. Times are wall-clock (they must survive a reboot); a wait
is never longer than its schedule's ceiling, so a wall clock stepping back cannot lock anyone
out for longer than that.
"""

from __future__ import annotations

import ipaddress
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import NamedTuple, Protocol

# The token bucket is in the PXE library (its boot routes limit reports with it), re-exported.
from pxe.ratelimit import RateLimiter, retry_after_header

__all__ = [  # the names below, and the shared ones imported from the PXE library above
    "FORGET_AFTER",
    "MAX_KEYS",
    "MAX_NAME",
    "PAIR",
    "SOURCE",
    "USER",
    "BackoffStore",
    "Entry",
    "LoginThrottle",
    "MemoryStore",
    "RateLimiter",
    "Schedule",
    "pair_key",
    "retry_after_header",
    "source_group",
    "source_key",
    "user_key",
]

MAX_KEYS = 10_000
FORGET_AFTER = 24 * 3600.0  # a key with no failure for this long starts from zero again
MAX_NAME = 64  # longer user names (logins accept up to 64 characters) are cut for the key


@dataclass(frozen=True)
class Schedule:
    """`free_failures` failures cost nothing; from then on each failure imposes a delay that
    starts at `base_delay` and doubles per failure up to `max_delay`."""

    free_failures: int
    base_delay: float
    max_delay: float

    def delay(self, failures: int) -> float:
        if failures < self.free_failures:
            return 0.0
        return min(self.max_delay, self.base_delay * 2.0 ** min(failures - self.free_failures, 64))


PAIR = Schedule(free_failures=5, base_delay=1.0, max_delay=900.0)
SOURCE = Schedule(free_failures=10, base_delay=1.0, max_delay=900.0)
USER = Schedule(free_failures=20, base_delay=1.0, max_delay=300.0)


class Entry(NamedTuple):
    """One key's state: consecutive failures, when the next try is allowed, the last failure."""

    failures: int
    blocked_until: float
    last_failure: float


class BackoffStore(Protocol):
    """Where the back-off state outlives the process (`appliance.auth.throttle_store`)."""

    def load(self) -> Iterable[tuple[str, Entry]]: ...

    def save(self, changes: Mapping[str, Entry | None]) -> None:
        """Write these keys (None: delete the key)."""
        ...


class MemoryStore:
    """A `BackoffStore` in a dict: the default, and a stand-in for the database in tests."""

    def __init__(self) -> None:
        self.entries: dict[str, Entry] = {}

    def load(self) -> Iterable[tuple[str, Entry]]:
        return list(self.entries.items())

    def save(self, changes: Mapping[str, Entry | None]) -> None:
        for key, entry in changes.items():
            if entry is None:
                self.entries.pop(key, None)
            else:
                self.entries[key] = entry


def source_group(address: str) -> str:
    """What counts as one source: an IPv4 address, an IPv6 /64, anything else as given."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return "".join("_" if c.isspace() else c for c in address[:MAX_NAME])  # keeps pair keys splittable
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


def pair_key(user: str, source: str) -> str:
    # The source never holds a space, so the key splits back unambiguously.
    return f"pair:{source_group(source)} {user[:MAX_NAME]}"


def source_key(source: str) -> str:
    return f"source:{source_group(source)}"


def user_key(user: str) -> str:
    return f"user:{user[:MAX_NAME]}"


def _login_keys(user: str, source: str) -> list[str]:
    return [pair_key(user, source), source_key(source), user_key(user)]


class LoginThrottle:
    """The login back-off per (user, source), per source, and the slower per-user ceiling.

    `login_begin`, then `login_failed`/`login_succeeded`/`login_release`, are the password
    checks' interface (`login_wait` only asks). The key-level `begin`/`release`/`failed`/
    `succeeded` (and `retry_after`, which only asks) serve other callers that throttle their
    own keys the same way, reservations included (failed joins, keyed `join:<source>`, on the
    pair schedule).
    """

    def __init__(
        self,
        *,
        pair: Schedule = PAIR,
        source: Schedule = SOURCE,
        user: Schedule = USER,
        forget_after: float = FORGET_AFTER,
        max_keys: int = MAX_KEYS,
        clock: Callable[[], float] = time.time,
        store: BackoffStore | None = None,
    ) -> None:
        self.pair = pair
        self.source = source
        self.user = user
        self.forget_after = forget_after
        self.max_keys = max_keys
        self._clock = clock
        self._store: BackoffStore = store if store is not None else MemoryStore()
        self._state: OrderedDict[str, Entry] = OrderedDict()  # oldest failure first
        self._in_flight: dict[str, int] = {}  # key -> password checks running now
        self._load()

    # -- password checks ------------------------------------------------------------------

    def login_wait(self, user: str, source: str) -> float:
        """Seconds before `source` may next check a password of `user` (0.0: now)."""
        now = self._clock()
        pair = pair_key(user, source)
        waits = [self._wait(pair, now), self._wait(source_key(source), now)]
        if self._entry(pair, now) is not None or self._in_flight.get(pair, 0) > 0:
            # The ceiling holds only sources that have failed (or are trying) for this name.
            waits.append(self._wait(user_key(user), now))
        return max(waits)

    def login_begin(self, user: str, source: str) -> float:
        """Reserve a password check of `user` from `source`: 0.0 if it may run now (end it with
        `login_failed`, `login_succeeded` or `login_release`), else the seconds to wait."""
        wait = self.login_wait(user, source)
        if wait == 0:
            for key in _login_keys(user, source):
                self._in_flight[key] = self._in_flight.get(key, 0) + 1
        return wait

    def login_release(self, user: str, source: str) -> None:
        """End a reservation without a verdict (the check itself failed to run)."""
        self.release(_login_keys(user, source))

    def login_failed(self, user: str, source: str) -> float:
        """Count a wrong password of `user` from `source`; the wait it now faces."""
        self.login_release(user, source)
        self.failed(_login_keys(user, source))
        return self.login_wait(user, source)

    def login_succeeded(self, user: str, source: str) -> None:
        """A right password: clear this source's counts (the name's ceiling stays)."""
        self.login_release(user, source)
        self.succeeded(pair_key(user, source))
        self.succeeded(source_key(source))

    def counts(self, user: str, source: str) -> tuple[int, int, int]:
        """Failures counted for (user, source), for the source, for the user: for the audit trail."""
        return (
            self.failures(pair_key(user, source)),
            self.failures(source_key(source)),
            self.failures(user_key(user)),
        )

    # -- keys -----------------------------------------------------------------------------

    def retry_after(self, keys: list[str]) -> float:
        """Seconds until all of `keys` may try again (0.0 if they may now)."""
        now = self._clock()
        return max((self._wait(k, now) for k in keys), default=0.0)

    def begin(self, keys: list[str]) -> float:
        """Reserve an attempt under `keys`, as `login_begin` does: 0.0 if it may run now (then
        `release` it, and count it with `failed` or `succeeded`), else the seconds to wait."""
        wait = self.retry_after(keys)
        if wait == 0:
            for key in keys:
                self._in_flight[key] = self._in_flight.get(key, 0) + 1
        return wait

    def release(self, keys: list[str]) -> None:
        """End a reservation made by `begin` (or `login_begin`)."""
        for key in keys:
            count = self._in_flight.pop(key, 0) - 1
            if count > 0:
                self._in_flight[key] = count

    def failed(self, keys: list[str]) -> float:
        """Record a failed attempt for each key; return the longest delay now imposed."""
        now = self._clock()
        changes: dict[str, Entry | None] = {}
        longest = 0.0
        for key in keys:
            current = self._entry(key, now)
            failures = (current.failures if current is not None else 0) + 1
            delay = self._schedule(key).delay(failures)
            entry = Entry(failures, now + delay, now)
            self._state[key] = changes[key] = entry
            self._state.move_to_end(key)
            longest = max(longest, delay)
        while len(self._state) > self.max_keys:
            evicted, _ = self._state.popitem(last=False)
            changes[evicted] = None
        self._store.save(changes)
        return longest

    def succeeded(self, key: str) -> None:
        """Forget `key`'s failures (writes only if it had any)."""
        if self._state.pop(key, None) is not None:
            self._store.save({key: None})

    def failures(self, key: str) -> int:
        entry = self._entry(key, self._clock())
        return entry.failures if entry is not None else 0

    # -- upkeep ---------------------------------------------------------------------------

    def prune(self) -> int:
        """Drop keys that are forgotten by now (housekeeping); how many."""
        now = self._clock()
        stale = [k for k, e in self._state.items() if self._forgotten(e, now)]
        for key in stale:
            del self._state[key]
        if stale:
            self._store.save(dict.fromkeys(stale))
        return len(stale)

    def reset(self) -> None:
        """Forget everything (tests and operators' recovery)."""
        if self._state:
            self._store.save(dict.fromkeys(self._state))
        self._state.clear()

    # -- internals ------------------------------------------------------------------------

    def _schedule(self, key: str) -> Schedule:
        if key.startswith("user:"):
            return self.user
        if key.startswith("source:"):
            return self.source
        return self.pair  # pairs, and other callers' keys (joins), as logins were always held

    def _forgotten(self, entry: Entry, now: float) -> bool:
        return entry.blocked_until <= now and now - entry.last_failure >= self.forget_after

    def _entry(self, key: str, now: float) -> Entry | None:
        entry = self._state.get(key)
        return None if entry is None or self._forgotten(entry, now) else entry

    def _wait(self, key: str, now: float) -> float:
        entry = self._entry(key, now)
        failures = entry.failures if entry is not None else 0
        running = self._in_flight.get(key, 0)
        schedule = self._schedule(key)
        if failures + running < schedule.free_failures:
            return 0.0
        # Capped so that a wall clock stepped back cannot hold a key past its schedule's ceiling.
        wait = min(entry.blocked_until - now, schedule.max_delay) if entry is not None else 0.0
        # Counting the running checks as failures, this key is in its back-off: one at a time.
        return max(wait, 1.0) if running else max(wait, 0.0)

    def _load(self) -> None:
        now = self._clock()
        entries = sorted(self._store.load(), key=lambda item: item[1].last_failure)
        dropped: dict[str, Entry | None] = {}
        for key, entry in entries:
            if self._forgotten(entry, now):
                dropped[key] = None
            else:
                self._state[key] = entry
        while len(self._state) > self.max_keys:
            evicted, _ = self._state.popitem(last=False)
            dropped[evicted] = None
        if dropped:
            self._store.save(dropped)
