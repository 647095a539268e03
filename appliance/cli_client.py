"""The `debvisor` commands that speak the REST API of any node: nodes, cluster, users, audit.

They need `--url https://NODE:8443` (or DEBVISOR_URL), credentials (`--token`, or
DEBVISOR_TOKEN; or `--user NAME` to log in with a password asked on the terminal), and the
cluster CA to verify the node (`--ca`, DEBVISOR_CA, or the local node's
/var/lib/debvisor/pki/ca.crt). Output is a table, or the API's JSON with `--json`. An error
answer from the API ends the command with its problem `detail` on one line, exit 1.
"""

from __future__ import annotations

import argparse
import getpass
import os
import ssl
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from appliance.datadir import default_data_dir

if TYPE_CHECKING:
    import httpx  # imported when a client command runs: `debvisor serve` never needs it


class ClientError(Exception):
    """The API refused or could not be reached; the message is one line."""


def add_client_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("talking to a node (nodes, cluster, users, audit list)")
    group.add_argument("--url", default=os.environ.get("DEBVISOR_URL"), help="https://NODE:8443 (DEBVISOR_URL)")
    group.add_argument("--token", default=os.environ.get("DEBVISOR_TOKEN"), help="API token (DEBVISOR_TOKEN)")
    group.add_argument("--user", default=None, help="log in as this user instead (asks for the password)")
    group.add_argument("--ca", type=Path, default=os.environ.get("DEBVISOR_CA"), help="cluster CA (DEBVISOR_CA)")
    group.add_argument("--json", action="store_true", help="print the API's JSON instead of a table")


def add_client_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    nodes = commands.add_parser("nodes", help="cluster members (through any node)")
    nodes.add_argument("action", nargs="?", default="list", choices=["list", "show", "remove"])
    nodes.add_argument("name", nargs="?")
    nodes.set_defaults(func=_nodes)
    cluster = commands.add_parser("cluster", help="cluster summary")
    cluster.add_argument("--fresh", action="store_true", help="ask every member now (2 s deadline)")
    cluster.set_defaults(func=_cluster)
    users = commands.add_parser("users", help="accounts, cluster-wide (admin)")
    users.add_argument("action", nargs="?", default="list", choices=["list", "add", "del"])
    users.add_argument("name", nargs="?")
    users.add_argument("--role", choices=["admin", "operator", "viewer", "developer"])
    users.set_defaults(func=_users)
    pxe = commands.add_parser("pxe", help="machines a node PXE-booted: list, approve or refuse their enrolment")
    pxe.add_argument("action", choices=["machines", "approve", "refuse"])
    pxe.add_argument("node", help="the boot server node")
    pxe.add_argument("mac", nargs="?", help="the machine's MAC (approve, refuse)")
    pxe.add_argument("--name", default=None, help="approve: the node name it joins under (default: its settings')")
    pxe.set_defaults(func=_pxe)


def add_audit_list(audit_commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    listing = audit_commands.add_parser("list", help="read the audit log through the API")
    listing.add_argument("--node", default=None, help="a node's name, or 'all' to merge every member's log")
    listing.add_argument("--filter-user", dest="filter_user", default=None, help="only this user's entries")
    listing.add_argument("--action", default=None, help="exact action, or a prefix ending in . or *")
    listing.add_argument("--limit", type=int, default=50)
    listing.set_defaults(func=_audit_list)


# -- plumbing -----------------------------------------------------------------------------


def _client(args: argparse.Namespace) -> httpx.Client:
    import httpx  # noqa: PLC0415 - kept off the node's start-up path (~65 ms here, seconds emulated)

    if not args.url:
        raise ClientError("give --url https://NODE:8443 (or set DEBVISOR_URL)")
    ca = args.ca or (default_data_dir() / "pki" / "ca.crt")
    if not Path(ca).is_file():
        raise ClientError(f"no cluster CA at {ca}: give --ca (or DEBVISOR_CA)")
    context = ssl.create_default_context(cafile=str(ca))
    context.check_hostname = False  # the node is pinned by the cluster CA
    client = httpx.Client(base_url=args.url.rstrip("/"), verify=context, timeout=15)
    if args.user:
        password = getpass.getpass(f"Password for {args.user}: ")
        login = _call(client, "POST", "/api/v1/auth/login", json={"username": args.user, "password": password})
        client.headers["X-CSRF-Token"] = login["csrf_token"]
    elif args.token:
        client.headers["Authorization"] = f"Bearer {args.token}"
    else:
        raise ClientError("give --token (or DEBVISOR_TOKEN), or --user to log in")
    return client


def _call(client: httpx.Client, method: str, path: str, **kwargs: Any) -> Any:
    import httpx  # noqa: PLC0415 - see _client

    try:
        response = client.request(method, path, **kwargs)
    except httpx.HTTPError as exc:
        raise ClientError(f"cannot reach {client.base_url}: {exc}") from exc
    if response.status_code >= 400:
        try:
            detail = response.json().get("detail") or response.json().get("title")
        except (ValueError, AttributeError):
            detail = response.text[:200]
        raise ClientError(f"{response.status_code}: {detail}")
    return response.json() if response.content else None


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
        body = {"name": args.name} if args.action == "approve" and args.name else None
        decided = _call(client, "POST", f"{base}/{args.mac}/{args.action}", json=body)
    verb = f"approved to join as {decided['name']}" if args.action == "approve" else "refused"
    return _show(args, decided, lambda _d: f"{args.mac} {verb}")


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
