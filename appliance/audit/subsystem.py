"""The audit subsystem: the audit routes and anchoring (this node's chain head, signed and
gossiped; the other nodes' heads, checked and kept). The audit log itself is in the core:
every subsystem appends to it.

It is listed after the cluster so that it stops first: the final head is anchored while the
cluster still listens.
"""

from __future__ import annotations

from appliance.audit.anchor import cluster_trust
from appliance.audit.anchoring import AnchorBook, Anchorer
from appliance.audit.controller import audit_routes
from appliance.cluster.swim import Event, EventKind
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
        trust=cluster_trust(core.identity.ca_cert, core.membership.cert_refused),
        clock=core.clock,
    )
    core.node_state.on_change(anchorer.receive)

    def forget_revoked(event: Event) -> None:
        if event.kind == EventKind.REVOKED:
            anchorer.book.forget(event.name)

    core.membership.on_event(forget_revoked)

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
    )
