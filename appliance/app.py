"""Assemble the appliance's HTTP application: the one place that lists every part.

`create_app` takes the node's opened state and the adapters it should drive, builds the
services, and wires routes, the access gate, error handlers, OpenAPI and metrics. Nothing
registers itself by being imported; to find what the API serves, read this file. Routes are
built around the services they call, so no dependency is looked up per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass

from litestar import Litestar, Router
from litestar.enums import ScopeType
from litestar.middleware import DefineMiddleware
from litestar.openapi import OpenAPIConfig
from litestar.types import ASGIApp, Scope
from prometheus_client import CollectorRegistry

from appliance import __version__
from appliance.api.docs_page import docs_routes
from appliance.api.forward import MAX_SKEW_SECONDS, Forwarder
from appliance.api.openapi import DocumentPlugin, prepare
from appliance.api.problems import EXCEPTION_HANDLERS
from appliance.audit.anchor import cluster_trust
from appliance.audit.anchoring import AnchorBook, Anchorer
from appliance.audit.controller import audit_routes
from appliance.audit.log import AuditLog
from appliance.auth.access import METRICS_BURST, METRICS_RATE, AccessGate, AccessMiddleware
from appliance.auth.accounts import AccountService
from appliance.auth.controller import auth_routes
from appliance.auth.permissions import Permission, requires
from appliance.auth.principal import Authenticator, Principal
from appliance.auth.sessions import SessionStore
from appliance.auth.throttle import LoginThrottle, RateLimiter
from appliance.auth.throttle_store import SqliteBackoffStore
from appliance.auth.token_use import TokenUse
from appliance.auth.tokens_controller import tokens_routes
from appliance.auth.users_controller import users_routes
from appliance.bootstrap import OpenedNode
from appliance.cluster.controller import (
    authority_routes,
    cluster_routes,
    join_routes,
    machine_token_routes,
)
from appliance.cluster.join import JoinService
from appliance.cluster.keeper import PkiKeeper
from appliance.cluster.machine_tokens import MachineTokens, NoAuthority
from appliance.cluster.nodeauth import NodeVerifier
from appliance.cluster.nonces import NonceLedger
from appliance.cluster.service import ClusterService, ClusterSettings
from appliance.cluster.swim import Config, EventKind
from appliance.cluster.transport import tls_contexts
from appliance.health.controller import health_routes
from appliance.health.readiness import Readiness
from appliance.metrics.controller import metrics_routes
from appliance.metrics.http import HttpMetrics, MetricsMiddleware, new_registry
from appliance.network.controller import network_routes, overlay_routes
from appliance.network.overlay_config import Endpoint, gossip_host
from appliance.network.overlays import OverlayStore
from appliance.network.reconciler import OVERLAY_SUBDIR, OverlayReconciler
from appliance.network.service import NetworkService, NetworkSettings
from appliance.node.controller import node_routes
from appliance.node.enlist import Enlister, EnlistTarget
from appliance.node.facts import publish_facts, published_facts
from appliance.node.host import HostProbe
from appliance.node.inventory import collect
from appliance.node.service import NodeService
from appliance.pxe.controller import pxe_config_routes
from appliance.pxe.enrol_routes import enrol_routes
from appliance.settings import AuthSettings
from appliance.store.config import ConfigStore
from appliance.store.hlc import HybridClock
from netconfig.state import StateDir
from pxe.enlistment import EnlistmentStore
from pxe.enrol_service import EnrolmentService, IssuedToken, TokenUnavailable
from pxe.enrolment import TOKEN_TTL as MACHINE_TOKEN_TTL
from pxe.enrolment import EnrolmentStore
from pxe.http import pxe_routes
from pxe.inventory import Inventory
from pxe.service import PxeService, PxeSettings, load_config, save_config

API_ROOT = "/api/v1"
MAX_BODY_BYTES = 1024 * 1024
HOUSEKEEPING_SECONDS = 60.0
PXE_SUBDIR = "pxe"  # in the data dir: the node's PXE settings and dnsmasq's leases
PUBLISH_SECONDS = 30.0  # how often this node's facts are checked for changes
CERT_CHECK_SECONDS = 12 * 3600.0  # certificates are renewed 30 days before they expire
CERT_FIRST_CHECK_SECONDS = 60.0  # after a start: a certificate missing a new address is renewed soon
KEY_SYNC_SECONDS = 2.0  # how often a node checks the authority set against its CA key copy

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Appliance:
    """The assembled app: the ASGI callable to serve, and the parts tests and the server reach."""

    asgi: ASGIApp
    litestar: Litestar
    readiness: Readiness
    registry: CollectorRegistry
    node_service: NodeService
    accounts: AccountService
    sessions: SessionStore
    audit: AuditLog
    limiter: RateLimiter
    login_throttle: LoginThrottle
    cluster: ClusterService
    joins: JoinService
    network: NetworkService
    overlays: OverlayReconciler
    pxe: PxeService
    pxe_asgi: ASGIApp  # the public /pxe boot files, for the plain-HTTP listener only


def create_app(  # noqa: PLR0915 - the one assembly list; per-subsystem builders will shorten it
    node: OpenedNode,
    *,
    host: HostProbe,
    auth: AuthSettings | None = None,
    cluster_settings: ClusterSettings | None = None,
    api_advertise: str = "127.0.0.1:8443",
    network: NetworkSettings | None = None,
    pxe: PxeSettings | None = None,
    enlist: EnlistTarget | None = None,
    clock: Callable[[], float] = time.time,
    monotonic: Callable[[], float] = time.monotonic,
) -> Appliance:
    """Build the appliance for an opened node, driving the host through `host`.

    `cluster_settings` defaults to gossip on a free loopback port with no seeds (a node of
    its own, as unit tests want). `network` says which kernel networking the node manages
    (default: its own namespace, through netlink). `clock` (wall time) and `monotonic` are injectable so tests
    can move time. `pxe` says where the boot files are and whether dnsmasq may run. `enlist`
    says where this machine reports its inventory at start-up (None: it does not).
    """
    auth = auth or AuthSettings()
    cluster_settings = cluster_settings or ClusterSettings(
        name=node.name,
        cluster_id=node.cluster_id,
        listen_host="127.0.0.1",
        listen_port=0,
        advertise="127.0.0.1:0",
        meta=node_meta(node, api_advertise),
        seeds=[],
        config=Config(),
    )
    readiness = Readiness()
    for subsystem in ("database", "identity", "api", "gossip", "network"):
        readiness.register(subsystem)
    readiness.set("database", True, f"schema version {node.db.version}")
    readiness.set("identity", True, f"CA {node.identity.ca_fingerprint[:16]}")

    registry = new_registry()
    node_service = NodeService(
        db=node.db,
        host=host,
        name=node.name,
        node_id=node.node_id,
        cluster_id=node.cluster_id,
        version=__version__,
        data_dir=node.datadir.root,
    )
    config = ConfigStore(node.db, HybridClock(node.node_id, clock), wall=clock)
    accounts = AccountService(config, clock=clock, monotonic=monotonic)
    sessions = SessionStore(
        node.db, idle_timeout=auth.session_idle_seconds, lifetime=auth.session_lifetime_seconds, clock=clock
    )
    token_use = TokenUse(node.db)
    audit = AuditLog(node.db, node.name, clock)
    limiter = RateLimiter(auth.rate_limit, auth.rate_burst, monotonic)
    login_throttle = LoginThrottle(clock=clock, store=SqliteBackoffStore(node.db))  # wall time: it outlives a reboot
    authenticator = Authenticator(accounts, sessions, token_use, clock)
    # Metrics reads spend their own bucket (appliance/auth/access.py); off when the limit is off.
    metrics_limiter = RateLimiter(METRICS_RATE if auth.rate_limit > 0 else 0.0, METRICS_BURST, monotonic)
    gate = AccessGate(authenticator, limiter, audit, metrics_limiter)
    server_context, client_context = tls_contexts(
        node.identity.ca_cert_path, node.identity.node_cert_path, node.identity.node_key_path
    )
    cluster = ClusterService(
        cluster_settings,
        server_context=server_context,
        client_context=client_context,
        db=node.db,
        config_store=config,
        audit=audit,
        ca_cert=node.identity.ca_cert,
        registry=registry,
    )
    # The forwarder refuses a certificate that is revoked *or* not in the certificate registry.
    forwarder = Forwarder(
        identity=node.identity,
        member_api=cluster.member_api,
        is_revoked=cluster.cert_refused,
        accept_nonce=NonceLedger(node.db, margin=MAX_SKEW_SECONDS, clock=clock).accept,
        clock=clock,
    )
    keeper = PkiKeeper(
        identity=node.identity,
        registry=cluster.registry,
        authorities=cluster.authorities,
        member_api=cluster.member_api,
        audit=audit,
        addresses=node.cert_addresses,
        clock=clock,
    )

    def forwarded(scope: Scope) -> Principal:
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        method = str(scope["method"]) if scope["type"] == ScopeType.HTTP else ""
        claim = forwarder.verify(headers, method, scope["path"])
        return authenticator.vouched(
            user=claim.user,
            kind=claim.via,
            credential_id=claim.credential_id,
            claimed_role=claim.role,
            node=claim.node,
            source=claim.source,
        )

    authenticator.forwarded = forwarded
    # Audit anchoring: this node's chain head, signed and gossiped; the others' heads, checked and kept.
    anchorer = Anchorer(
        db=node.db,
        book=AnchorBook(node.db, clock=clock),
        name=node.name,
        key=node.identity.node_key,
        cert_path=node.identity.node_cert_path,
        publish=cluster.publish,
        published=cluster.published,
        trust=cluster_trust(node.identity.ca_cert, cluster.cert_refused),
        clock=clock,
    )
    cluster.node_state.on_change(anchorer.receive)
    cluster.on_event(lambda event: anchorer.book.forget(event.name) if event.kind == EventKind.REVOKED else None)
    registry.register(anchorer)
    joins = JoinService(
        store=config,
        db=node.db,
        identity=node.identity,
        cluster_id=node.cluster_id,
        api_seeds=lambda: [api_advertise],
        ca_key=lambda: keeper.ca_key,
        clock=clock,
    )

    network = network or NetworkSettings()
    overlay_store = OverlayStore(config, clock)
    reconciler: OverlayReconciler | None = None
    network_service = NetworkService(
        name=node.name,
        data_dir=node.datadir.root,
        settings=network,
        reserved=lambda: {link: r.name for r in overlay_store.all() for link in (r.bridge, r.vxlan)},
        overlays=lambda: reconciler.states if reconciler is not None else [],
        clock=clock,
    )
    reconciler = OverlayReconciler(
        overlays=overlay_store,
        endpoints=lambda: _overlay_endpoints(cluster),
        reserved=network_service.configured_names,
        adapter=network.make_adapter(),
        state=StateDir(network_service.path / OVERLAY_SUBDIR),
        resync_seconds=network.overlay_resync_seconds,
    )
    overlay_store.on_change(reconciler.kick)
    cluster.on_event(lambda _event: reconciler.kick())

    pxe = pxe or PxeSettings()
    pxe_dir = node.datadir.root / PXE_SUBDIR
    pxe_config = pxe_dir / "config.json"

    async def interface_ipv4(name: str) -> str | None:
        found = (a.address for a in await host.addresses() if a.interface == name and a.family == "inet")
        return next(found, None)

    # PXE enrolment: machines present the single-use credential of their boot script over TLS
    # and get a join token (handed over once) only after approval: made here on an authority,
    # else by a live authority over a signed node call (the machine then joins there).
    node_verifier = NodeVerifier(node.identity.ca_cert, cluster.cert_refusal, clock)  # one nonce memory
    machine_tokens = MachineTokens(
        joins=joins,
        holders=cluster.authorities.holders,
        member_api=cluster.member_api,
        caller=keeper.caller,
        ttl=MACHINE_TOKEN_TTL,
    )
    enrolments = EnrolmentService(
        EnrolmentStore(node.db),
        ca_fingerprint=node.identity.ca_fingerprint,
        servers=lambda: [api_advertise],
        issue_token=lambda mac, approver: _machine_token(machine_tokens, node.name, mac, approver),
        policy=lambda: pxe_service.policy(),  # noqa: PLW0108 - pxe_service is made below
        name_for=lambda mac: pxe_service.name_of(mac),  # noqa: PLW0108
        audit=lambda **entry: _audit_enrolment(audit, **entry),
        clock=clock,
        credential_ttl=lambda: pxe_service.config().credential_seconds,
    )
    pxe_service = PxeService(
        load_config(pxe_config),
        boot_files=pxe.boot_files,
        state_dir=pxe_dir,
        save=lambda config: save_config(pxe_config, config),
        tftp_root=pxe.tftp_root,
        run_dnsmasq=pxe.run_dnsmasq,
        http_listener=pxe.http_listener,
        # The boot-file app is built from this service just below; the listener loads it when it opens.
        listener=pxe.listener(lambda: pxe_app) if pxe.listener is not None else None,
        interface_ipv4=interface_ipv4,
        clock=clock,
        machines=EnlistmentStore(node.db),
        is_member=cluster.name_in_use,
        on_enlisted=lambda mac, ip, inventory: _audit_enlisted(audit, mac, ip, inventory),
        enrolments=enrolments,
    )
    # Booting machines have no credentials: the boot files get their own app, without the
    # access gate, served only on the plain-HTTP listener; the API never answers /pxe.
    pxe_app = Litestar(
        route_handlers=[pxe_routes(pxe_service)],
        exception_handlers=EXCEPTION_HANDLERS,  # type: ignore[arg-type]
        logging_config=None,
        debug=False,
        openapi_config=None,
    )
    enlister = Enlister(enlist, lambda: collect(name=node.name, version=__version__)) if enlist is not None else None

    lifespan = _lifespan(
        publish_facts=lambda: publish_facts(cluster, node.name, node_service.get, clock),
        housekeeping=[
            sessions.prune,
            joins.prune,
            config.purge_tombstones,
            login_throttle.prune,
            lambda: cluster.registry.prune(clock()),
        ],
        readiness=readiness,
        cluster=cluster,
        forwarder=forwarder,
        anchorer=anchorer,
        keeper=keeper,
        clock=clock,
        contexts=(server_context, client_context),
        network=network_service,
        reconciler=reconciler,
        pxe=pxe_service,
        enlister=enlister,
    )

    openapi = OpenAPIConfig(
        title="DebVisor",
        version=__version__,
        description="Cluster-wide REST API of a DebVisor node. Every node serves the whole API.",
        # The router's own path is the document's URL: Litestar adds a catch-all 404 page below
        # its router, which must not shadow the API's problem+json 404s under /api/v1.
        # The served document is completed with every route's problem answers (api/openapi.py).
        render_plugins=[DocumentPlugin(path="/")],
        openapi_router=Router(
            path=f"{API_ROOT}/openapi.json",
            route_handlers=[],
            include_in_schema=False,
            opt=requires(Permission.API_DOCS_READ),
        ),
    )
    litestar = Litestar(
        route_handlers=[
            health_routes(readiness),
            metrics_routes(registry, cluster.members),
            docs_routes(),
            node_routes(node_service),
            auth_routes(accounts, sessions, login_throttle, audit),
            users_routes(accounts, sessions, login_throttle),
            tokens_routes(accounts, token_use, clock),
            audit_routes(
                audit, local_node=node.name, members=cluster.live_names, fetch=forwarder.fetch, anchorer=anchorer
            ),
            cluster_routes(cluster, forwarder=forwarder, node_service=node_service),
            join_routes(joins, cluster=cluster, throttle=login_throttle, audit=audit, forwarder=forwarder),
            authority_routes(
                cluster=cluster,
                keeper=keeper,
                verifier=node_verifier,
                audit=audit,
            ),
            machine_token_routes(
                cluster=cluster, joins=joins, verifier=node_verifier, audit=audit, ttl=MACHINE_TOKEN_TTL
            ),
            network_routes(network_service, forwarder=forwarder),
            overlay_routes(overlay_store),
            pxe_config_routes(pxe_service, local=node.name, forwarder=forwarder),
            enrol_routes(enrolments, enabled=pxe_service.enabled),
        ],
        middleware=[DefineMiddleware(AccessMiddleware, gate=gate)],
        exception_handlers=EXCEPTION_HANDLERS,  # type: ignore[arg-type]
        openapi_config=openapi,
        request_max_body_size=MAX_BODY_BYTES,
        lifespan=[lifespan],
        logging_config=None,
        debug=False,
    )
    prepare(litestar)
    asgi = MetricsMiddleware(litestar, HttpMetrics(registry))
    return Appliance(
        asgi,
        litestar,
        readiness,
        registry,
        node_service,
        accounts,
        sessions,
        audit,
        limiter,
        login_throttle,
        cluster,
        joins,
        network_service,
        reconciler,
        pxe_service,
        pxe_app,
    )


def _audit_enlisted(audit: AuditLog, mac: str, ip: str, inventory: Inventory) -> None:
    """Audit a machine's report: who (its MAC, from where) and a summary of what it said."""
    disks = sum(d.size_bytes for d in inventory.disks)
    audit.append(
        user=f"machine:{mac}",
        source=ip,
        action="pxe.enlist",
        target=f"machine {mac}",
        outcome="success",
        detail=f"{inventory.cpu_count} CPUs, {inventory.memory_bytes} B memory, "
        f"{len(inventory.disks)} disks ({disks} B), {len(inventory.nics)} NICs",
    )


async def _machine_token(tokens: MachineTokens, me: str, mac: str, approver: str) -> IssuedToken:
    """A join token for an approved PXE machine, from this node or a live authority."""
    try:
        created = await tokens.issue(mac, approver)
    except NoAuthority as exc:
        raise TokenUnavailable(str(exc)) from exc
    issuer = created.issuer if created.issuer != me else ""
    return IssuedToken(token=created.token, id=created.id, expires_at=created.expires_at, issuer=issuer)


def _audit_enrolment(audit: AuditLog, *, mac: str, source: str, action: str, outcome: str, detail: str) -> None:
    """Audit an enrolling machine's request under its MAC (never a credential or token)."""
    audit.append(
        user=f"machine:{mac}",
        source=source,
        action=action,
        target=f"machine {mac}",
        outcome="success" if outcome == "success" else ("failed" if outcome == "failed" else "denied"),
        detail=detail,
    )


def _overlay_endpoints(cluster: ClusterService) -> tuple[Endpoint, list[Endpoint]]:
    """This node and the live members (alive or suspect), with the addresses overlays may use."""
    members = cluster.members()
    facts = published_facts(cluster, {m.name for m in members})

    def addresses(name: str) -> tuple[str, ...]:
        found = facts.get(name)
        return tuple(f"{a.address}/{a.prefix_len}" for a in found.addresses) if found is not None else ()

    me = cluster.settings.name
    local = Endpoint(name=me, gossip=gossip_host(cluster.settings.advertise), addresses=addresses(me))
    peers = [
        Endpoint(name=m.name, gossip=gossip_host(m.gossip_address), addresses=addresses(m.name))
        for m in members
        if m.name != me and m.state in ("alive", "suspect")
    ]
    return local, peers


def _lifespan(
    *,
    publish_facts: Callable[[], Awaitable[None]],
    housekeeping: list[Callable[[], object]],
    readiness: Readiness,
    cluster: ClusterService,
    forwarder: Forwarder,
    anchorer: Anchorer,
    keeper: PkiKeeper,
    clock: Callable[[], float],
    contexts: tuple[ssl.SSLContext, ssl.SSLContext],
    network: NetworkService,
    reconciler: OverlayReconciler,
    pxe: PxeService,
    enlister: Enlister | None,
) -> Callable[[Litestar], AbstractAsyncContextManager[None]]:
    """Start the node's background work with the app and stop it after the last request:
    host networking first (the configuration confirmed last, or a pending change resumed),
    membership, the overlay reconciler, housekeeping (expired sessions, join tokens and
    tombstones), certificate renewal (gossip reloads it at once), and the one report of this
    machine's inventory to the boot server it PXE-booted from (after readiness, never before)."""

    async def publish() -> None:
        while True:
            try:
                await publish_facts()
            except Exception:
                log.exception("publishing this node's facts failed")
            await asyncio.sleep(PUBLISH_SECONDS)

    async def keep_house() -> None:
        while True:
            await asyncio.sleep(HOUSEKEEPING_SECONDS)
            for chore in housekeeping:
                try:
                    chore()
                except Exception:
                    log.exception("housekeeping step %s failed", getattr(chore, "__qualname__", chore))

    @asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        # A failed network start-up is reported, not fatal: the node must stay reachable to fix it.
        applied, detail = await network.start()
        readiness.set("network", True, detail if applied else f"{detail} (see the node's network status)")
        tasks = [
            asyncio.create_task(keep_house(), name="housekeeping"),
            asyncio.create_task(publish(), name="publish-facts"),
            # An authority renews its own certificate; any other node asks an authority.
            asyncio.create_task(
                keeper.renew_loop(contexts, CERT_FIRST_CHECK_SECONDS, CERT_CHECK_SECONDS), name="renew-certificate"
            ),
            asyncio.create_task(keeper.run(KEY_SYNC_SECONDS), name="keep-ca-key"),
        ]
        await cluster.start()
        listen = f"{cluster.settings.listen_host}:{cluster.transport.port}"
        readiness.set("gossip", True, f"listening on {listen}")
        readiness.set("api", True, "serving")
        tasks += [
            asyncio.create_task(reconciler.run(), name="overlay-reconciler"),
            asyncio.create_task(network.watch(), name="network-watch"),
            asyncio.create_task(anchorer.run(), name="audit-anchor"),
        ]
        await pxe.start()  # dnsmasq, when this node serves PXE
        if enlister is not None:
            tasks.append(asyncio.create_task(enlister.run(), name="enlist"))
        try:
            yield
        finally:
            readiness.set("api", False, "stopping")
            anchorer.stop()  # the final head, while the cluster still listens
            await cluster.stop(leave=True)
            await forwarder.close()
            await keeper.close()
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await pxe.close()
            await reconciler.close()
            await network.close()

    return lifespan


def node_meta(node: OpenedNode, api_advertise: str) -> dict[str, str]:
    """What this node announces in gossip membership: what forwarding and certificate checks
    need at once (API address, version, certificate). Everything else it says about itself
    goes into its replicated key space (`publish_facts`)."""
    return {"api": api_advertise, "version": __version__, "cert": node.identity.node_fingerprint}
