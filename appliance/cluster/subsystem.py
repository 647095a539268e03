"""The cluster subsystem: gossip membership and replication, joining, the authorities and the
certificate registry, certificate renewal and the CA key kept in step.

The membership service itself (`membership`) is made before the subsystems, since the core's
membership view, node-state store and forwarder are it or need it; `build` then adds what the
cluster domain runs and serves, and publishes membership changes and changes to the
members' key spaces (`membership` and `facts` events) on the event bus. It starts gossip and,
at its stop, leaves the cluster and closes the forwarder's and the keeper's connections.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass

from prometheus_client import CollectorRegistry

from appliance.audit.log import AuditLog
from appliance.auth.throttle import LoginThrottle
from appliance.bootstrap import OpenedNode
from appliance.cluster.controller import authority_routes, cluster_routes, join_routes, machine_token_routes
from appliance.cluster.join import JoinService
from appliance.cluster.keeper import PkiKeeper
from appliance.cluster.nodeauth import NodeVerifier
from appliance.cluster.service import ClusterService, ClusterSettings
from appliance.cluster.transport import tls_contexts
from appliance.events import sources
from appliance.events.types import FactsChanged, MembershipChanged
from appliance.node.service import NodeService
from appliance.store.config import ConfigStore
from appliance.subsystem import HOUSEKEEPING_SECONDS, Core, ReadinessCheck, Subsystem, Task, every
from pxe.enrolment import TOKEN_TTL as MACHINE_TOKEN_TTL

CERT_CHECK_SECONDS = 12 * 3600.0  # certificates are renewed 30 days before they expire
CERT_FIRST_CHECK_SECONDS = 60.0  # after a start: a certificate missing a new address is renewed soon
KEY_SYNC_SECONDS = 2.0  # how often a node checks the authority set against its CA key copy


@dataclass(frozen=True)
class Cluster:
    """The cluster subsystem and what the PXE enrolment uses of it."""

    subsystem: Subsystem
    joins: JoinService
    keeper: PkiKeeper


def membership(
    node: OpenedNode,
    settings: ClusterSettings,
    *,
    config: ConfigStore,
    audit: AuditLog,
    registry: CollectorRegistry,
) -> tuple[ClusterService, tuple[ssl.SSLContext, ssl.SSLContext]]:
    """The node's membership service (not started) and the TLS contexts gossip uses."""
    contexts = tls_contexts(node.identity.ca_cert_path, node.identity.node_cert_path, node.identity.node_key_path)
    service = ClusterService(
        settings,
        server_context=contexts[0],
        client_context=contexts[1],
        db=node.db,
        config_store=config,
        audit=audit,
        ca_cert=node.identity.ca_cert,
        registry=registry,
    )
    return service, contexts


def build(
    core: Core,
    *,
    service: ClusterService,
    contexts: tuple[ssl.SSLContext, ssl.SSLContext],
    node_service: NodeService,
    throttle: LoginThrottle,
) -> Cluster:
    keeper = PkiKeeper(
        identity=core.identity,
        registry=service.registry,
        authorities=service.authorities,
        member_api=service.member_api,
        audit=core.audit,
        addresses=core.node.cert_addresses,
        clock=core.clock,
    )
    joins = JoinService(
        store=core.config,
        db=core.db,
        identity=core.identity,
        cluster_id=core.node.cluster_id,
        api_seeds=lambda: [core.api_advertise],
        ca_key=lambda: keeper.ca_key,
        clock=core.clock,
    )
    verifier = NodeVerifier(core.identity.ca_cert, service.cert_refusal, core.clock)  # one nonce memory
    service.on_event(sources.membership_listener(core.events))
    core.node_state.on_change(sources.node_state_listener(core.events))

    async def start() -> None:
        await service.start()
        core.readiness.set("gossip", True, f"listening on {service.settings.listen_host}:{service.transport.port}")

    async def stop() -> None:
        await service.stop(leave=True)
        await core.forwarder.close()
        await keeper.close()

    async def renew() -> None:
        # An authority renews its own certificate; any other node asks an authority (gossip reloads it at once).
        await keeper.renew_loop(contexts, CERT_FIRST_CHECK_SECONDS, CERT_CHECK_SECONDS)

    async def keep_key() -> None:
        await keeper.run(KEY_SYNC_SECONDS)

    subsystem = Subsystem(
        name="cluster",
        routes=[
            *cluster_routes(service, forwarder=core.forwarder, node_service=node_service),
            join_routes(joins, cluster=service, throttle=throttle, audit=core.audit, forwarder=core.forwarder),
            authority_routes(cluster=service, keeper=keeper, verifier=verifier, audit=core.audit),
            machine_token_routes(
                cluster=service, joins=joins, verifier=verifier, audit=core.audit, ttl=MACHINE_TOKEN_TTL
            ),
        ],
        start=start,
        stop=stop,
        tasks=[
            Task("renew-certificate", renew),
            Task("keep-ca-key", keep_key),
            every(
                "cluster-housekeeping",
                HOUSEKEEPING_SECONDS,
                joins.prune,
                core.config.purge_tombstones,
                lambda: service.registry.prune(core.clock()),
            ),
        ],
        readiness=[ReadinessCheck("gossip")],
        events=[MembershipChanged, FactsChanged],
    )
    return Cluster(subsystem, joins, keeper)
