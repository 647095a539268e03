"""Assemble the appliance's HTTP application: the one place that lists every part.

`create_app` takes the node's opened state and the adapters it should drive, builds the shared
core (database, configuration and node-state stores, audit log, event bus, membership,
forwarder, clock, metrics registry, readiness), then one subsystem per domain from it
(appliance/subsystem.py), and lists them: their routes are the API, and `appliance.subsystem.run` starts them in that
order with the app and stops them in reverse. Nothing registers itself by being imported; to
find what the API serves and what runs in the node, read this file.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from litestar import Litestar, Router
from litestar.middleware import DefineMiddleware
from litestar.openapi import OpenAPIConfig
from litestar.types import ASGIApp

from appliance import __version__
from appliance import subsystem as subsystems_
from appliance.api.docs_page import docs_routes
from appliance.api.drain import DrainBody
from appliance.api.forward import MAX_SKEW_SECONDS, Forwarder
from appliance.api.openapi import DocumentPlugin, prepare
from appliance.api.problems import EXCEPTION_HANDLERS
from appliance.audit import subsystem as audit_
from appliance.audit.log import AuditLog
from appliance.auth import subsystem as auth_
from appliance.auth.access import AccessMiddleware
from appliance.auth.accounts import AccountService
from appliance.auth.permissions import Permission, requires
from appliance.auth.throttle import LoginThrottle
from appliance.bootstrap import OpenedNode
from appliance.cluster import subsystem as cluster_
from appliance.cluster.nonces import NonceLedger
from appliance.cluster.service import ClusterService, ClusterSettings
from appliance.cluster.swim import GossipTuning
from appliance.events import subsystem as events_
from appliance.events.bus import EventBus
from appliance.health.controller import health_routes
from appliance.health.readiness import Readiness
from appliance.history import subsystem as history_
from appliance.journal import subsystem as journal_
from appliance.metrics.controller import metrics_routes
from appliance.metrics.http import HttpMetrics, MetricsMiddleware, new_registry
from appliance.network import subsystem as network_
from appliance.network.reconciler import OverlayReconciler
from appliance.network.service import NetworkSettings
from appliance.node import power as power_
from appliance.node import subsystem as node_
from appliance.node.enlist import EnlistTarget
from appliance.node.host import HostProbe
from appliance.node.service import NodeService
from appliance.pxe import subsystem as pxe_
from appliance.settings import AuthSettings
from appliance.store.config import ConfigStore
from appliance.store.hlc import HybridClock
from appliance.subsystem import Core, Startup, Subsystem
from appliance.units import subsystem as units_
from appliance.units.bus import SystemBus
from appliance.webui import subsystem as webui_
from pxe.service import BootServerOptions, PxeService

API_ROOT = "/api/v1"
MAX_BODY_BYTES = 1024 * 1024


Builder = Callable[[Core], Subsystem]  # a subsystem listed by the caller (tests add toy ones)


@dataclass(frozen=True)
class Appliance:
    """The assembled app: the ASGI callable to serve, and the parts tests and the server reach."""

    asgi: ASGIApp
    litestar: Litestar
    startup: Startup  # why the start failed, for the server's one-line error
    readiness: Readiness
    node_service: NodeService
    accounts: AccountService
    audit: AuditLog
    login_throttle: LoginThrottle
    cluster: ClusterService
    overlays: OverlayReconciler
    pxe: PxeService
    pxe_asgi: ASGIApp  # the public /pxe boot files, for the plain-HTTP listener only


def create_app(
    node: OpenedNode,
    *,
    host: HostProbe,
    auth: AuthSettings | None = None,
    cluster_settings: ClusterSettings | None = None,
    api_advertise: str = "127.0.0.1:8443",
    network: NetworkSettings | None = None,
    pxe: BootServerOptions | None = None,
    enlist: EnlistTarget | None = None,
    system_bus: SystemBus | None = None,
    host_root: Path = Path("/"),
    clock: Callable[[], float] = time.time,
    monotonic: Callable[[], float] = time.monotonic,
    extra: Sequence[Builder] = (),
) -> Appliance:
    """Build the appliance for an opened node, driving the host through `host`.

    `cluster_settings` defaults to gossip on a free loopback port with no seeds (a node of
    its own, as unit tests want). `network` says which kernel networking the node manages
    (default: its own namespace, through netlink). `clock` (wall time) and `monotonic` are injectable so tests
    can move time. `pxe` says where the boot files are and whether dnsmasq may run. `enlist`
    says where this machine reports its inventory at start-up (None: it does not).
    `system_bus` is where the managed machine's systemd answers (default: this machine's
    system bus) and `host_root` where its files are (journal, unit files). `extra`
    builds further subsystems, started after the PXE one.
    """
    cluster_settings = cluster_settings or ClusterSettings(
        name=node.name,
        cluster_id=node.cluster_id,
        listen_host="127.0.0.1",
        listen_port=0,
        advertise="127.0.0.1:0",
        meta=node_meta(node, api_advertise),
        seeds=[],
        gossip=GossipTuning(),
    )
    readiness = Readiness()
    for check in ("database", "identity", "api"):
        readiness.register(check)
    readiness.set("database", True, f"schema version {node.db.version}")
    readiness.set("identity", True, f"CA {node.identity.ca_fingerprint[:16]}")
    registry = new_registry()
    config = ConfigStore(node.db, HybridClock(node.node_id, clock), wall=clock)
    audit = AuditLog(node.db, node.name, clock)
    cluster, contexts = cluster_.membership(node, cluster_settings, config=config, audit=audit, registry=registry)
    core = Core(
        node=node,
        db=node.db,
        identity=node.identity,
        config=config,
        node_state=cluster.node_state,
        audit=audit,
        # The forwarder refuses a certificate that is revoked *or* not in the certificate registry.
        forwarder=Forwarder(
            identity=node.identity,
            member_api=cluster.member_api,
            refusal=cluster.cert_refusal,
            accept_nonce=NonceLedger(node.db, margin=MAX_SKEW_SECONDS, clock=clock).accept,
            clock=clock,
        ),
        membership=cluster,
        readiness=readiness,
        registry=registry,
        data_dir=node.datadir.root,
        auth=auth or AuthSettings(),
        api_advertise=api_advertise,
        events=EventBus(node.name, clock=clock),
        clock=clock,
        monotonic=monotonic,
    )

    node_part = node_.build(core, host=host, enlist=enlist)
    auth_part = auth_.build(core)
    network_part = network_.build(
        core, settings=network or NetworkSettings(), gossip_advertise=cluster_settings.advertise
    )
    cluster_part = cluster_.build(
        core, service=cluster, contexts=contexts, node_service=node_part.service, throttle=auth_part.login_throttle
    )
    pxe_part = pxe_.build(
        core,
        settings=pxe or BootServerOptions(),
        host=host,
        cluster=cluster,
        joins=cluster_part.joins,
        keeper=cluster_part.keeper,
    )
    bus = system_bus or SystemBus()  # one connection for units and power; the units subsystem closes it
    # Started in this order, stopped in reverse: the host's networking before gossip binds to
    # it; audit after the cluster, so that its final head is anchored while the cluster listens.
    subsystems = [
        events_.build(core, cluster=cluster),  # the bus first: it runs before anyone publishes
        _api(core, cluster),
        node_part.subsystem,
        auth_part.subsystem,
        network_part.subsystem,
        cluster_part.subsystem,
        audit_.build(core),
        pxe_part.subsystem,
        history_.build(core),
        units_.build(core, bus=bus, host_root=host_root),
        journal_.build(core, host_root=host_root),
        power_.build(core, bus=bus, leave=lambda: cluster.stop(leave=True)),
        webui_.build(core),  # the web UI at / (public files; it talks to the API as any client)
        *(build(core) for build in extra),
        node_part.enlist,
    ]
    subsystems_.register(subsystems, readiness, registry)
    startup = Startup()

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
        route_handlers=[route for s in subsystems for route in s.routes],
        middleware=[DefineMiddleware(AccessMiddleware, gate=auth_part.gate)],
        exception_handlers=EXCEPTION_HANDLERS,  # type: ignore[arg-type]
        openapi_config=openapi,
        request_max_body_size=MAX_BODY_BYTES,
        lifespan=[lambda _app: subsystems_.run(subsystems, readiness, startup)],
        logging_config=None,
        debug=False,
    )
    prepare(litestar)
    return Appliance(
        asgi=DrainBody(MetricsMiddleware(litestar, HttpMetrics(registry)), MAX_BODY_BYTES),
        litestar=litestar,
        startup=startup,
        readiness=readiness,
        node_service=node_part.service,
        accounts=auth_part.accounts,
        audit=audit,
        login_throttle=auth_part.login_throttle,
        cluster=cluster,
        overlays=network_part.reconciler,
        pxe=pxe_part.service,
        pxe_asgi=pxe_part.boot_app,
    )


def _api(core: Core, cluster: ClusterService) -> Subsystem:
    """The node's own endpoints: health and readiness, Prometheus metrics, the API docs page."""
    return Subsystem(
        name="api",
        routes=[health_routes(core.readiness), metrics_routes(core.registry, cluster.members), docs_routes()],
    )


def node_meta(node: OpenedNode, api_advertise: str) -> dict[str, str]:
    """What this node announces in gossip membership: what forwarding and certificate checks
    need at once (API address, version, certificate). Everything else it says about itself
    goes into its replicated key space (`publish_facts`)."""
    return {"api": api_advertise, "version": __version__, "cert": node.identity.node_fingerprint}
