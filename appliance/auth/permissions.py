"""Roles, the permissions they hold, and how routes declare what they need.

The four roles are the seed's table: admin (everything, including users and roles),
operator (cluster operations, no user or role changes), viewer (read-only dashboards) and
developer (Kubernetes workloads). Every route states the permission it needs in its `opt`
(`opt=requires(Permission.NODE_READ)`) or that it is public (`opt=PUBLIC`); the access gate
denies any route that declares neither, so a forgotten declaration fails closed.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from litestar.handlers.base import BaseRouteHandler
from litestar.handlers.http_handlers import HTTPRouteHandler

PERMISSION_KEY = "permission"
PUBLIC_KEY = "public"
ACTION_KEY = "action"
BEFORE_PASSWORD_CHANGE_KEY = "before_password_change"  # noqa: S105 - an opt key


class Permission(StrEnum):
    """Actions a route can require, named `<resource>:<verb>`."""

    SELF = "self:manage"  # one's own password, sessions and API tokens
    NODE_READ = "node:read"
    NODE_WRITE = "node:write"
    METRICS_READ = "metrics:read"
    API_DOCS_READ = "apidocs:read"
    AUDIT_READ = "audit:read"
    USERS_MANAGE = "users:manage"
    TOKENS_MANAGE = "tokens:manage"  # other users' API tokens
    CLUSTER_MANAGE = "cluster:manage"  # join tokens, removing nodes
    NETWORK_READ = "network:read"  # nodes' network configuration and status, overlay networks
    NETWORK_MANAGE = "network:manage"  # apply/confirm/roll back host networking, define overlays
    PXE_MANAGE = "pxe:manage"  # a node's PXE boot server; its settings hold join tokens, so reading too
    UNITS_READ = "units:read"  # nodes' systemd units, unit files and timers
    UNITS_MANAGE = "units:manage"  # start, stop, enable, mask ... systemd units
    UNITS_FORCE = "units:force"  # act on a protected unit (stop the appliance, D-Bus, the journal ...)
    JOURNAL_READ = "journal:read"  # a node's journal (services' logs can hold what viewers should not read)
    NODE_POWER = "node:power"  # reboot or power off a node
    UNIT_FILES_EDIT = "unitfiles:edit"  # read, create, edit and revert unit files (they may hold secrets)
    UNITS_RUN = "units:run"  # run one-off commands as transient units (root on the node)


class Role(StrEnum):
    ADMIN = "admin"
    OPERATOR = "operator"
    VIEWER = "viewer"
    DEVELOPER = "developer"


ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.ADMIN: frozenset(Permission),
    Role.OPERATOR: frozenset(
        {
            Permission.SELF,
            Permission.NODE_READ,
            Permission.NODE_WRITE,
            Permission.METRICS_READ,
            Permission.API_DOCS_READ,
            Permission.AUDIT_READ,
            Permission.NETWORK_READ,
            Permission.NETWORK_MANAGE,
            Permission.PXE_MANAGE,
            Permission.UNITS_READ,
            Permission.UNITS_MANAGE,
            Permission.JOURNAL_READ,
        }
    ),
    Role.VIEWER: frozenset(
        {
            Permission.SELF,
            Permission.NODE_READ,
            Permission.METRICS_READ,
            Permission.API_DOCS_READ,
            Permission.NETWORK_READ,
            Permission.UNITS_READ,
        }
    ),
    Role.DEVELOPER: frozenset({Permission.SELF, Permission.NODE_READ, Permission.API_DOCS_READ}),
}


# What a client's role needs to receive each type of event on `GET /api/v1/events` (the
# types are in appliance/events/types.py; an event of a type missing here is sent to nobody).
EVENT_PERMISSIONS: dict[str, Permission] = {
    "membership": Permission.NODE_READ,
    "facts": Permission.NODE_READ,
    "config": Permission.AUDIT_READ,  # kinds and keys name users and tokens: what the audit log says
    "audit": Permission.AUDIT_READ,
    "network": Permission.NETWORK_READ,
    "pxe": Permission.PXE_MANAGE,
    "history": Permission.NODE_READ,  # a node's resource sample every 5 s, as its history route
    "unit": Permission.UNITS_READ,
    "power": Permission.NODE_READ,
}


def role_within(role: Role, holder: Role) -> bool:
    """True when `role` grants nothing that `holder` lacks (a token may not outrank its owner)."""
    return ROLE_PERMISSIONS[role] <= ROLE_PERMISSIONS[holder]


def requires(
    permission: Permission, *, action: str | None = None, before_password_change: bool = False
) -> dict[str, Any]:
    """The `opt` a route handler passes: the permission it needs and the audit action it records.

    `before_password_change` lets a user whose password must be changed still call the route.
    """
    opt: dict[str, Any] = {PERMISSION_KEY: permission}
    if action is not None:
        opt[ACTION_KEY] = action
    if before_password_change:
        opt[BEFORE_PASSWORD_CHANGE_KEY] = True
    return opt


PUBLIC: dict[str, Any] = {PUBLIC_KEY: True}


def public(*, action: str) -> dict[str, Any]:
    """`opt` of a public route that still records an audit action (login)."""
    return {PUBLIC_KEY: True, ACTION_KEY: action}


def declared_permission(handler: BaseRouteHandler) -> Permission | None:
    value = handler.opt.get(PERMISSION_KEY)
    return value if isinstance(value, Permission) else None


def is_public(handler: BaseRouteHandler) -> bool:
    """Declared public, or Litestar's automatic OPTIONS answer (it only lists allowed methods)."""
    if handler.opt.get(PUBLIC_KEY) is True:
        return True
    return isinstance(handler, HTTPRouteHandler) and handler.http_methods == {"OPTIONS"} and not handler.opt
