"""`debvisor unit list|show|start|stop|restart|enable|disable|mask|unmask`: a node's systemd
units through any node's API (appliance/units/, docs/units.md).

Like the other API commands (appliance/cli_client.py) they take the connection options before
or after the command; `--node` names the node whose units to act on (default: the one the CLI
talks to). An action prints its job's result and the unit's state after it; a job that did
not end `done` (or `skipped`) ends the command with status 1 and one line saying why.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any
from urllib.parse import quote

from appliance.cli_client import _show, _table
from appliance.cli_connect import ClientError, call, connection_parent, open_client, target_node
from appliance.cli_journal import add_unit_logs
from appliance.cli_unitfiles import add_unit_file_commands

ACTIONS = ("start", "stop", "restart", "enable", "disable", "mask", "unmask")
_OK_RESULTS = ("done", "skipped", "")

_EPILOG = """\
examples:
  debvisor unit list --node n2                       every loaded unit on n2
  debvisor unit list --node n2 --type service --active failed
  debvisor unit list --pattern 'ssh*' --json
  debvisor unit show nginx.service --node n2        states, PID, memory, CPU, restarts, dependencies
  debvisor unit restart nginx.service --node n2     waits for systemd's job and prints its result
  debvisor unit enable nginx.service --node n2      (reloads systemd after changing the links)
  debvisor unit stop dbus.service --node n2 --force protected units need --force, as an admin

Protected units (debvisor, dbus, systemd-journald, systemd-udevd, an active systemd-networkd)
refuse stop, disable and mask without --force. See docs/units.md.
"""


def add_unit_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`debvisor unit ACTION ...`."""
    api = [connection_parent()]
    raw = argparse.RawDescriptionHelpFormatter
    unit = commands.add_parser(
        "unit",
        parents=api,
        help="a node's systemd units: list, show, start, stop, restart, enable, disable, mask, unmask",
        description="Manage the systemd units of any node through any node (like systemctl, cluster-wide).",
        epilog=_EPILOG,
        formatter_class=raw,
    )
    actions = unit.add_subparsers(dest="unit_command", metavar="ACTION", required=True)
    node_help = "the node whose units (default: the node the CLI talks to)"
    listing = actions.add_parser(
        "list", parents=api, help="loaded units, filtered (systemctl list-units --all)", epilog=_EPILOG,
        formatter_class=raw,
    )  # fmt: skip
    listing.add_argument("--node", default=None, help=node_help)
    listing.add_argument("--type", dest="kind", default=None, metavar="TYPE", help="service, timer, socket ... (a,b)")
    listing.add_argument("--active", default=None, metavar="STATE", help="active, inactive, failed ... (a,b)")
    listing.add_argument("--sub", default=None, metavar="STATE", help="running, exited, dead ... (a,b)")
    listing.add_argument("--load", default=None, metavar="STATE", help="loaded, not-found, masked ... (a,b)")
    listing.add_argument("--pattern", default=None, metavar="GLOB", help="a shell glob on the name: 'ssh*'")
    listing.set_defaults(func=_list)
    show = actions.add_parser("show", parents=api, help="one unit in detail (systemctl show, status)")
    show.add_argument("unit", help="the unit's full name: nginx.service")
    show.add_argument("--node", default=None, help=node_help)
    show.set_defaults(func=_show_unit)
    for action in ACTIONS:
        what = "waits for systemd's job" if action in ("start", "stop", "restart") else "then reloads systemd"
        command = actions.add_parser(action, parents=api, help=f"{action} a unit ({what})")
        command.add_argument("unit", help="the unit's full name: nginx.service")
        command.add_argument("--node", default=None, help=node_help)
        command.add_argument("--force", action="store_true", help="act on a protected unit (admins only)")
        command.set_defaults(func=_act, action=action)
    add_unit_file_commands(actions)
    add_unit_logs(actions)


def _unit_path(node: str, unit: str) -> str:
    return f"/api/v1/nodes/{quote(node, safe='')}/units/{quote(unit, safe='@')}"


def _list(args: argparse.Namespace) -> int:
    filters = {"type": args.kind, "active": args.active, "sub": args.sub, "load": args.load, "pattern": args.pattern}
    params = {k: v for k, v in filters.items() if v}
    with open_client(args) as client:
        node = target_node(client, args)
        data = call(client, "GET", f"/api/v1/nodes/{quote(node, safe='')}/units", params=params)
    columns = [("name", "UNIT"), ("load_state", "LOAD"), ("active_state", "ACTIVE"), ("sub_state", "SUB"),
               ("description", "DESCRIPTION")]  # fmt: skip
    return _show(args, data, lambda d: _table(d, columns) if d else "no units match")


def _show_unit(args: argparse.Namespace) -> int:
    with open_client(args) as client:
        node = target_node(client, args)
        data = call(client, "GET", _unit_path(node, args.unit))
    return _show(args, data, lambda d: render_details(d, node))


def render_details(d: dict[str, Any], node: str) -> str:
    """`unit show`'s text: what `systemctl status` leads with, then the dependencies."""

    def value(key: str, unit: str = "") -> str:
        found = d.get(key)
        return "-" if found is None or found == "" else f"{found}{unit}"

    cpu = "-" if d.get("cpu_seconds") is None else f"{d['cpu_seconds']:.3f} s"
    memory = "-" if d.get("memory_bytes") is None else f"{d['memory_bytes'] / (1 << 20):.1f} MiB"
    lines = [
        f"{d['name']} on {node} - {d['description']}",
        f"  loaded    {d['load_state']} ({value('fragment_path')}; {value('unit_file_state')}; "
        f"preset {value('unit_file_preset')})",
        f"  active    {d['active_state']} ({d['sub_state']}) since {_when(d.get('since'))}; result {value('result')}",
        f"  main pid  {value('main_pid')}   tasks {value('tasks')}   memory {memory}   cpu {cpu}   "
        f"restarts {value('restarts')}",
    ]
    if d.get("protected"):
        lines.append("  protected stop, kill, disable and mask need --force (admins)")
    for key in ("requires", "wants", "required_by", "wanted_by", "after", "before", "triggers", "triggered_by"):
        if d.get(key):
            lines.append(f"  {key.replace('_', ' '):<12} {' '.join(d[key])}")
    return "\n".join(lines)


def _when(ts: float | None) -> str:
    from datetime import UTC, datetime  # noqa: PLC0415 - only `show` needs it

    return "-" if ts is None else datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _act(args: argparse.Namespace) -> int:
    body = {"force": True} if args.force else None
    with open_client(args) as client:
        node = target_node(client, args)
        result = call(client, "POST", f"{_unit_path(node, args.unit)}/{args.action}", json=body)
    if args.json:
        _show(args, result, str)
    else:
        print(describe(result, node))
    if result["job_result"] not in _OK_RESULTS and result["job_result"] != "running":
        if args.json:
            print(f"debvisor: {args.action} {args.unit}: job {result['job_result']}", file=sys.stderr)
        return 1
    return 0


def describe(result: dict[str, Any], node: str) -> str:
    """One line: what the action did and where the unit is now."""
    job = result["job_result"]
    head = f"{result['action']} {result['unit']} on {node}"
    state = f"{result['active_state']} ({result['sub_state']})"
    if job == "running":
        return f"{head}: job still running after {result['seconds']:.1f} s; now {state} (see: debvisor unit show)"
    if job and job not in _OK_RESULTS:
        why = f", unit result {result['result']}" if result.get("result") not in ("", "success") else ""
        return f"{head}: job {job}{why}; now {state}"
    changed = "; " + ", ".join(f"{c['type']} {c['file']}" for c in result["changes"]) if result["changes"] else ""
    return f"{head}: {job or 'done'}; now {state}, {result['unit_file_state'] or 'no unit file'}{changed}"


__all__ = ["ClientError", "add_unit_commands", "describe", "render_details"]
