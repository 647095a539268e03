"""The auth subsystem: accounts, sessions, API tokens, the login throttle and the access gate.

The gate (appliance/auth/access.py) is the app's middleware, so `build` hands it back beside
the subsystem; the accounts and the login throttle are handed to the subsystems that use them
(the cluster's join route throttles failed joins like failed logins).
"""

from __future__ import annotations

from dataclasses import dataclass

from appliance.auth.access import METRICS_BURST, METRICS_RATE, AccessGate
from appliance.auth.accounts import AccountService
from appliance.auth.controller import auth_routes
from appliance.auth.principal import Authenticator
from appliance.auth.sessions import SessionStore
from appliance.auth.throttle import LoginThrottle, RateLimiter
from appliance.auth.throttle_store import SqliteBackoffStore
from appliance.auth.token_use import TokenUse
from appliance.auth.tokens_controller import tokens_routes
from appliance.auth.users_controller import users_routes
from appliance.subsystem import HOUSEKEEPING_SECONDS, Core, Subsystem, every


@dataclass(frozen=True)
class Auth:
    """The auth subsystem and what other parts of the node use of it."""

    subsystem: Subsystem
    accounts: AccountService
    login_throttle: LoginThrottle
    gate: AccessGate


def build(core: Core) -> Auth:
    settings = core.auth
    accounts = AccountService(core.config, clock=core.clock, monotonic=core.monotonic)
    sessions = SessionStore(
        core.db,
        idle_timeout=settings.session_idle_seconds,
        lifetime=settings.session_lifetime_seconds,
        clock=core.clock,
    )
    token_use = TokenUse(core.db)
    limiter = RateLimiter(settings.rate_limit, settings.rate_burst, core.monotonic)
    login_throttle = LoginThrottle(
        clock=core.clock, store=SqliteBackoffStore(core.db)
    )  # wall time: it outlives a reboot
    authenticator = Authenticator(accounts, sessions, token_use, core.clock, verify_forwarded=core.forwarder.verify)
    # Metrics reads spend their own bucket (appliance/auth/access.py); off when the limit is off.
    metrics_limiter = RateLimiter(METRICS_RATE if settings.rate_limit > 0 else 0.0, METRICS_BURST, core.monotonic)
    gate = AccessGate(authenticator, limiter, core.audit, metrics_limiter)
    subsystem = Subsystem(
        name="auth",
        routes=[
            auth_routes(accounts, sessions, login_throttle, core.audit),
            users_routes(accounts, sessions, login_throttle),
            tokens_routes(accounts, token_use, core.clock),
        ],
        tasks=[every("auth-housekeeping", HOUSEKEEPING_SECONDS, sessions.prune, login_throttle.prune)],
    )
    return Auth(subsystem, accounts, login_throttle, gate)
