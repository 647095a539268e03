"""Password hashing with argon2id, tuned for a small edge node.

Parameters follow OWASP's argon2id baseline (19 MiB, 2 passes, 1 lane): about 20-30 ms per
hash on one core of the 2-core reference machine, which keeps login well inside the seed's
200 ms p99 while still costing an attacker memory per guess. Hashes carry their parameters,
so raising them later only affects new hashes (and `needs_rehash` upgrades old ones at login).
"""

from __future__ import annotations

import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

_HASHER = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1, hash_len=32, salt_len=16)

# What a login for a user that does not exist is verified against, so that it takes as long as a
# wrong password for one that does. It is a constant rather than hashed at import because one
# hash at start-up costs ~25 ms here and seconds on an emulated or small machine, on every boot.
# The password it was made from was random and thrown away; a unit test checks that it carries
# the current parameters (it must be remade with them if they change).
DUMMY_HASH = "$argon2id$v=19$m=19456,t=2,p=1$6LR39SUB85HyvWT6A4wwZg$Cebfhh8mPLuMnxl3r0l9rWWxmaGqGJM+MZzVkb4sZ8E"


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """True when `password` matches; never raises for a wrong password or a damaged hash."""
    try:
        return _HASHER.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    return _HASHER.check_needs_rehash(password_hash)


def generate_password() -> str:
    """A random password for bootstrap credentials: 24 URL-safe characters (144 bits)."""
    return secrets.token_urlsafe(18)
