"""Password hashing with argon2id, tuned for a small edge node, with bounded memory.

Parameters follow OWASP's argon2id baseline (19 MiB, 2 passes, 1 lane): about 20-30 ms per
hash on one core of the 2-core reference machine, which keeps login well inside the seed's
200 ms p99 while still costing an attacker memory per guess. Hashes carry their parameters,
so raising them later only affects new hashes (and `needs_rehash` upgrades old ones at login).

Each hash takes a 19 MiB buffer from the C allocator. Unbounded, a burst of logins hashed on
many threads at once, and glibc kept each thread's buffer in that thread's arena: the node
grew by about 19 MiB per concurrent login and never shrank (212 MiB with 100 users logged
in). So at most `MAX_CONCURRENT_HASHES` run at once (logins beyond that wait their turn, they are
never refused), the async path hashes on a small pool of its own (so waiting logins hold no
thread of the default executor), and after each hash the allocator's free memory is handed
back (`appliance.memory`, which also gives such buffers a mapping of their own). `bench/api.py`
measures the resident size after 100 logins.
"""

from __future__ import annotations

import asyncio
import secrets
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from appliance.memory import release_memory

_T = TypeVar("_T")

_HASHER = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1, hash_len=32, salt_len=16)

# Two at once use both cores of the reference machine; a login queued behind others waits
# about 25 ms per pair ahead of it (100 logins at the same instant: about 1.3 s for the last).
MAX_CONCURRENT_HASHES = 2
_SLOTS = threading.BoundedSemaphore(MAX_CONCURRENT_HASHES)
_POOL = ThreadPoolExecutor(max_workers=MAX_CONCURRENT_HASHES, thread_name_prefix="argon2")

# What a login for a user that does not exist is verified against, so that it takes as long as a
# wrong password for one that does. It is a constant rather than hashed at import because one
# hash at start-up costs ~25 ms here and seconds on an emulated or small machine, on every boot.
# The password it was made from was random and thrown away; a unit test checks that it carries
# the current parameters (it must be remade with them if they change).
DUMMY_HASH = "$argon2id$v=19$m=19456,t=2,p=1$6LR39SUB85HyvWT6A4wwZg$Cebfhh8mPLuMnxl3r0l9rWWxmaGqGJM+MZzVkb4sZ8E"


def _bounded(work: Callable[[], _T]) -> _T:
    with _SLOTS:
        try:
            return work()
        finally:
            release_memory()


def hash_password(password: str) -> str:
    return _bounded(lambda: _HASHER.hash(password))


def verify_password(password_hash: str, password: str) -> bool:
    """True when `password` matches; never raises for a wrong password or a damaged hash."""
    try:
        return _bounded(lambda: _HASHER.verify(password_hash, password))
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


async def verify_password_async(password_hash: str, password: str) -> bool:
    """`verify_password` off the event loop, queued behind the hashes already running."""
    return await asyncio.get_running_loop().run_in_executor(_POOL, verify_password, password_hash, password)


async def hash_password_async(password: str) -> str:
    """`hash_password` off the event loop, queued behind the hashes already running."""
    return await asyncio.get_running_loop().run_in_executor(_POOL, hash_password, password)


def needs_rehash(password_hash: str) -> bool:
    return _HASHER.check_needs_rehash(password_hash)


def generate_password() -> str:
    """A random password for bootstrap credentials: 24 URL-safe characters (144 bits)."""
    return secrets.token_urlsafe(18)
