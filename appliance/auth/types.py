"""Wire and storage types of accounts, sessions and API tokens.

`UserRecord` and `TokenRecord` are what the cluster configuration map stores (kinds "user"
and "token"); they are the units the cluster-state issue replicates, so new fields get
defaults and nothing is renamed. The other Structs are API bodies.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from appliance.auth.permissions import Role

USER_NAME = r"^[a-z_][a-z0-9_.-]{0,31}$"
MIN_PASSWORD = 12
MAX_PASSWORD = 256

UserName = Annotated[str, msgspec.Meta(pattern=USER_NAME, description="lowercase login name, at most 32 characters")]
Password = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_PASSWORD)]
NewPassword = Annotated[
    str,
    msgspec.Meta(min_length=MIN_PASSWORD, max_length=MAX_PASSWORD, description=f"at least {MIN_PASSWORD} characters"),
]
TokenName = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[\w .:@/-]+$")]


class UserRecord(msgspec.Struct, frozen=True, kw_only=True):
    """A local account as stored in the configuration map."""

    name: str
    role: Role
    password_hash: str
    enabled: bool = True
    must_change_password: bool = False
    created_at: float
    updated_at: float
    sessions_valid_after: float = 0.0  # sessions issued before this instant are void


class TokenRecord(msgspec.Struct, frozen=True, kw_only=True):
    """An API token as stored in the configuration map; the secret itself is never stored."""

    id: str
    name: str
    owner: str
    role: Role
    secret_hash: str
    created_at: float
    expires_at: float | None = None


class User(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    role: Role
    enabled: bool
    must_change_password: bool
    created_at: float
    updated_at: float


class UsersPost(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    name: UserName
    role: Role
    password: NewPassword
    enabled: bool = True


class UserPatch(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    role: Role | None = None
    enabled: bool | None = None


class PasswordChange(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    new_password: NewPassword
    current_password: Password | None = None  # required when changing one's own password


class LoginRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    username: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    password: Password


class SessionCreated(msgspec.Struct, frozen=True, kw_only=True):
    """Answer to a login: the session cookie is set; unsafe requests must send `csrf_token`."""

    user: str
    role: Role
    session_id: str
    csrf_token: str
    must_change_password: bool
    idle_timeout_seconds: int
    expires_at: float


class SessionInfo(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    created_at: float
    last_seen: float
    source: str
    user_agent: str
    current: bool


class Whoami(msgspec.Struct, frozen=True, kw_only=True):
    user: str
    role: Role
    permissions: list[str]
    via: Literal["session", "token", "forwarded"]
    must_change_password: bool
    csrf_token: str | None = None


class TokensPost(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    name: TokenName
    role: Role | None = None  # default: the creator's role; never more than it
    expires_in_seconds: Annotated[int, msgspec.Meta(ge=60, le=10 * 365 * 86400)] | None = None


class Token(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    name: str
    owner: str
    role: Role
    created_at: float
    expires_at: float | None
    last_used: float | None


class TokenCreated(msgspec.Struct, frozen=True, kw_only=True):
    """The new token; `secret` is shown this once and cannot be read again."""

    token: Token
    secret: str
