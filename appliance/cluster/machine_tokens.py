"""Join tokens for PXE machines approved on any node, authority or not.

A boot server hands an approved machine its join token on the machine's poll
(`pxe.enrol_service`). Only a certificate authority issues tokens (`join.py`), so a boot
server that is not one asks a live authority over a signed node call (`nodeauth`) at
MACHINE_TOKEN_PATH. The authority makes a short-lived token (the machine token TTL) whose
record names the machine's MAC, its approver and the requesting node, audits it there as
`cluster.token.create`, and answers with it. The token's seed is the authority's API address
and it is redeemable only there, so the machine joins at the authority, not at its boot server.

When no authority answers (none alive, all refusing or slow) `MachineTokens.issue` raises
`NoAuthority`: the boot server tells the machine to keep waiting, it never fails it.

What the route gives a member: a 15-minute single-use token. A member that is compromised can
already get more (a token of up to 7 days) by forwarding `POST /cluster/join-tokens` as any
enabled admin (forwarding, `appliance/auth/principal.py`): the route adds nothing to what a
member key opens; see docs/pxe.md.
"""

from __future__ import annotations

import asyncio
import re
import ssl
from collections.abc import Callable

import msgspec

from appliance.api.problems import ApiError
from appliance.api.upstream import UpstreamError
from appliance.auth.types import USER_NAME
from appliance.cluster.join import JoinService, JoinTokenCreated
from appliance.cluster.nodeauth import NodeCaller

MACHINE_TOKEN_PATH = "/api/v1/cluster/internal/join-token"  # noqa: S105 - a route
# The machine's own poll times out after 10 s; the authorities are asked within this budget so
# its answer (a token, or "keep waiting") reaches it first.
ASK_BUDGET_SECONDS = 6.0
_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")


class MachineTokenRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Ask an authority for a machine's join token (the caller is the boot server node)."""

    mac: str  # normalized aa:bb:cc:dd:ee:ff
    approver: str  # the user who approved it, or "policy"


class NoAuthority(Exception):
    """No authority issued the token now; the message says why (for the machine and the operator)."""


def machine_created_by(mac: str, approver: str, node: str | None) -> str:
    """The `created_by` of a machine's token: its MAC, its approver, and the boot server that
    asked for it (None: this node issued it itself). ValueError for a malformed MAC or approver."""
    if not _MAC.match(mac):
        raise ValueError(f"mac: {mac[:40]!r} is not a normalized MAC address")
    if not re.match(USER_NAME, approver):  # a user's name, or "policy"
        raise ValueError(f"approver: {approver[:40]!r} is not a user name")
    via = f" via {node}" if node is not None else ""
    return f"pxe:{mac} approved by {approver}{via}"


def live_authorities(
    holders: list[str], me: str, member_api: Callable[[str], tuple[str, str] | None]
) -> list[tuple[str, str]]:
    """(name, API address) of the key holders gossip says are alive, other than this node."""
    found: list[tuple[str, str]] = []
    for name in holders:
        member = member_api(name)
        if name != me and member is not None and member[0] == "alive" and member[1]:
            found.append((name, member[1]))
    return found


class MachineTokens:
    """Makes an approved machine's join token here, or has a live authority make it."""

    def __init__(
        self,
        *,
        joins: JoinService,
        holders: Callable[[], list[str]],
        member_api: Callable[[str], tuple[str, str] | None],
        caller: NodeCaller,
        ttl: float,
        budget: float = ASK_BUDGET_SECONDS,
    ) -> None:
        self._joins = joins
        self._holders = holders
        self._member_api = member_api
        self._caller = caller
        self._ttl = ttl
        self._budget = budget

    async def issue(self, mac: str, approver: str) -> JoinTokenCreated:
        """The machine's token; NoAuthority (with the reason) if no authority made one now."""
        if self._joins.can_sign():
            try:
                return self._joins.create_token(created_by=machine_created_by(mac, approver, None), ttl=self._ttl)
            except ApiError:
                pass  # the key went since (the authority set changed): ask an authority instead
        authorities = live_authorities(self._holders(), self._joins.name, self._member_api)
        if not authorities:
            known = ", ".join(self._holders()) or "none known"
            raise NoAuthority(f"waiting for a certificate authority: none is alive (authorities: {known})")
        reasons: list[str] = []
        request = MachineTokenRequest(mac=mac, approver=approver)
        try:
            async with asyncio.timeout(self._budget):
                for name, api in authorities:
                    try:
                        status, body = await self._caller.post(api, MACHINE_TOKEN_PATH, request)
                    except (OSError, ssl.SSLError, UpstreamError, TimeoutError) as exc:
                        reasons.append(f"{name} unreachable ({type(exc).__name__})")
                        continue
                    if status != 201:
                        reasons.append(f"{name} answered {status}: {_detail(body)}")
                        continue
                    try:
                        return msgspec.json.decode(body, type=JoinTokenCreated)
                    except msgspec.DecodeError:
                        reasons.append(f"{name} answered something that is not a join token")
        except TimeoutError:
            reasons.append(f"no answer within {self._budget:g} s")
        raise NoAuthority("waiting for a certificate authority: " + "; ".join(reasons))


def _detail(body: bytes) -> str:
    try:
        return str(msgspec.json.decode(body).get("detail") or "")[:200]
    except (msgspec.DecodeError, AttributeError):
        return body[:200].decode(errors="replace")
