"""`debvisor unit logs [UNIT] [-f]` and `debvisor node reboot|poweroff NAME`, through any node.

`unit logs` prints a node's journal (default: the node the command talks to) the way
`journalctl` does (time, host, identifier[pid]: message), filtered by unit and the API's
filters; `-f` then follows it over the `.../journal/follow` WebSocket until interrupted.
`node reboot|poweroff` asks for the node's name to be typed back (or takes `--confirm NAME`
where there is no terminal) and a `--reason`.

The `unit` command (appliance/cli_units.py) adds `logs` among its actions, the `node` command
(appliance/cli_history.py) `reboot` and `poweroff`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode, urlsplit

import msgspec

from appliance.cli_connect import (
    ClientError,
    call,
    connection_parent,
    interactive,
    open_client,
    prompt,
    resolve,
    target_node,
)

_LOGS_EPILOG = """\
examples:
  debvisor unit logs nginx.service                      the last 50 lines of its journal on this node
  debvisor unit logs nginx.service --node n2 -f         then follow it (Ctrl-C ends)
  debvisor unit logs --node n2 -p err --since -1h       every error of the last hour on n2
  debvisor unit logs -g timeout -n 200 --json           entries whose message holds "timeout"
"""

_POWER_EPILOG = """\
examples:
  debvisor node reboot n2 --reason "kernel update"              asks you to type n2 back
  debvisor node poweroff n3 --reason "move rack" --confirm n3   without a terminal
"""

PRIORITY_NAMES = ("emerg", "alert", "crit", "err", "warning", "notice", "info", "debug")


def add_unit_logs(unit_actions: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`logs` among the `unit` command's actions."""
    logs = unit_actions.add_parser(
        "logs",
        parents=[connection_parent()],
        help="a node's journal, for one unit or all (-f follows)",
        epilog=_LOGS_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    logs.add_argument("unit", nargs="?", help="a unit's name (default: the whole journal)")
    logs.add_argument("--node", default=None, help="whose journal (default: the node this command talks to)")
    logs.add_argument("-n", "--lines", type=int, default=50, help="how many entries (1-1000; default 50)")
    logs.add_argument("-f", "--follow", action="store_true", help="then print new entries as they come")
    logs.add_argument("-p", "--priority", default=None, help="0-7 or emerg..debug: this and more important")
    logs.add_argument("-b", "--boot", default=None, help="0 (this boot), -1, ... or a boot id")
    logs.add_argument("-g", "--grep", default=None, help="text the message holds (any case; not a pattern)")
    logs.add_argument("-t", "--identifier", default=None, help="a syslog identifier")
    logs.add_argument("--since", default=None, help="ISO 8601 time, seconds since the epoch, or -30m/-2h/-1d")
    logs.add_argument("--until", default=None, help="as --since")
    logs.set_defaults(func=unit_logs)


def add_node_power(node_actions: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`reboot` and `poweroff` among the `node` command's actions."""
    for action, text in (("reboot", "reboot a node"), ("poweroff", "power a node off")):
        parser = node_actions.add_parser(
            action,
            parents=[connection_parent()],
            help=f"{text} (admin; it leaves the cluster first)",
            epilog=_POWER_EPILOG,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        parser.add_argument("name", help="the node")
        parser.add_argument("--reason", required=True, help="why (kept in the audit log)")
        parser.add_argument("--confirm", default=None, metavar="NAME", help="the node's name again (else asked)")
        parser.set_defaults(func=node_power, power_action=action)


def _filters(args: argparse.Namespace) -> dict[str, str]:
    if not 1 <= args.lines <= 1000:
        raise ClientError("--lines is from 1 to 1000")
    given = {
        "unit": args.unit, "priority": args.priority, "boot": args.boot, "match": args.grep,
        "identifier": args.identifier, "since": args.since, "until": args.until, "limit": str(args.lines),
    }  # fmt: skip
    return {k: v for k, v in given.items() if v}


def render(entry: dict[str, Any]) -> str:
    """One entry as journalctl's short format prints it (times in UTC)."""
    when = datetime.fromtimestamp(entry["time"], UTC).strftime("%b %d %H:%M:%S")
    who = entry.get("identifier") or entry.get("unit") or "?"
    pid = f"[{entry['pid']}]" if entry.get("pid") is not None else ""
    return f"{when} {entry.get('hostname') or ''} {who}{pid}: {entry['message']}"


def unit_logs(args: argparse.Namespace) -> int:
    filters = _filters(args)
    with open_client(args) as client:
        node = target_node(client, args)
        page = call(client, "GET", f"/api/v1/nodes/{node}/journal", params=filters)
        encoder = msgspec.json.Encoder()
        for entry in page["entries"]:
            print(encoder.encode(entry).decode() if args.json else render(entry), flush=True)
        if not args.follow:
            return 0
        entries = page["entries"]
        follow = {k: v for k, v in filters.items() if k != "limit"}
        if entries:
            follow["after"] = entries[-1]["cursor"]
        else:
            follow["limit"] = "1"  # nothing matched so far: whatever comes from now on
        headers = {k: v for k, v in client.headers.items() if k.lower() == "authorization"}
        cookies = "; ".join(f"{k}={v}" for k, v in client.cookies.items())
    if cookies:
        headers["Cookie"] = cookies
    path = f"/api/v1/nodes/{node}/journal/follow?{urlencode(follow)}"
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_follow(args, path, headers, as_json=args.json))
    return 0


async def _follow(args: argparse.Namespace, path: str, headers: dict[str, str], *, as_json: bool) -> None:
    from appliance import remotes  # noqa: PLC0415 - the client side only
    from appliance.api.wsclient import HandshakeRefused, WsClient  # noqa: PLC0415

    target = resolve(args)
    url = urlsplit(target.url)
    host, port = url.hostname or "", url.port or 443
    headers["Origin"] = f"{url.scheme}://{url.netloc}"
    try:
        socket = await WsClient.open(host, port, path, context=remotes.context_for(target.ca_pem), headers=headers)
    except HandshakeRefused as exc:
        raise ClientError(f"the node refused to follow the journal (HTTP {exc.status})") from None
    except OSError as exc:
        raise ClientError(f"cannot reach {target.url}: {exc}") from None
    try:
        while (message := await socket.recv()) is not None:
            entry = msgspec.json.decode(message)
            if entry.get("type") == "heartbeat":
                continue
            print(message if as_json else render(entry), flush=True)
    finally:
        socket.abort()
    if socket.close_code not in (None, 1000):
        raise ClientError(f"the journal stream ended: {socket.close_code} {socket.close_reason}")


def node_power(args: argparse.Namespace) -> int:
    confirm = args.confirm
    if confirm is None:
        if not interactive():
            raise ClientError(f"give --confirm {args.name} (there is no terminal to ask on)")
        confirm = prompt(f"{args.power_action} {args.name}: type the node's name to confirm: ").strip()
    if confirm != args.name:
        raise ClientError(f"the name typed back is not {args.name!r}; nothing was done")
    body = {"action": args.power_action, "reason": args.reason, "confirm": confirm}
    with open_client(args) as client:
        accepted = call(client, "POST", f"/api/v1/nodes/{args.name}/power", json=body)
    if args.json:
        print(msgspec.json.encode(accepted).decode())
    else:
        print(f"{args.name} left the cluster and is going to {args.power_action} ({accepted['target']})")
    return 0
