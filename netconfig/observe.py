"""Turn what the kernel reports into a `NetworkConfig` restricted to the links DebVisor manages.

A link is managed when the desired configuration (or the previous one, or a snapshot) names
it, or when it is a NIC whose MAC address such a configuration lists (found whatever the
kernel calls it now). Everything else is invisible to planning and so never touched: VM tap
devices on a managed bridge do not appear among its ports, an operator's own bridge next to
ours does not appear at all.

The result has the same shape as a desired configuration, which is what makes a snapshot
(for commit-confirmed rollback) just `observe(...)` and a rollback just `plan(snapshot, now)`.
Left out: statistics, carrier and operational state (the status API reads those elsewhere).
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from netconfig.adapter import Adapter, KernelLink
from netconfig.model import AnyLink, Bond, Bridge, BridgePort, NetworkConfig, Nic, canonical, from_links


def observe(links: Iterable[KernelLink], *, names: Iterable[str] = (), macs: Iterable[str] = ()) -> NetworkConfig:
    """The managed part of `links`: those named in `names`, and NICs whose MAC is in `macs`."""
    wanted_names = set(names)
    wanted_macs = {m.lower() for m in macs}
    selected = [
        kl
        for kl in links
        if kl.spec.name in wanted_names or (isinstance(kl.spec, Nic) and kl.spec.mac.lower() in wanted_macs)
    ]
    members: dict[str, list[KernelLink]] = {}
    for kl in selected:
        if kl.master is not None:
            members.setdefault(kl.master, []).append(kl)
    result: list[AnyLink] = []
    for kl in selected:
        spec = kl.spec
        mine = sorted(members.get(spec.name, []), key=lambda m: m.spec.name)
        if isinstance(spec, Bridge):
            ports = tuple(BridgePort(name=m.spec.name, vlans=m.vlans, pvid=m.pvid) for m in mine)
            spec = msgspec.structs.replace(spec, ports=ports)
        elif isinstance(spec, Bond):
            spec = msgspec.structs.replace(spec, interfaces=tuple(m.spec.name for m in mine))
        result.append(canonical(spec))
    return from_links(result)


def managed_by(*configs: NetworkConfig | None) -> tuple[set[str], set[str]]:
    """Names and NIC MACs that `configs` (desired, previous, snapshot...) make managed."""
    names: set[str] = set()
    macs: set[str] = set()
    for config in configs:
        if config is None:
            continue
        names |= config.names()
        macs |= {nic.mac.lower() for nic in config.nics}
    return names, macs


def observe_managed(adapter: Adapter, *configs: NetworkConfig | None) -> NetworkConfig:
    """Observe through `adapter` the links that any of `configs` manages."""
    names, macs = managed_by(*configs)
    return observe(adapter.links(), names=names, macs=macs)


def blank_unmanaged(observed: NetworkConfig, desired: NetworkConfig) -> NetworkConfig:
    """`observed` restricted to `desired`'s links, with the attributes `desired` leaves unmanaged
    (None: MTU, bond options) set to None too; equal to `desired` exactly when nothing drifted."""
    wanted = {link.name: link for link in desired.links()}
    result: list[AnyLink] = []
    for link in observed.links():
        want = wanted.get(link.name)
        if want is None:
            continue
        unmanaged = {
            field: None
            for field in ("mtu", "miimon", "primary", "lacp_rate", "xmit_hash_policy")
            if hasattr(want, field) and getattr(want, field) is None
        }
        result.append(msgspec.structs.replace(link, **unmanaged))
    return from_links(result)
