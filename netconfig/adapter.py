"""The one interface between netconfig's logic and the kernel.

`observe`, `plan`, `apply` and `confirm` never import pyroute2: they speak to an object with
the `Adapter` shape. `netconfig.kernel.KernelAdapter` is the real one (netlink through
pyroute2, optionally inside a named network namespace); unit tests pass an in-memory fake
or a recorder. The vocabulary is deliberately small, one method per kind of change a plan
can contain, each taking names (never interface indexes, which are the adapter's business).

Removal methods tolerate the thing being gone already (deleting a link takes its addresses,
routes and FDB entries with it; removing an IPv4 address can take routes through it), so a
plan stays applicable when the kernel did part of the work itself.
"""

from __future__ import annotations

from typing import Protocol

import msgspec

from netconfig.model import AnyLink, Bond, Bridge, Route, Vlan, Vxlan


class KernelLink(msgspec.Struct, frozen=True, kw_only=True):
    """One link as the kernel has it, in model terms (an adapter's answer to `links()`).

    `spec` carries the link's own state: kind attributes, MTU, admin state, addresses, routes,
    VXLAN peers and (for a VLAN-aware bridge) the bridge's own VLANs. Membership is `master`;
    members' lists in `spec` are empty and `observe` fills them in. Links of kinds the model
    does not know (veth, tap, physical NICs) appear as `Nic`, with the permanent MAC address
    when the hardware reports one.
    """

    spec: AnyLink
    master: str | None = None
    vlans: tuple[int, ...] = ()  # as a port of a bridge: tagged VLANs
    pvid: int | None = 1  # as a port of a bridge: untagged VLAN


class Adapter(Protocol):
    """Read and change the links of one network namespace."""

    def close(self) -> None:
        """Release the adapter's resources (netlink socket); it may be used again after."""
        ...

    def links(self) -> list[KernelLink]:
        """Every link in the namespace (unmanaged ones too; `observe` chooses)."""
        ...

    def create(self, link: Bond | Vlan | Bridge | Vxlan) -> None:
        """Create `link` down, with its kind attributes only (no MTU, members, addresses or peers)."""
        ...

    def delete(self, name: str) -> None:
        """Delete a virtual link (no error if it is gone); members it releases keep their admin state."""
        ...

    def rename(self, name: str, new_name: str) -> None:
        """Rename a link; it is set down for the rename and back to its previous admin state."""
        ...

    def set_options(self, link: Bond | Bridge) -> None:
        """Change a bond's or bridge's kind attributes in place (only those not None)."""
        ...

    def set_mtu(self, name: str, mtu: int) -> None:
        """Set a link's MTU."""
        ...

    def set_up(self, name: str, up: bool) -> None:
        """Set a link's administrative state."""
        ...

    def set_master(self, name: str, master: str | None) -> None:
        """Enslave a link to a bridge or bond, or release it (None); its admin state stays as it was."""
        ...

    def add_address(self, name: str, address: str) -> None:
        """Add "ADDRESS/PREFIX" to a link."""
        ...

    def del_address(self, name: str, address: str) -> None:
        """Remove "ADDRESS/PREFIX" from a link (no error if it is gone)."""
        ...

    def add_route(self, name: str, route: Route) -> None:
        """Add a static route (canonical form) leaving through the link."""
        ...

    def del_route(self, name: str, route: Route) -> None:
        """Remove a static route (no error if it is gone)."""
        ...

    def add_peer(self, name: str, peer: str) -> None:
        """Add a VXLAN flooding peer (an all-zero MAC FDB entry)."""
        ...

    def del_peer(self, name: str, peer: str) -> None:
        """Remove a VXLAN flooding peer (no error if it is gone)."""
        ...

    def add_bridge_vlan(self, name: str, vid: int, *, pvid: bool) -> None:
        """On a bridge port or bridge: carry VLAN `vid`, tagged, or as the untagged PVID."""
        ...

    def del_bridge_vlan(self, name: str, vid: int) -> None:
        """On a bridge port or bridge: stop carrying VLAN `vid` (no error if it is gone)."""
        ...
