"""The audit subsystem: the audit routes and anchoring (this node's chain head, signed and
gossiped; the other nodes' heads, checked and kept). The audit log itself is in the core:
every subsystem appends to it; this subsystem publishes each entry as an `audit` event. The
anchorer learns of the other members' heads and of revoked members from the event bus.

It is listed after the cluster so that it stops first: the final head is anchored while the
cluster still listens.
"""

from __future__ import annotations

from appliance.audit.anchor import ANCHOR_KEY, cluster_trust
from appliance.audit.anchoring import AnchorBook, Anchorer
from appliance.audit.controller import audit_routes
from appliance.events import sources
from appliance.events.types import AuditAppended, Event, FactsChanged, MembershipChanged
from appliance.subsystem import Core, Subsystem, Task


def build(core: Core) -> Subsystem:
    anchorer = Anchorer(
        db=core.db,
        book=AnchorBook(core.db, clock=core.clock),
        name=core.name,
        key=core.identity.node_key,
        cert_path=core.identity.node_cert_path,
        publish=core.membership.publish,
        published=core.membership.published,
        trust=cluster_trust(core.identity.ca_cert, core.membership.cert_refusal),
        clock=core.clock,
    )
    core.audit.on_append(sources.audit_listener(core.events, sources.audit_appended))

    def react(event: Event) -> None:
        """Check and keep each head another member published; forget a revoked member's."""
        if isinstance(event, FactsChanged) and event.owner != core.name and ANCHOR_KEY in event.keys:
            value = core.membership.published().get(event.owner, {}).get(ANCHOR_KEY)
            if value is not None:
                anchorer.offer(event.owner, value)
        elif isinstance(event, MembershipChanged) and event.state == "revoked":
            anchorer.book.forget(event.member)

    core.events.subscribe(react, [FactsChanged, MembershipChanged], name="audit-anchor")

    async def stop() -> None:
        anchorer.stop()  # the final head, while the cluster still listens

    return Subsystem(
        name="audit",
        routes=[
            audit_routes(
                core.audit,
                local_node=core.name,
                members=core.membership.live_names,
                fetch=core.forwarder.fetch,
                anchorer=anchorer,
            )
        ],
        tasks=[Task("audit-anchor", anchorer.run)],
        stop=stop,
        collectors=[anchorer],
        events=[AuditAppended],
    )
