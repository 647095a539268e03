"""Local accounts as stored in the node database.

Only what the node service needs at first start lives here for now: the bootstrap admin. The
accounts issue adds the rest of the user lifecycle on the same table.
"""

from __future__ import annotations

from appliance.auth.passwords import generate_password, hash_password
from appliance.store.database import Database

BOOTSTRAP_ADMIN = "admin"


def create_bootstrap_admin(db: Database, now: float) -> str:
    """Create user `admin` (role admin) with a random password it must change; return it."""
    password = generate_password()
    with db.transaction() as conn:
        conn.execute(
            "INSERT INTO users (name, role, password_hash, enabled, must_change_password,"
            " created_at, updated_at) VALUES (?, 'admin', ?, 1, 1, ?, ?)",
            (BOOTSTRAP_ADMIN, hash_password(password), now, now),
        )
    return password
