"""Wire types of the network API: a node's host networking, and the cluster's overlay networks.

A node's configuration on the wire is netconfig's own `NetworkConfig` (the same document as
the YAML file `debvisor net` reads), so nothing is translated. Overlay networks follow the
Incus shape: `OverlayPut` holds the fields a PUT may change, `OverlaysPost` adds the name for
creation, and `Overlay` is what reads return. `OverlayRecord` is what the cluster
configuration map stores (kind "network"); it replicates between versions, so new fields get
defaults and nothing is renamed.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from netconfig.confirm import DEFAULT_CONFIRM_WITHIN
from netconfig.model import VXLAN_PORT, NetworkConfig
from netconfig.state import Outcome

IFNAME = r"^[A-Za-z0-9_.-]{1,15}$"
OVERLAY_NAME = r"^[a-z][a-z0-9-]{0,31}$"
DEFAULT_OVERLAY_MTU = 1450  # a 1500-byte underlay minus VXLAN's 50 bytes over IPv4

ConfirmWithin = Annotated[
    float, msgspec.Meta(ge=10, le=3600, description="seconds until the change is rolled back unless confirmed")
]
IfName = Annotated[str, msgspec.Meta(pattern=IFNAME, description="a Linux interface name, at most 15 characters")]
Vni = Annotated[int, msgspec.Meta(ge=1, le=16_777_215)]
Mtu = Annotated[int, msgspec.Meta(ge=1280, le=65_535)]  # 1280: IPv6 must work on an overlay
Port = Annotated[int, msgspec.Meta(ge=1, le=65_535)]
OverlayName = Annotated[str, msgspec.Meta(pattern=OVERLAY_NAME, description="lowercase, at most 32 characters")]


# -- a node's host networking ------------------------------------------------------------------


class NetworkPlanPost(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What to plan: `config`, or the node's stored desired configuration when it is left out."""

    config: NetworkConfig | None = None


class NetworkApplyPost(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Apply `config` (which also becomes the stored desired configuration) or the stored one."""

    config: NetworkConfig | None = None
    confirm_within: ConfirmWithin = DEFAULT_CONFIRM_WITHIN
    check: str | None = None  # an IP address that must answer ping right after the change, else roll back


class NetworkPlan(msgspec.Struct, frozen=True, kw_only=True):
    """A dry run: the changes as `ip`/`bridge` commands, in order (empty: nothing to do)."""

    node: str
    actions: list[str]


class NetworkApplied(msgspec.Struct, frozen=True, kw_only=True):
    """A change in its confirm window."""

    node: str
    actions: list[str]
    id: str  # the pending change
    deadline: float  # wall-clock seconds; rolled back then unless confirmed
    confirm_within: float


class NetworkOutcome(msgspec.Struct, frozen=True, kw_only=True):
    """How confirm or rollback ended the pending change."""

    node: str
    result: Literal["confirmed", "rolled-back"]
    actions: list[str] = []  # what undoing it did (rollback)


class LinkCounters(msgspec.Struct, frozen=True, kw_only=True):
    """The kernel's 64-bit interface statistics."""

    rx_bytes: int = 0
    rx_packets: int = 0
    rx_errors: int = 0
    rx_dropped: int = 0
    tx_bytes: int = 0
    tx_packets: int = 0
    tx_errors: int = 0
    tx_dropped: int = 0


class LinkState(msgspec.Struct, frozen=True, kw_only=True):
    """One link as the kernel has it now (every link of the namespace, managed or not)."""

    name: str
    index: int
    kind: str  # "bridge", "vxlan", "veth", ... ; "" for a physical NIC
    mac: str
    mtu: int
    up: bool  # administratively
    operstate: str  # "UP", "DOWN", "UNKNOWN", "LOWERLAYERDOWN", ...
    master: str | None = None
    addresses: list[str] = []  # "ADDRESS/PREFIX"
    counters: LinkCounters = LinkCounters()


class RouteState(msgspec.Struct, frozen=True, kw_only=True):
    """A route of the main table (kernel and router-advertised ones included)."""

    to: str  # "default" or a network
    dev: str | None
    via: str | None = None
    metric: int | None = None
    protocol: str = ""  # "kernel", "boot", "static", "ra", ... or the number


class OverlayState(msgspec.Struct, frozen=True, kw_only=True):
    """What this node made of one overlay network at its last reconciliation."""

    name: str
    vni: int
    bridge: str
    vxlan: str
    local: str | None  # this node's underlay address; None if it has none (then not created)
    peers: list[str]  # the alive members' underlay addresses the FDB floods to
    error: str = ""


class NetworkStatus(msgspec.Struct, frozen=True, kw_only=True):
    """A node's host networking: configuration, the confirm window, and what the kernel has."""

    node: str
    desired: NetworkConfig | None  # stored by PUT or the last apply; what `apply` without a body applies
    applied: NetworkConfig | None  # last confirmed configuration (re-applied at service start)
    pending: NetworkConfig | None  # in its confirm window
    deadline: float | None
    remaining: float | None
    last_outcome: Outcome | None
    startup: str  # what the service start-up did with the configuration (or why it failed)
    links: list[LinkState]
    routes: list[RouteState]
    overlays: list[OverlayState] = []


# -- overlay networks ----------------------------------------------------------------------------


class OverlayPut(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The fields of an overlay network a PUT sets (all of them; left out: the default)."""

    vni: Vni
    bridge: IfName  # the bridge every node creates; the VXLAN device is `vx<VNI>`
    mtu: Mtu = DEFAULT_OVERLAY_MTU
    port: Port = VXLAN_PORT
    underlay: str | None = None  # a network (CIDR): each node's address in it; None: the gossip address


class OverlaysPost(OverlayPut, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Create an overlay network."""

    name: OverlayName


class OverlayRecord(msgspec.Struct, frozen=True, kw_only=True):
    """An overlay network as the configuration map stores it."""

    name: str
    vni: int
    bridge: str
    mtu: int = DEFAULT_OVERLAY_MTU
    port: int = VXLAN_PORT
    underlay: str | None = None
    created_at: float = 0.0
    updated_at: float = 0.0

    @property
    def vxlan(self) -> str:
        """The VXLAN device's name on every node."""
        return vxlan_name(self.vni)


class Overlay(msgspec.Struct, frozen=True, kw_only=True):
    """An overlay network as the API reports it."""

    name: str
    vni: int
    bridge: str
    vxlan: str
    mtu: int
    port: int
    underlay: str | None
    created_at: float
    updated_at: float

    @classmethod
    def of(cls, record: OverlayRecord) -> Overlay:
        return cls(
            name=record.name,
            vni=record.vni,
            bridge=record.bridge,
            vxlan=record.vxlan,
            mtu=record.mtu,
            port=record.port,
            underlay=record.underlay,
            created_at=record.created_at,
            updated_at=record.updated_at,
        )


def vxlan_name(vni: int) -> str:
    """`vx<VNI>`: at most 10 characters, and one VNI per node means one name."""
    return f"vx{vni}"
