"""`debvisor unit cat|create|edit|revert|run`: unit files and one-off commands on any node.

Actions of the `unit` command (appliance/cli_units.py adds them); `--node` names the node
(default: the node the CLI talks to), as for the other unit actions.

Through the API of any node (appliance/units/edit_routes.py), like the other client commands
(connection options in appliance/cli_connect.py). `cat` prints a unit's file and drop-ins the
way `systemctl cat` does. `create` writes a whole service or timer from a file (or `-`,
standard input); `edit` writes a drop-in override (`--drop-in NAME`, default 50-debvisor),
or the whole file with `--full`, from `--file` or, at a terminal, in $EDITOR (VISUAL, EDITOR,
else `editor`) starting from what is there now, as `systemctl edit` does. Each prints the
change's diff (secrets redacted); the node refuses content systemd would not load, and says
why in one line. `revert` removes the file of ours. `run` starts a command as
`debvisor-run-NAME.service` and prints how it ended; exit 1 when it failed.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import msgspec

from appliance.cli_connect import ClientError, call, connection_parent, open_client, target_node

DEFAULT_DROPIN = "50-debvisor"

_EPILOG = """\
examples:
  debvisor unit cat ssh.service --node n1
  debvisor unit create backup.service --node n1 --file backup.service
  debvisor unit edit ssh.service --node n1                  drop-in 50-debvisor.conf in $EDITOR
  debvisor unit edit backup.service --node n1 --full --file backup.service
  debvisor unit revert ssh.service --node n1
  debvisor unit run --node n1 fstrim -- /sbin/fstrim -av          options come before NAME
  debvisor unit run --node n1 --on-calendar '*-*-* 03:00' nightly -- /usr/local/bin/backup
"""


def add_unit_file_commands(unit_commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`cat`, `create`, `edit`, `revert` and `run` under `debvisor unit`."""
    api = [connection_parent()]
    raw = argparse.RawDescriptionHelpFormatter
    cat = unit_commands.add_parser(
        "cat", parents=api, help="a unit's file and drop-ins (admin)", epilog=_EPILOG, formatter_class=raw
    )
    _node_unit(cat)
    cat.set_defaults(func=_cat)

    create = unit_commands.add_parser("create", parents=api, help="write a whole service or timer (admin)")
    _node_unit(create)
    create.add_argument("--file", required=True, help="the unit file to write ('-': standard input)")
    create.set_defaults(func=_create)

    edit = unit_commands.add_parser(
        "edit", parents=api, help="write a drop-in override (or the whole file with --full) (admin)"
    )
    _node_unit(edit)
    edit.add_argument("--drop-in", dest="dropin", default=DEFAULT_DROPIN, help="drop-in name (default 50-debvisor)")
    edit.add_argument("--full", action="store_true", help="the whole unit file, not a drop-in")
    edit.add_argument("--file", default=None, help="the content ('-': standard input); default: $EDITOR")
    edit.set_defaults(func=_edit)

    revert = unit_commands.add_parser("revert", parents=api, help="remove our file or drop-in, and reload (admin)")
    _node_unit(revert)
    revert.add_argument("--drop-in", dest="dropin", default=None, help="that drop-in (default: ours)")
    revert.set_defaults(func=_revert)

    run = unit_commands.add_parser(
        "run", parents=api, help="run a one-off command as debvisor-run-NAME.service (admin)"
    )
    run.add_argument("name", help="names the unit: debvisor-run-NAME.service")
    run.add_argument("command", nargs=argparse.REMAINDER, help="-- then an absolute path and its arguments")
    run.add_argument("--on-active", type=float, default=None, metavar="SECONDS", help="run this much later")
    run.add_argument("--on-calendar", default=None, metavar="SPEC", help="run at this time (systemd.time(7))")
    run.add_argument("--wait", type=float, default=60.0, metavar="SECONDS", help="wait this long for it (60)")
    run.add_argument("--description", default=None)
    run.add_argument("--node", default=None, help="the node to run it on (default: the node the CLI talks to)")
    run.set_defaults(func=_run)


def _node_unit(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("unit", help="the unit's name (NAME.service, NAME.timer)")
    parser.add_argument("--node", default=None, help="the node whose unit it is (default: the node the CLI talks to)")


def _path(client: httpx.Client, args: argparse.Namespace) -> str:
    node = target_node(client, args)
    return f"/api/v1/nodes/{quote(node, safe='')}/units/{quote(args.unit, safe='')}/file"


def _print_json(data: Any) -> None:
    print(msgspec.json.format(msgspec.json.encode(data)).decode())


def _cat(args: argparse.Namespace) -> int:
    with open_client(args) as client:
        view = call(client, "GET", _path(client, args))
    if args.json:
        _print_json(view)
        return 0
    parts = []
    if view["path"] is not None:
        parts.append(f"# {view['path']}\n{view['content']}")
    parts += [f"# {d['path']}\n{d['content']}" for d in view["dropins"]]
    print("\n".join(part.rstrip("\n") + "\n" for part in parts), end="")
    return 0


def _read_content(source: str) -> str:
    if source == "-":
        return sys.stdin.read()
    try:
        return Path(source).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ClientError(f"cannot read {source}: {exc}") from exc


def _write(args: argparse.Namespace, content: str, dropin: str | None) -> int:
    with open_client(args) as client:
        change = call(client, "PUT", _path(client, args), json={"content": content, "dropin": dropin})
    return _report(args, change)


def _report(args: argparse.Namespace, change: dict[str, Any]) -> int:
    if args.json:
        _print_json(change)
    else:
        state = f" (load state {change['load_state']})" if change.get("load_state") else ""
        print(f"{change['action']} {change['path']}{state}")
        print(change["diff"], end="")
    return 0


def _create(args: argparse.Namespace) -> int:
    return _write(args, _read_content(args.file), None)


def _edit(args: argparse.Namespace) -> int:
    dropin = None if args.full else args.dropin
    if args.file is not None:
        return _write(args, _read_content(args.file), dropin)
    with open_client(args) as client:
        try:
            view = call(client, "GET", _path(client, args))
        except ClientError as exc:
            if not str(exc).startswith("404") or dropin is not None:
                raise
            view = {"path": None, "content": None, "dropins": []}
    current = _current(view, dropin)
    edited = _in_editor(current, args.unit, dropin)
    if edited == current:
        print("unchanged")
        return 0
    return _write(args, edited, dropin)


def _current(view: dict[str, Any], dropin: str | None) -> str:
    """What the editor starts from: the drop-in as it is (empty when new) or the whole file."""
    if dropin is None:
        return str(view.get("content") or "")
    name = dropin if dropin.endswith(".conf") else f"{dropin}.conf"
    found = [d for d in view["dropins"] if d["name"] == name and d["path"].startswith("/etc/")]
    return str(found[0]["content"]) if found else ""


def _in_editor(text: str, unit: str, dropin: str | None) -> str:
    if not sys.stdin.isatty():
        raise ClientError("no terminal for an editor: give --file FILE (or --file - for standard input)")
    editor = os.environ.get("VISUAL") or os.environ.get("EDITOR") or "editor"
    suffix = ".conf" if dropin is not None else f".{unit.rsplit('.', 1)[-1]}"
    with tempfile.TemporaryDirectory(prefix="debvisor-edit-") as folder:
        path = Path(folder) / f"{unit}{suffix}"
        path.write_text(text, encoding="utf-8")
        try:
            done = subprocess.run([*shlex.split(editor), str(path)], check=False)  # noqa: S603 - the user's own editor
        except OSError as exc:
            raise ClientError(f"cannot start the editor {editor!r}: {exc}") from exc
        if done.returncode != 0:
            raise ClientError(f"the editor exited {done.returncode}: nothing written")
        return path.read_text(encoding="utf-8")


def _revert(args: argparse.Namespace) -> int:
    with open_client(args) as client:
        change = call(client, "DELETE", _path(client, args), params={"dropin": args.dropin} if args.dropin else None)
    return _report(args, change)


def _run(args: argparse.Namespace) -> int:
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if command[:1] and command[0].startswith("-"):
        raise ClientError(f"{command[0]}: options go before NAME: debvisor unit run [--node NODE] NAME -- COMMAND")
    if not command:
        raise ClientError("give the command after --: debvisor unit run [--node NODE] NAME -- /path/to/program ARGS")
    body: dict[str, Any] = {"name": args.name, "command": command, "wait_seconds": args.wait}
    if args.description is not None:
        body["description"] = args.description
    if args.on_active is not None:
        body["on_active_sec"] = args.on_active
    if args.on_calendar is not None:
        body["on_calendar"] = args.on_calendar
    # The node waits up to --wait for the command: the client waits a little longer.
    with open_client(args) as client:
        client.timeout = args.wait + 30.0
        result = call(
            client, "POST", f"/api/v1/nodes/{quote(target_node(client, args), safe='')}/units/transient", json=body
        )
    if args.json:
        _print_json(result)
    elif result.get("timer"):
        print(f"{result['timer']}: {result['job']}; it starts {result['unit']}")
    else:
        status = "" if result.get("exit_status") is None else f", exit status {result['exit_status']}"
        print(f"{result['unit']}: {result['job']} ({result.get('result') or 'no result yet'}{status})")
    return 1 if result["job"] not in ("done", "running", "scheduled") else 0
