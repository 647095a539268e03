"""Execute a plan through an adapter, one action at a time, in order.

There is no transaction in netlink: when an action fails, the ones before it stay applied
and `ApplyError` says which action failed and why. Undoing is the caller's choice;
`confirm.py` does it by planning back to the snapshot it took before starting, which works
from whatever half-applied state is left.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from netconfig.actions import (
    Action,
    AddAddress,
    AddBridgeVlan,
    AddPeer,
    AddRoute,
    Create,
    DelAddress,
    DelBridgeVlan,
    Delete,
    DelPeer,
    DelRoute,
    Rename,
    SetMaster,
    SetMtu,
    SetOptions,
    SetUp,
)
from netconfig.adapter import Adapter
from netconfig.model import NetworkConfig
from netconfig.observe import observe_managed
from netconfig.plan import plan


class ApplyError(RuntimeError):
    """An action failed; `done` actions before it were applied, `action` was not."""

    def __init__(self, action: Action, done: int, cause: Exception) -> None:
        super().__init__(f"`{action}` failed: {cause}")
        self.action = action
        self.done = done
        self.cause = cause


def run(action: Action, adapter: Adapter) -> None:  # noqa: PLR0912 - one branch per action kind
    """Execute one action."""
    match action:
        case Rename():
            adapter.rename(action.name, action.new_name)
        case Delete():
            adapter.delete(action.name)
        case Create():
            adapter.create(action.link)
        case SetOptions():
            adapter.set_options(action.link)
        case SetMtu():
            adapter.set_mtu(action.name, action.mtu)
        case SetMaster():
            adapter.set_master(action.name, action.master)
        case AddBridgeVlan():
            adapter.add_bridge_vlan(action.name, action.vid, pvid=action.pvid)
        case DelBridgeVlan():
            adapter.del_bridge_vlan(action.name, action.vid)
        case AddPeer():
            adapter.add_peer(action.name, action.peer)
        case DelPeer():
            adapter.del_peer(action.name, action.peer)
        case AddAddress():
            adapter.add_address(action.name, action.address)
        case DelAddress():
            adapter.del_address(action.name, action.address)
        case AddRoute():
            adapter.add_route(action.name, action.route)
        case DelRoute():
            adapter.del_route(action.name, action.route)
        case SetUp():
            adapter.set_up(action.name, action.up)


def apply(actions: Sequence[Action], adapter: Adapter, *, on_step: Callable[[Action], None] | None = None) -> None:
    """Execute `actions` in order; `ApplyError` at the first failure. `on_step` sees each before it runs."""
    for done, action in enumerate(actions):
        if on_step is not None:
            on_step(action)
        try:
            run(action, adapter)
        except Exception as exc:
            raise ApplyError(action, done, exc) from exc


def converge(adapter: Adapter, desired: NetworkConfig, *also: NetworkConfig | None) -> list[Action]:
    """Observe what `desired` and `also` (e.g. the previous configuration) manage, plan, apply; the actions run."""
    observed = observe_managed(adapter, desired, *also)
    actions = plan(desired, observed)
    apply(actions, adapter)
    return actions
