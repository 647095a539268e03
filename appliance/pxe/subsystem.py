"""The PXE subsystem: this node's boot server (dnsmasq and the boot-file listener, while PXE
is enabled here), the machines it booted, and their enrolment.

Booting machines have no credentials: the boot files get an app of their own, without the
access gate, served only on the plain-HTTP listener (`Pxe.boot_app`); the API never answers
/pxe. Enrolling machines present the single-use credential of their boot script over TLS and
get a join token (handed over once) only after approval: made here on an authority, else by a
live authority over a signed node call (the machine then joins there).
"""

from __future__ import annotations

from dataclasses import dataclass

from litestar import Litestar
from litestar.types import ASGIApp

from appliance.api.problems import EXCEPTION_HANDLERS
from appliance.audit.log import AuditLog
from appliance.cluster.join import JoinService
from appliance.cluster.keeper import PkiKeeper
from appliance.cluster.machine_tokens import MachineTokens, NoAuthority
from appliance.cluster.service import ClusterService
from appliance.events import sources
from appliance.events.types import PxeEnlisted
from appliance.node.host import HostProbe
from appliance.pxe.controller import pxe_config_routes
from appliance.pxe.enrol_routes import enrol_routes
from appliance.subsystem import Core, Subsystem
from pxe.enlistment import EnlistmentStore
from pxe.enrol_service import EnrolmentService, IssuedToken, TokenUnavailable
from pxe.enrolment import TOKEN_TTL as MACHINE_TOKEN_TTL
from pxe.enrolment import EnrolmentStore
from pxe.http import pxe_routes
from pxe.inventory import Inventory
from pxe.service import BootServerOptions, PxeService, load_settings, save_settings

PXE_SUBDIR = "pxe"  # in the data dir: the node's PXE settings and dnsmasq's leases


@dataclass(frozen=True)
class Pxe:
    """The PXE subsystem, its service, and the boot-file app for the plain-HTTP listener only."""

    subsystem: Subsystem
    service: PxeService
    boot_app: ASGIApp


def build(
    core: Core,
    *,
    settings: BootServerOptions,
    host: HostProbe,
    cluster: ClusterService,
    joins: JoinService,
    keeper: PkiKeeper,
) -> Pxe:
    pxe_dir = core.data_dir / PXE_SUBDIR
    stored = pxe_dir / "config.json"
    machine_tokens = MachineTokens(
        joins=joins,
        holders=cluster.authorities.holders,
        member_api=cluster.member_api,
        caller=keeper.caller,
        ttl=MACHINE_TOKEN_TTL,
    )

    async def interface_ipv4(name: str) -> str | None:
        found = (a.address for a in await host.addresses() if a.interface == name and a.family == "inet")
        return next(found, None)

    async def issue_token(mac: str, approver: str) -> IssuedToken:
        """A join token for an approved PXE machine, from this node or a live authority."""
        try:
            created = await machine_tokens.issue(mac, approver)
        except NoAuthority as exc:
            raise TokenUnavailable(str(exc)) from exc
        issuer = created.issuer if created.issuer != core.name else ""
        return IssuedToken(token=created.token, id=created.id, expires_at=created.expires_at, issuer=issuer)

    def enrolments(service: PxeService) -> EnrolmentService:
        return EnrolmentService(
            EnrolmentStore(core.db),
            ca_fingerprint=core.identity.ca_fingerprint,
            servers=lambda: [core.api_advertise],
            issue_token=issue_token,
            policy=service.policy,
            name_for=service.name_of,
            audit=lambda **entry: _audit_enrolment(core.audit, **entry),
            clock=core.clock,
            credential_ttl=lambda: service.settings().credential_seconds,
        )

    def boot_app() -> Litestar:
        return app

    service = PxeService(
        load_settings(stored),
        boot_files=settings.boot_files,
        state_dir=pxe_dir,
        save=lambda config: save_settings(stored, config),
        tftp_root=settings.tftp_root,
        run_dnsmasq=settings.run_dnsmasq,
        http_listener=settings.http_listener,
        # The listener loads the boot-file app when it opens, once the node runs.
        listener=settings.listener(boot_app) if settings.listener is not None else None,
        interface_ipv4=interface_ipv4,
        clock=core.clock,
        machines=EnlistmentStore(core.db),
        is_member=cluster.name_in_use,
        on_enlisted=lambda mac, ip, inventory: _audit_enlisted(core.audit, mac, ip, inventory),
        enrolments=enrolments,
    )
    app = Litestar(
        route_handlers=[pxe_routes(service)],
        exception_handlers=EXCEPTION_HANDLERS,  # type: ignore[arg-type]
        logging_config=None,
        debug=False,
        openapi_config=None,
    )
    assert service.enrolments is not None  # made from `enrolments` above

    core.audit.on_append(sources.audit_listener(core.events, sources.pxe_enlisted))
    subsystem = Subsystem(
        name="pxe",
        routes=[
            pxe_config_routes(service, forwarder=core.forwarder),
            enrol_routes(service.enrolments, enabled=service.enabled),
        ],
        start=service.start,  # dnsmasq, when this node serves PXE
        stop=service.close,
        events=[PxeEnlisted],  # read off the `pxe.enlist` audit entries
    )
    return Pxe(subsystem, service, app)


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
