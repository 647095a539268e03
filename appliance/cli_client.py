"""The `debvisor` commands that speak the REST API of any node: nodes, cluster, users, audit.

They need a node, its CA and a credential: a remote (`debvisor remote add`, `debvisor login`)
gives all three once; `--url`, `--ca`/`--ca-fingerprint` and `--token`/`--user` (or
DEBVISOR_URL, DEBVISOR_CA, DEBVISOR_TOKEN) give or override them per command, before or
after the command (appliance/cli_connect.py). Output is a table, or the API's JSON with
`--json`. An error answer from the API ends the command with its problem `detail` on one
line, exit 1.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec

from appliance.cli_connect import ClientError, add_connection_options, call, connection_parent, open_client

__all__ = ["ClientError", "add_audit_list", "add_client_commands", "add_client_options"]

_NODES_EPILOG = """\
examples:
  debvisor nodes                                   members of the current remote's cluster
  debvisor nodes list --remote lab --json          the same from remote lab, as JSON
  debvisor nodes show n2
  debvisor --url https://10.0.0.11:8443 --ca-fingerprint 3f9a... --token dvt_... nodes list
"""


_PXE_EPILOG = """\
examples:
  debvisor pxe machines n1                                  what n1 booted, with each machine's state
  debvisor pxe approve n1 52:54:00:aa:bb:01 --name rack1-n1
  debvisor pxe set n1 52:54:00:aa:bb:01 --extra systemd.unit=rescue.target   only extra changes
  debvisor pxe set n1 52:54:00:aa:bb:01 --clear extra --clear ip
"""


def add_client_options(parser: argparse.ArgumentParser) -> None:
    """The connection options before the command (`debvisor --remote lab nodes`)."""
    add_connection_options(parser, suppress=False)


def add_client_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`nodes`, `cluster`, `authorities`, `users`, `pxe`; they take the connection options after
    the command too (`debvisor nodes list --remote lab`)."""
    api = [connection_parent()]
    raw = argparse.RawDescriptionHelpFormatter
    nodes = commands.add_parser(
        "nodes", parents=api, help="cluster members (through any node)", epilog=_NODES_EPILOG, formatter_class=raw
    )
    nodes.add_argument("action", nargs="?", default="list", choices=["list", "show", "remove"])
    nodes.add_argument("name", nargs="?")
    nodes.set_defaults(func=_nodes)
    cluster = commands.add_parser("cluster", parents=api, help="cluster summary")
    cluster.add_argument("--fresh", action="store_true", help="ask every member now (2 s deadline)")
    cluster.set_defaults(func=_cluster)
    users = commands.add_parser("users", parents=api, help="accounts, cluster-wide (admin)")
    users.add_argument("action", nargs="?", default="list", choices=["list", "add", "del"])
    users.add_argument("name", nargs="?")
    users.add_argument("--role", choices=["admin", "operator", "viewer", "developer"])
    users.set_defaults(func=_users)
    pxe = commands.add_parser(
        "pxe",
        parents=api,
        help="machines a node PXE-booted: list, approve or refuse their enrolment, change their boot settings",
        epilog=_PXE_EPILOG,
        formatter_class=raw,
    )
    pxe.add_argument("action", choices=["machines", "approve", "refuse", "set"])
    pxe.add_argument("node", help="the boot server node")
    pxe.add_argument("mac", nargs="?", help="the machine's MAC (approve, refuse, set)")
    pxe.add_argument(
        "--name", default=None, help="approve: the node name it joins under (default: its settings'); set: its name"
    )
    pxe.add_argument(
        "--extra", action="append", default=None, metavar="ARG", help="set: its extra kernel arguments (repeatable)"
    )
    pxe.add_argument("--ip", default=None, help="set: its fixed address (full DHCP mode)")
    pxe.add_argument(
        "--clear", action="append", default=[], choices=["name", "extra", "ip"], help="set: clear this field"
    )
    pxe.set_defaults(func=_pxe)


def add_audit_list(audit_commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    listing = audit_commands.add_parser(
        "list", parents=[connection_parent()], help="read the audit log through the API"
    )
    listing.add_argument("--node", default=None, help="a node's name, or 'all' to merge every member's log")
    listing.add_argument("--filter-user", dest="filter_user", default=None, help="only this user's entries")
    listing.add_argument("--action", default=None, help="exact action, or a prefix ending in . or *")
    listing.add_argument("--limit", type=int, default=50)
    listing.set_defaults(func=_audit_list)


# -- plumbing -----------------------------------------------------------------------------

# Kept under their old names: appliance/cli_audit.py uses them.
_client = open_client
_call = call


def _table(rows: Sequence[dict[str, Any]], columns: list[tuple[str, str]]) -> str:
    cells = [[str(row.get(key, "")) for key, _ in columns] for row in rows]
    widths = [max([len(title), *(len(c[i]) for c in cells)]) for i, (_, title) in enumerate(columns)]
    lines = ["  ".join(title.ljust(w) for (_, title), w in zip(columns, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(cell, widths, strict=True)).rstrip() for cell in cells]
    return "\n".join(lines)


def _show(args: argparse.Namespace, data: Any, render: Callable[[Any], str]) -> int:
    print(msgspec.json.format(msgspec.json.encode(data)).decode() if args.json else render(data))
    return 0


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")


# -- commands -----------------------------------------------------------------------------


def _nodes(args: argparse.Namespace) -> int:
    with _client(args) as client:
        if args.action == "list":
            data = _call(client, "GET", "/api/v1/nodes")
            columns = [("name", "NAME"), ("state", "STATE"), ("api_address", "API"), ("version", "VERSION")]
            return _show(args, data, lambda d: _table(d, columns))
        if not args.name:
            raise ClientError(f"nodes {args.action} needs a node name")
        if args.action == "show":
            node = _call(client, "GET", f"/api/v1/nodes/{args.name}")
            return _show(args, node, _render_node)
        _call(client, "DELETE", f"/api/v1/nodes/{args.name}")
        print(f"removed {args.name}; its certificate is revoked everywhere")
        return 0


def _render_node(node: dict[str, Any]) -> str:
    gib = 1 << 30
    memory, disk = node["memory"], node["disk"]
    return "\n".join(
        [
            f"name      {node['name']}  (version {node['version']}, up {node['uptime_seconds']:.0f} s)",
            f"cpu       {node['cpu']['count']} x {node['cpu']['model']}",
            f"memory    {memory['available_bytes'] / gib:.1f} of {memory['total_bytes'] / gib:.1f} GiB free",
            f"disk      {disk['free_bytes'] / gib:.1f} of {disk['total_bytes'] / gib:.1f} GiB free",
            f"kernel    {node['kernel']}",
            "addresses " + ", ".join(f"{a['address']}/{a['prefix_len']}" for a in node["addresses"]),
        ]
    )


def _cluster(args: argparse.Namespace) -> int:
    with _client(args) as client:
        data = _call(client, "GET", "/api/v1/cluster", params={"fresh": "true"} if args.fresh else None)

    def render(d: dict[str, Any]) -> str:
        states = ", ".join(f"{n} {s}" for s, n in sorted(d["states"].items()))
        totals = d["totals"]
        lines = [
            f"cluster {d['cluster_id']} (answered by {d['answered_by']})",
            f"members {states}; {totals['nodes']} up with {totals['cpus']} CPUs, "
            f"{totals['memory_bytes'] / (1 << 30):.1f} GiB memory",
            "versions " + ", ".join(f"{v} x{n}" for v, n in sorted(d["versions"].items())),
        ]
        if d.get("fresh") is not None:
            silent = [a["name"] for a in d["fresh"] if not a["answered"]]
            lines.append("fresh: all answered" if not silent else f"fresh: no answer from {', '.join(silent)}")
        return "\n".join(lines)

    return _show(args, data, render)


def authorities_list(args: argparse.Namespace) -> int:
    """`debvisor authorities` (list): the set as any node sees it; cli_admin registers it."""
    with _client(args) as client:
        data = _call(client, "GET", "/api/v1/cluster/authorities")
    columns = [("name", "NAME"), ("holds_key", "HOLDS KEY"), ("designated_by", "DESIGNATED BY")]
    return _show(args, data, lambda d: _table(d, columns))


def _users(args: argparse.Namespace) -> int:
    with _client(args) as client:
        if args.action == "list":
            data = _call(client, "GET", "/api/v1/users")
            columns = [("name", "NAME"), ("role", "ROLE"), ("enabled", "ENABLED"), ("must_change_password", "CHANGE")]
            return _show(args, data, lambda d: _table(d, columns))
        if not args.name:
            raise ClientError(f"users {args.action} needs a user name")
        if args.action == "del":
            _call(client, "DELETE", f"/api/v1/users/{args.name}")
            print(f"deleted {args.name} on every node")
            return 0
        if not args.role:
            raise ClientError("users add needs --role")
        password = getpass.getpass(f"Password for {args.name}: ") if sys.stdin.isatty() else sys.stdin.readline()
        body = {"name": args.name, "role": args.role, "password": password.rstrip("\n")}
        created = _call(client, "POST", "/api/v1/users", json=body)
        return _show(args, created, lambda d: f"created {d['name']} ({d['role']})")


def _pxe(args: argparse.Namespace) -> int:
    base = f"/api/v1/nodes/{args.node}/pxe/machines"
    with _client(args) as client:
        if args.action == "machines":
            data = _call(client, "GET", base)
            columns = [("mac", "MAC"), ("state", "STATE"), ("name", "NAME"), ("ip", "IP"), ("boots", "BOOTS")]
            return _show(args, data, lambda d: _table([{**m, "state": machine_state(m)} for m in d], columns))
        if not args.mac:
            raise ClientError(f"pxe {args.action} needs the machine's MAC")
        if args.action == "set":
            stored = _call(client, "PATCH", f"{base}/{args.mac}", json=machine_patch(args))
            return _show(args, stored, _render_machine_settings)
        body = {"name": args.name} if args.action == "approve" and args.name else None
        decided = _call(client, "POST", f"{base}/{args.mac}/{args.action}", json=body)
    verb = f"approved to join as {decided['name']}" if args.action == "approve" else "refused"
    return _show(args, decided, lambda _d: f"{args.mac} {verb}")


def machine_patch(args: argparse.Namespace) -> dict[str, Any]:
    """The merge-patch body of `pxe set`: only the fields given; a cleared one is null."""
    given = {"name": args.name, "extra": args.extra, "ip": args.ip}
    body: dict[str, Any] = {key: value for key, value in given.items() if value is not None}
    for field in args.clear:
        if field in body:
            raise ClientError(f"pxe set: --{field} and --clear {field} contradict each other")
        body[field] = None
    if not body:
        raise ClientError("pxe set needs at least one of --name, --extra, --ip, --clear")
    return body


def _render_machine_settings(stored: dict[str, Any]) -> str:
    extra = " ".join(stored["extra"]) or "-"
    return f"{stored['mac']}: name {stored['name'] or '-'}, ip {stored['ip'] or '-'}, extra {extra}"


def machine_state(machine: dict[str, Any]) -> str:
    """A machine's STATE cell: an approved one whose boot server gets no join token says why."""
    waiting = (machine.get("enrolment") or {}).get("waiting")
    return f"{machine['state']} (waiting for a certificate authority)" if waiting else str(machine["state"])


def _audit_list(args: argparse.Namespace) -> int:
    params = {"limit": str(args.limit)}
    for key, value in (("node", args.node), ("user", args.filter_user), ("action", args.action)):
        if value:
            params[key] = value
    with _client(args) as client:
        data = _call(client, "GET", "/api/v1/audit", params=params)

    def render(d: dict[str, Any]) -> str:
        rows = [{**e, "when": _when(e["ts"])} for e in d["entries"]]
        columns = [("when", "TIME (UTC)"), ("node", "NODE"), ("user", "USER"), ("action", "ACTION"),
                   ("target", "TARGET"), ("outcome", "OUTCOME")]  # fmt: skip
        text = _table(rows, columns)
        if d.get("unreachable"):
            text += "\nno answer from: " + ", ".join(d["unreachable"])
        return text

    return _show(args, data, render)
