"""Local accounts and API tokens: the rules, over records kept in the configuration map.

Reads come from an in-memory copy so that authenticating a request costs no query; the copy
is rebuilt when this process writes, and when another connection (the `debvisor user`
command, replication) has committed, which `refresh_if_changed` notices within a second.

Rules kept here, whichever door a change comes through (API or CLI): user names and password
length, the last enabled admin can be neither removed, disabled nor demoted, a token never
outranks its owner, and deleting a user deletes their tokens.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Callable

import msgspec

from appliance.api.problems import ApiError
from appliance.auth.passwords import (
    DUMMY_HASH,
    generate_password,
    hash_password,
    hash_password_async,
    needs_rehash,
    verify_password_async,
)
from appliance.auth.permissions import Role, role_within
from appliance.auth.types import MAX_PASSWORD, MIN_PASSWORD, USER_NAME, TokenRecord, UserRecord
from appliance.store.config import ConfigStore

USER_KIND = "user"
TOKEN_KIND = "token"  # noqa: S105 - a record kind, not a secret
BOOTSTRAP_ADMIN = "admin"
TOKEN_PREFIX = "dvt"  # noqa: S105 - the public prefix of token strings
REFRESH_INTERVAL = 1.0

# Verifying against this when a user does not exist keeps login time the same either way.
_USER_DECODER = msgspec.json.Decoder(UserRecord)
_TOKEN_DECODER = msgspec.json.Decoder(TokenRecord)


def check_user_name(name: str) -> None:
    if not re.match(USER_NAME, name):
        raise ApiError(422, f"user name {name!r} is invalid: 1-32 of a-z 0-9 _ . -, starting with a letter or _")


def check_new_password(name: str, password: str) -> None:
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise ApiError(422, f"a password must have {MIN_PASSWORD} to {MAX_PASSWORD} characters")
    if password.lower() == name.lower():
        raise ApiError(422, "the password must not be the user name")


def token_secret_hash(secret: str) -> str:
    # API token secrets are 256 random bits: a plain SHA-256 is as safe as a slow hash here.
    return hashlib.sha256(secret.encode()).hexdigest()


def parse_token(text: str) -> tuple[str, str] | None:
    """Split `dvt_<id>_<secret>` into (id, secret); None if it is not shaped like a token."""
    prefix, _, rest = text.partition("_")
    token_id, _, secret = rest.partition("_")
    if prefix != TOKEN_PREFIX or len(token_id) != 16 or not secret:
        return None
    return token_id, secret


class AccountService:
    """Users and API tokens of the cluster, as seen from this node."""

    def __init__(
        self,
        store: ConfigStore,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._clock = clock
        self._monotonic = monotonic
        self._users: dict[str, UserRecord] = {}
        self._tokens: dict[str, TokenRecord] = {}
        self._checked_at = monotonic()
        self._reload()
        store.on_change(self._on_config_change)

    def _on_config_change(self, kind: str, key: str, local: bool) -> None:
        """Entries merged from peers (replication) replace the cached copy at once."""
        if not local and kind in (USER_KIND, TOKEN_KIND):
            self._reload()

    # -- reading -----------------------------------------------------------------------

    def refresh_if_changed(self) -> None:
        """Reload the copy if another connection committed (checked at most once a second)."""
        now = self._monotonic()
        if now - self._checked_at < REFRESH_INTERVAL:
            return
        self._checked_at = now
        if self._store.changed():
            self._reload()

    def user(self, name: str) -> UserRecord | None:
        return self._users.get(name)

    def users(self) -> list[UserRecord]:
        return sorted(self._users.values(), key=lambda u: u.name)

    def token(self, token_id: str) -> TokenRecord | None:
        return self._tokens.get(token_id)

    def tokens(self, owner: str | None = None) -> list[TokenRecord]:
        found = [t for t in self._tokens.values() if owner is None or t.owner == owner]
        return sorted(found, key=lambda t: (t.owner, t.created_at))

    def token_for(self, presented: str) -> TokenRecord | None:
        """The live token a presented `dvt_...` string stands for, or None."""
        parsed = parse_token(presented)
        if parsed is None:
            return None
        record = self._tokens.get(parsed[0])
        if record is None or not hmac.compare_digest(record.secret_hash, token_secret_hash(parsed[1])):
            return None
        if record.expires_at is not None and record.expires_at <= self._clock():
            return None
        return record

    async def check_password(self, name: str, password: str) -> UserRecord | None:
        """The user if `password` is theirs and they are enabled; hashing runs off the event loop."""
        self.refresh_if_changed()
        record = self._users.get(name)
        ok = await verify_password_async(record.password_hash if record else DUMMY_HASH, password)
        if record is None or not ok or not record.enabled:
            return None
        if needs_rehash(record.password_hash):
            rehashed = await hash_password_async(password)
            if self._users.get(name) is record:  # unless it changed meanwhile (then next login)
                record = self._save_user(msgspec.structs.replace(record, password_hash=rehashed))
        return record

    # -- users -------------------------------------------------------------------------

    def create_user(self, name: str, role: Role, password: str, *, enabled: bool = True) -> UserRecord:
        check_user_name(name)
        check_new_password(name, password)
        if name in self._users:
            raise ApiError(409, f"user {name!r} already exists")
        now = self._clock()
        return self._save_user(
            UserRecord(
                name=name,
                role=role,
                password_hash=hash_password(password),
                enabled=enabled,
                created_at=now,
                updated_at=now,
            )
        )

    def create_bootstrap_admin(self) -> str:
        """Create `admin` with a random password that must be changed at first login; return it."""
        password = generate_password()
        record = self.create_user(BOOTSTRAP_ADMIN, Role.ADMIN, password)
        self._save_user(msgspec.structs.replace(record, must_change_password=True))
        return password

    def update_user(self, name: str, *, role: Role | None = None, enabled: bool | None = None) -> UserRecord:
        record = self._existing(name)
        new_role = record.role if role is None else role
        new_enabled = record.enabled if enabled is None else enabled
        if (new_role != Role.ADMIN or not new_enabled) and self._is_last_admin(record):
            raise ApiError(409, f"{name!r} is the last enabled admin; make another admin first")
        changed = msgspec.structs.replace(record, role=new_role, enabled=new_enabled, updated_at=self._clock())
        if new_role != record.role:
            # Tokens may not outrank their owner: drop those the new role no longer covers.
            for token in self.tokens(owner=name):
                if not role_within(token.role, new_role):
                    self.revoke_token(token.id)
        return self._save_user(changed)

    def delete_user(self, name: str) -> None:
        record = self._existing(name)
        if self._is_last_admin(record):
            raise ApiError(409, f"{name!r} is the last enabled admin; make another admin first")
        for token in self.tokens(owner=name):
            self.revoke_token(token.id)
        self._store.delete(USER_KIND, name)
        self._users.pop(name, None)

    def set_password(self, name: str, password: str, *, must_change: bool = False) -> UserRecord:
        """Set a password; every session of the user issued before now stops working."""
        record = self._existing(name)
        check_new_password(name, password)
        now = self._clock()
        return self._save_user(
            msgspec.structs.replace(
                record,
                password_hash=hash_password(password),
                must_change_password=must_change,
                updated_at=now,
                sessions_valid_after=now,
            )
        )

    # -- tokens ------------------------------------------------------------------------

    def create_token(
        self, *, owner: str, name: str, role: Role | None, expires_at: float | None
    ) -> tuple[TokenRecord, str]:
        """A new token for `owner` with at most the owner's role; returns it and its one-time secret."""
        holder = self._existing(owner)
        token_role = holder.role if role is None else role
        if not role_within(token_role, holder.role):
            raise ApiError(403, f"a token's role may not exceed its owner's ({holder.role})")
        token_id = secrets.token_hex(8)
        secret = secrets.token_urlsafe(32)
        record = TokenRecord(
            id=token_id,
            name=name,
            owner=owner,
            role=token_role,
            secret_hash=token_secret_hash(secret),
            created_at=self._clock(),
            expires_at=expires_at,
        )
        self._store.put(TOKEN_KIND, token_id, msgspec.json.encode(record))
        self._tokens[token_id] = record
        return record, f"{TOKEN_PREFIX}_{token_id}_{secret}"

    def revoke_token(self, token_id: str) -> bool:
        self._tokens.pop(token_id, None)
        return self._store.delete(TOKEN_KIND, token_id)

    # -- internals ---------------------------------------------------------------------

    def _existing(self, name: str) -> UserRecord:
        record = self._users.get(name)
        if record is None:
            raise ApiError(404, f"no user {name!r}")
        return record

    def _is_last_admin(self, record: UserRecord) -> bool:
        if record.role != Role.ADMIN or not record.enabled:
            return False
        return not any(u.role == Role.ADMIN and u.enabled and u.name != record.name for u in self._users.values())

    def _save_user(self, record: UserRecord) -> UserRecord:
        self._store.put(USER_KIND, record.name, msgspec.json.encode(record))
        self._users[record.name] = record
        return record

    def _reload(self) -> None:
        self._users = {key: _USER_DECODER.decode(value) for key, value in self._store.items(USER_KIND)}
        self._tokens = {key: _TOKEN_DECODER.decode(value) for key, value in self._store.items(TOKEN_KIND)}
