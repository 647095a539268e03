"""The network subsystem: this node's host networking (applied at start, watched while it
runs) and the cluster-wide overlay networks, reconciled against the live members: the
reconciler is kicked by the event bus on each change to the overlays' configuration and each
membership change (and resyncs on a timer besides). Applying, confirming and rolling back
the host networking publish `network` events (read off their audit entries).

A failed start of the host networking is reported in the detail of the "network" check on
`/readyz`, never fatal: the node must stay reachable to fix it.
"""

from __future__ import annotations

from dataclasses import dataclass

from appliance.events import sources
from appliance.events.types import ConfigChanged, Event, MembershipChanged, NetworkChanged
from appliance.network.controller import network_routes, overlay_routes
from appliance.network.overlay_config import Endpoint, gossip_host
from appliance.network.overlays import NETWORK_KIND, OverlayStore
from appliance.network.reconciler import OVERLAY_SUBDIR, OverlayReconciler
from appliance.network.service import NetworkService, NetworkSettings
from appliance.node.facts import published_facts
from appliance.subsystem import Core, Membership, ReadinessCheck, Subsystem, Task
from netconfig.state import StateDir


@dataclass(frozen=True)
class Network:
    """The network subsystem and its overlay reconciler (tests read its passes)."""

    subsystem: Subsystem
    reconciler: OverlayReconciler


def build(core: Core, *, settings: NetworkSettings, gossip_advertise: str) -> Network:
    overlays = OverlayStore(core.config, core.clock)
    service = NetworkService(
        name=core.name,
        data_dir=core.data_dir,
        settings=settings,
        reserved=lambda: {link: r.name for r in overlays.all() for link in (r.bridge, r.vxlan)},
        clock=core.clock,
    )
    reconciler = OverlayReconciler(
        overlays=overlays,
        endpoints=lambda: overlay_endpoints(core.membership, core.name, gossip_advertise),
        reserved=service.configured_names,
        adapter=settings.make_adapter(),
        state=StateDir(service.path / OVERLAY_SUBDIR),
        resync_seconds=settings.overlay_resync_seconds,
    )
    core.audit.on_append(sources.audit_listener(core.events, sources.network_changed))

    def react(event: Event) -> None:
        """Reconcile the overlays after a change to them or to the membership."""
        if isinstance(event, MembershipChanged) or (isinstance(event, ConfigChanged) and event.kind == NETWORK_KIND):
            reconciler.kick()

    core.events.subscribe(react, [ConfigChanged, MembershipChanged], name="overlay-reconciler")

    async def start() -> None:
        applied, detail = await service.start()
        core.readiness.set("network", True, detail if applied else f"{detail} (see the node's network status)")

    async def stop() -> None:
        await reconciler.close()
        await service.close()

    subsystem = Subsystem(
        name="network",
        routes=[
            network_routes(service, overlays=lambda: reconciler.states, forwarder=core.forwarder),
            overlay_routes(overlays),
        ],
        start=start,
        stop=stop,
        tasks=[Task("overlay-reconciler", reconciler.run), Task("network-watch", service.watch)],
        readiness=[ReadinessCheck("network")],
        events=[NetworkChanged],
    )
    return Network(subsystem, reconciler)


def overlay_endpoints(membership: Membership, me: str, advertise: str) -> tuple[Endpoint, list[Endpoint]]:
    """This node and the live members (alive or suspect), with the addresses overlays may use."""
    members = membership.members()
    facts = published_facts(membership, {m.name for m in members})

    def addresses(name: str) -> tuple[str, ...]:
        found = facts.get(name)
        return tuple(f"{a.address}/{a.prefix_len}" for a in found.addresses) if found is not None else ()

    local = Endpoint(name=me, gossip=gossip_host(advertise), addresses=addresses(me))
    peers = [
        Endpoint(name=m.name, gossip=gossip_host(m.gossip_address), addresses=addresses(m.name))
        for m in members
        if m.name != me and m.state in ("alive", "suspect")
    ]
    return local, peers
