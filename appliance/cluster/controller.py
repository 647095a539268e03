"""`/api/v1/nodes` (cluster members) and `/api/v1/cluster` (joining, authorities).

Joining is public: a new node has no account, it has a join token, which `JoinService`
checks. Failed joins are throttled per source address, like logins (each check is reserved
first, so concurrent attempts cannot all slip in before the first failure counts), and every
attempt, a throttled one too, is audited on this node. Join tokens are created on an
authority (a request to another node is forwarded to one). The authority set is only read
here: it is changed by root on an authority's console (`debvisor authorities set`), never
through the API, since any member can write the account records an API credential rests on
(`authority.py`). The internal routes (`/cluster/internal/...`: the CA
key for a newly designated authority, certificate renewal, a join token for a PXE machine
another member approved) answer only members, proven by a
request signed with a registered node certificate (`nodeauth`); each call is audited here.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ssl
import time
from collections import Counter
from typing import Annotated, Any

import msgspec
from litestar import Request, Response, Router, delete, get, post
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, FromQuery, JSONBody

from appliance.api.forward import Forwarder
from appliance.api.openapi import problems, reads_body
from appliance.api.pernode import ACTS_HERE, node_router
from appliance.api.problems import ApiError
from appliance.api.upstream import UpstreamError
from appliance.audit.context import note
from appliance.audit.log import AuditLog
from appliance.auth.access import source_of
from appliance.auth.permissions import PUBLIC, Permission, public, requires
from appliance.auth.principal import Principal
from appliance.auth.throttle import LoginThrottle, retry_after_header
from appliance.cluster.join import CaInfo, JoinRequest, JoinResponse, JoinService, JoinTokenCreated
from appliance.cluster.keeper import CaKeyAnswer, PkiKeeper, RenewAnswer, RenewRequest, parse_addresses
from appliance.cluster.machine_tokens import MachineTokenRequest, machine_created_by
from appliance.cluster.nodeauth import NodeVerifier
from appliance.cluster.service import ClusterService, NodeMember
from appliance.identity import pki
from appliance.node.facts import published_facts
from appliance.node.service import NodeService
from appliance.node.types import Node, NodeFacts


class Totals(msgspec.Struct, frozen=True, kw_only=True):
    """Sums over the members that are alive or suspect."""

    nodes: int
    cpus: int
    memory_bytes: int


class FreshAnswer(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    answered: bool
    seconds: float
    detail: str = ""


class ClusterSummary(msgspec.Struct, frozen=True, kw_only=True):
    """The cluster as this node knows it from gossip; `fresh` when every member was asked."""

    cluster_id: str
    answered_by: str
    members: list[NodeMember]
    states: dict[str, int]
    versions: dict[str, int]
    totals: Totals
    facts: dict[str, NodeFacts] = {}  # what each member last published about itself (down ones too)
    fresh: list[FreshAnswer] | None = None


FRESH_DEADLINE_SECONDS = 2.0


class JoinTokensPost(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    ttl_seconds: Annotated[int, msgspec.Meta(ge=60, le=7 * 86400)] = 3 * 3600


class AuthorityView(msgspec.Struct, frozen=True, kw_only=True):
    """One authority node: who designated it, and whether it holds the CA key yet."""

    name: str
    holds_key: bool
    designated_by: str  # the authority node that signed the designation
    designated_at: float
    requested_by: str = ""  # the admin whose change it was ("" for a default designation)


class CertificateView(msgspec.Struct, frozen=True, kw_only=True):
    """One certificate the cluster issued, from the certificate registry."""

    fingerprint: str
    name: str
    serial: str
    not_after: float
    issued_by: str
    issued_at: float
    revoked: bool


def cluster_routes(cluster: ClusterService, *, forwarder: Forwarder, node_service: NodeService) -> list[Router]:
    """Membership, the cluster summary, and per-node status through any node."""

    @get("/nodes", opt=requires(Permission.NODE_READ), summary="Cluster members and their state")
    async def list_nodes() -> list[NodeMember]:
        return cluster.members()

    @get(
        "/cluster",
        opt=requires(Permission.NODE_READ),
        summary="Cluster summary from replicated state; fresh=true also asks every member (2 s deadline)",
    )
    async def summary(request: Request[Principal, Any, Any], fresh: FromQuery[bool] = False) -> ClusterSummary:
        members = cluster.members()
        live = [m for m in members if m.state in ("alive", "suspect")]
        states = Counter(m.state for m in members)
        versions = Counter(m.version for m in live if m.version)
        facts = published_facts(cluster, {m.name for m in members})
        live_facts = [facts[m.name] for m in live if m.name in facts]
        totals = Totals(
            nodes=len(live),
            cpus=sum(f.cpu.count for f in live_facts),
            memory_bytes=sum(f.memory.total_bytes for f in live_facts),
        )
        asked = [m.name for m in members if m.state != "left"]
        answers = await _ask_everyone(request, asked) if fresh else None
        return ClusterSummary(
            cluster_id=cluster.cluster_id,
            answered_by=cluster.settings.name,
            members=members,
            states=dict(states),
            versions=dict(versions),
            totals=totals,
            facts=facts,
            fresh=answers,
        )

    async def _ask_everyone(request: Request[Principal, Any, Any], names: list[str]) -> list[FreshAnswer]:
        async def ask(name: str) -> FreshAnswer:
            started = time.monotonic()
            try:
                if name == cluster.settings.name:
                    await node_service.get()
                    return FreshAnswer(name=name, answered=True, seconds=0.0)
                status, _ = await asyncio.wait_for(
                    forwarder.get_json(name, f"/api/v1/nodes/{name}", request.user), FRESH_DEADLINE_SECONDS
                )
            except TimeoutError:
                return FreshAnswer(name=name, answered=False, seconds=FRESH_DEADLINE_SECONDS, detail="no answer")
            except (OSError, ssl.SSLError, UpstreamError, ApiError, ValueError) as exc:
                return FreshAnswer(name=name, answered=False, seconds=time.monotonic() - started, detail=str(exc))
            seconds = round(time.monotonic() - started, 4)
            return FreshAnswer(
                name=name, answered=status == 200, seconds=seconds, detail="" if status == 200 else str(status)
            )

        return list(await asyncio.gather(*(ask(n) for n in names)))

    @delete(
        "/{name:str}",
        opt=requires(Permission.CLUSTER_MANAGE, action="cluster.node.remove") | problems(404, 409) | ACTS_HERE,
        summary="Remove a node: revoke its certificate everywhere",
        status_code=204,
    )
    async def remove_node(request: Request[Principal, Any, Any], name: FromPath[str]) -> None:
        note(request, target=name)
        if name == cluster.settings.name:
            raise ApiError(409, "a node cannot remove itself; ask another node")
        if cluster.member(name) is None:
            raise ApiError(404, f"no member {name!r}")
        holders = cluster.authorities.holders()
        if holders == [name]:
            raise ApiError(
                409,
                f"{name!r} is the only node holding the CA key; make another node an authority first "
                f"(`debvisor authorities set` as root on {name}'s console)",
            )
        try:
            revoked = cluster.remove(name)
        except KeyError as exc:
            raise ApiError(409, f"{name!r} has not announced its certificate; it cannot be revoked yet") from exc
        note(request, detail=f"revoked its name and {len(revoked)} certificate(s)")

    @get(
        "/{name:str}",
        opt=requires(Permission.NODE_READ),
        summary="One node's status, answered by that node (through any node)",
        responses={200: ResponseSpec(Node)},
    )
    async def get_node() -> Response[Any]:
        return Response(await node_service.get())

    return [
        Router("/api/v1", route_handlers=[summary, list_nodes], tags=["cluster"]),
        node_router("/api/v1/nodes", [get_node, remove_node], forwarder=forwarder, tags=["cluster"]),
    ]


def join_routes(
    joins: JoinService,
    *,
    cluster: ClusterService,
    throttle: LoginThrottle,
    audit: AuditLog,
    forwarder: Forwarder,
) -> Router:
    """Join tokens, the public CA, and admitting new nodes."""

    @post(
        "/cluster/join-tokens",
        opt=requires(Permission.CLUSTER_MANAGE, action="cluster.token.create") | problems(409, forwards=True),
        summary="A single-use token that lets one new node join (created on an authority node)",
        responses={201: ResponseSpec(JoinTokenCreated)},
    )
    async def create_join_token(request: Request[Principal, Any, Any], data: JSONBody[JoinTokensPost]) -> Response[Any]:
        if not joins.can_sign():
            holders = [
                h
                for h in cluster.authorities.holders()
                if h != cluster.settings.name and (cluster.member_api(h) or ("",))[0] == "alive"
            ]
            if not holders:
                raise ApiError(409, "no certificate authority is alive to issue the token; try again later")
            note(request, target=f"join token (forwarded to {holders[0]})")
            return await forwarder.forward(request, holders[0])
        created = joins.create_token(created_by=request.user.name, ttl=data.ttl_seconds)
        note(request, target=f"join token {created.id}", detail=f"valid {data.ttl_seconds} s")
        return Response(created, status_code=201)

    @get("/cluster/ca", opt=PUBLIC, summary="The cluster CA certificate (public)")
    async def cluster_ca() -> CaInfo:
        return joins.ca_info()

    @post(
        "/cluster/join",
        opt=public(action="cluster.join") | problems(403, 409, 429),
        summary="Admit a new node (token-authenticated)",
        status_code=200,
    )
    async def join(request: Request[Any, Any, Any], data: JSONBody[JoinRequest]) -> JoinResponse:
        source = source_of(request.scope)
        keys = [f"join:{source}"]
        # Reserved before the check, as logins are: attempts in flight count as failures, so a
        # burst of concurrent joins gets no more checks than the failures still free.
        wait = throttle.begin(keys)
        if wait > 0:
            audit.append(
                user=f"node:{data.name}"[:64], source=source, action="cluster.join", target=data.name[:64],
                outcome="throttled", detail=f"token {data.token_id[:32]}: {throttle.failures(keys[0])} failed joins",
            )  # fmt: skip
            raise ApiError(429, "too many failed joins from this address", headers=retry_after_header(wait))
        try:
            response = joins.admit(data, name_in_use=cluster.name_in_use, gossip_seeds=cluster.gossip_seeds())
        except ApiError as exc:
            throttle.release(keys)
            throttle.failed(keys)
            audit.append(
                user=f"node:{data.name}"[:64], source=source, action="cluster.join", target=data.name[:64],
                outcome="denied", detail=f"token {data.token_id[:32]}: {exc.detail}",
            )  # fmt: skip
            raise
        except BaseException:
            throttle.release(keys)
            raise
        throttle.release(keys)
        throttle.succeeded(keys[0])
        authority = "; designated an authority" if joins.authorities.is_authority(data.name) else ""
        audit.append(
            user=f"node:{data.name}", source=source, action="cluster.join", target=data.name,
            outcome="success", detail=f"token {data.token_id}{authority}",
        )  # fmt: skip
        return response

    return Router("/api/v1", route_handlers=[create_join_token, cluster_ca, join], tags=["cluster"])


async def _signed_caller(
    request: Request[Any, Any, Any], action: str, *, verifier: NodeVerifier, audit: AuditLog, here: str
) -> tuple[str, Any]:
    """The member that signed this internal call, and its certificate; a refusal is audited."""
    body = await request.body()
    headers = {k.lower(): v for k, v in request.headers.items()}
    try:
        return verifier.verify(headers, request.method, request.url.path, body)
    except ApiError as exc:
        audit.append(
            user="node:?", source=source_of(request.scope), action=action, target=here,
            outcome="denied", detail=exc.detail,
        )  # fmt: skip
        raise


def authority_routes(*, cluster: ClusterService, keeper: PkiKeeper, verifier: NodeVerifier, audit: AuditLog) -> Router:
    """The authority set, and the internal calls authorities answer for other members."""

    def views() -> list[AuthorityView]:
        return [
            AuthorityView(
                name=name, holds_key=d.holds_key, designated_by=d.by, designated_at=d.at, requested_by=d.requested_by
            )
            for name, d in sorted(cluster.authorities.designated().items())
        ]

    @get("/cluster/authorities", opt=requires(Permission.NODE_READ), summary="The nodes that may sign certificates")
    async def list_authorities() -> list[AuthorityView]:
        return views()

    @get(
        "/cluster/certificates",
        opt=requires(Permission.NODE_READ),
        summary="Every node certificate the cluster issued (the registry) and whether it is revoked",
    )
    async def list_certificates() -> list[CertificateView]:
        return [
            CertificateView(
                fingerprint=fp,
                name=r.name,
                serial=r.serial,
                not_after=r.not_after,
                issued_by=r.issued_by,
                issued_at=r.issued_at,
                revoked=revoked or cluster.is_revoked(fp),
            )
            for fp, r, revoked in sorted(cluster.registry.entries(), key=lambda e: (e[1].name, e[1].issued_at))
        ]

    async def caller(request: Request[Any, Any, Any], action: str) -> tuple[str, Any]:
        return await _signed_caller(request, action, verifier=verifier, audit=audit, here=cluster.settings.name)

    def record(request: Request[Any, Any, Any], action: str, name: str, outcome: Any, detail: str) -> None:
        audit.append(
            user=f"node:{name}", source=source_of(request.scope), action=action, target=name,
            outcome=outcome, detail=detail,
        )  # fmt: skip

    @post(
        "/cluster/internal/ca-key",
        opt=PUBLIC | problems(401, 403, 409, 413),
        summary="Internal: the CA key, for a designated authority (signed node call)",
        status_code=200,
    )
    async def send_ca_key(request: Request[Any, Any, Any]) -> CaKeyAnswer:
        action = "cluster.authority.key.send"
        name, _ = await caller(request, action)
        # Only a designation the CA key signed, recently, of a node still waiting for the key.
        refusal = cluster.authorities.handover_refusal(name, time.time())
        if refusal is not None:
            record(request, action, name, "denied", refusal)
            raise ApiError(403, f"{name!r} is not an authority: {refusal}")
        key = keeper.ca_key
        if key is None:
            raise ApiError(409, "this node does not hold the CA key")
        record(request, action, name, "success", "sent the CA key")
        seen = cluster.authorities.designated().get(name)
        return CaKeyAnswer(ca_key_pem=pki.key_to_pem(key).decode(), designation=seen)

    @post(
        "/cluster/internal/renew",
        opt=PUBLIC | problems(401, 409, 413, 422) | reads_body(RenewRequest),
        summary="Internal: renew the calling node's certificate (signed node call)",
        status_code=200,
    )
    async def renew(request: Request[Any, Any, Any]) -> RenewAnswer:
        action = "cluster.cert.renew"
        name, cert = await caller(request, action)
        key = keeper.ca_key
        if key is None:
            raise ApiError(409, "this node is not a certificate authority")
        try:
            wanted = msgspec.json.decode(await request.body(), type=RenewRequest)
            addresses = parse_addresses(wanted.addresses)
        except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as exc:
            raise ApiError(422, f"bad renewal request: {exc}") from exc
        now = time.time()
        issued = pki.issue_node_cert(
            key, keeper.identity.ca_cert, cert.public_key(), name=name, addresses=addresses,
            now=dt.datetime.fromtimestamp(now, dt.UTC),
        )  # fmt: skip
        cluster.registry.register(issued, issued_by=cluster.settings.name, now=now)
        record(request, action, name, "success", f"issued serial {issued.serial_number:x}")
        return RenewAnswer(node_cert_pem=pki.cert_to_pem(issued).decode())

    return Router(
        "/api/v1",
        route_handlers=[list_authorities, list_certificates, send_ca_key, renew],
        tags=["cluster"],
    )


def machine_token_routes(
    *, cluster: ClusterService, joins: JoinService, verifier: NodeVerifier, audit: AuditLog, ttl: float
) -> Router:
    """The internal call a boot server that is not an authority makes for an approved PXE machine."""
    action = "cluster.token.create"

    def denied(request: Request[Any, Any, Any], name: str, detail: str) -> None:
        audit.append(
            user=f"node:{name}", source=source_of(request.scope), action=action, target=name,
            outcome="denied", detail=detail,
        )  # fmt: skip

    @post(
        "/cluster/internal/join-token",
        opt=PUBLIC | problems(401, 403, 409, 413, 422) | reads_body(MachineTokenRequest),
        summary="Internal: a short-lived join token for a PXE machine a member approved (signed node call)",
        status_code=201,
    )
    async def machine_token(request: Request[Any, Any, Any]) -> JoinTokenCreated:
        # Any registered, unrevoked member may ask: a member can already create tokens by
        # forwarding as an admin (machine_tokens.py says why this adds nothing).
        name, _ = await _signed_caller(request, action, verifier=verifier, audit=audit, here=cluster.settings.name)
        try:
            wanted = msgspec.json.decode(await request.body(), type=MachineTokenRequest)
            created_by = machine_created_by(wanted.mac, wanted.approver, name)
        except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as exc:
            denied(request, name, f"bad machine token request: {str(exc)[:200]}")
            raise ApiError(422, f"bad machine token request: {str(exc)[:200]}") from exc
        if not cluster.name_in_use(name):
            denied(request, name, "not a member (left or removed)")
            raise ApiError(403, f"{name!r} is not a member of this cluster")
        if not joins.can_sign():
            denied(request, name, "this node is not a certificate authority")
            raise ApiError(409, "this node is not a certificate authority")
        created = joins.create_token(created_by=created_by, ttl=ttl)
        audit.append(
            user=f"node:{name}", source=source_of(request.scope), action=action, target=f"join token {created.id}",
            outcome="success",
            detail=f"for PXE machine {wanted.mac} approved by {wanted.approver}, asked by node {name}; "
            f"valid {ttl:g} s",
        )  # fmt: skip
        return created

    return Router("/api/v1", route_handlers=[machine_token], tags=["cluster"])
