"""Local administration commands: `debvisor user ...`, `token create`, `authorities set`, `audit verify`.

They work on the data directory directly, as root on the node's console, for recovery when
nobody can log in (`audit verify` compares with the peers through the API: cli_audit.py).
Each change is written to the audit log as user `root` from source `console`. Passwords are
read from the terminal (twice) or, with `--password-stdin`, from the first line of standard
input; they never appear on the command line.

`authorities set` exists only here, not in the API: the authority set decides who gets the
CA key, and an API credential rests on account records that any member can write (root on an
ordinary node could make itself an admin). Root on an authority's console is the one
principal no other node can fake; the command signs the new designations with the CA key in
that node's data dir, and the running node replicates them. `debvisor authorities` without
`set` lists the set through the API (cli_client.py).
"""

from __future__ import annotations

import argparse
import getpass
import sys
import time
from collections.abc import Callable
from pathlib import Path

from appliance.api.problems import ApiError
from appliance.audit.log import AuditLog
from appliance.auth.accounts import AccountService
from appliance.auth.permissions import Role
from appliance.bootstrap import API_ADVERTISE_KEY, LocalState, open_local_state
from appliance.cli_audit import add_audit_verify
from appliance.cli_client import add_audit_list, authorities_list
from appliance.cli_connect import connection_parent
from appliance.cluster.authority import Authorities, change_refusal
from appliance.cluster.join import JoinService
from appliance.datadir import DataDir, default_data_dir
from appliance.identity.registry import CertRegistry
from appliance.identity.store import load_identity
from appliance.settings import SettingsError, validate_node_name
from appliance.store.config import ConfigStore
from appliance.store.hlc import HybridClock

CONSOLE_USER = "root"
CONSOLE_SOURCE = "console"


class CommandError(Exception):
    """A local command failed for a reason the operator can act on (one line)."""


def add_admin_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `user` and `audit` on the top-level parser's subcommands."""
    data_dir = argparse.ArgumentParser(add_help=False)
    data_dir.add_argument(
        "--data-dir", type=Path, default=None, metavar="DIR", help="the node's data dir (default as for serve)"
    )

    user = commands.add_parser(
        "user",
        help="manage local accounts directly on this node (recovery; as root)",
        description="Manage accounts in this node's database without the API, e.g. when nobody can log in.",
    )
    user_commands = user.add_subparsers(dest="user_command", metavar="ACTION", required=True)
    add = user_commands.add_parser("add", parents=[data_dir], help="create a user")
    add.add_argument("name")
    add.add_argument("--role", required=True, choices=[r.value for r in Role])
    add.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    add.set_defaults(func=_user_add)
    listing = user_commands.add_parser("list", parents=[data_dir], help="list users")
    listing.set_defaults(func=_user_list)
    passwd = user_commands.add_parser("passwd", parents=[data_dir], help="set a user's password")
    passwd.add_argument("name")
    passwd.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    passwd.add_argument("--temporary", action="store_true", help="the user must change it at next login (default: no)")
    passwd.set_defaults(func=_user_passwd)
    delete = user_commands.add_parser("del", parents=[data_dir], help="delete a user and their API tokens")
    delete.add_argument("name")
    delete.set_defaults(func=_user_del)

    token = commands.add_parser(
        "token",
        help="join tokens for new nodes (as root on a member)",
        description="Create single-use tokens that let a new machine join this node's cluster.",
    )
    token_commands = token.add_subparsers(dest="token_command", metavar="ACTION", required=True)
    create = token_commands.add_parser(
        "create",
        parents=[data_dir],
        help="print a new join token",
        description="Print a single-use join token. On the new machine: debvisor serve --join TOKEN",
    )
    create.add_argument("--ttl", type=float, default=3.0, metavar="HOURS", help="validity in hours (default: 3)")
    create.set_defaults(func=_token_create)

    api = [connection_parent()]
    authorities = commands.add_parser(
        "authorities",
        parents=api,
        help="the nodes that hold the CA key and sign certificates (set: as root on an authority)",
        description="Without an action, or with list: the set, through any node's API (--url...). The API "
        "cannot change it: see `authorities set --help`.",
    )
    authorities.set_defaults(func=_authorities_list)
    authorities_commands = authorities.add_subparsers(dest="authorities_command", metavar="ACTION")
    authorities_commands.add_parser("list", parents=api, help="the set, through any node's API").set_defaults(
        func=_authorities_list
    )
    change = authorities_commands.add_parser(
        "set",
        parents=[data_dir],
        help="make these nodes the authorities (as root on an authority's console)",
        description="As root on the console of an authority (a node `list` shows holding the key), with the "
        "data dir of that node: sign the new set with the CA key there; the running node replicates it. To "
        "replace authorities, add the new nodes first, wait until `list` shows they hold the key, then "
        "remove the old ones.",
    )
    change.add_argument("names", nargs="+", metavar="NODE", help="every node that should be an authority")
    change.set_defaults(func=_authorities_set)

    audit = commands.add_parser("audit", help="check the audit log", description="Work with this node's audit log.")
    audit_commands = audit.add_subparsers(dest="audit_command", metavar="ACTION", required=True)
    add_audit_verify(audit_commands, data_dir)
    add_audit_list(audit_commands)


def _open(args: argparse.Namespace) -> LocalState:
    return open_local_state(args.data_dir or default_data_dir())


def _services(state: LocalState) -> tuple[AccountService, AuditLog]:
    return AccountService(ConfigStore(state.db, HybridClock(state.node_id))), AuditLog(state.db, state.name)


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        line = sys.stdin.readline()
        if not line:
            raise CommandError("no password on standard input")
        return line.rstrip("\n")
    if not sys.stdin.isatty():
        raise CommandError("no terminal to ask for a password; use --password-stdin")
    first = getpass.getpass("New password: ")
    if first != getpass.getpass("Repeat it: "):
        raise CommandError("the passwords differ")
    return first


def _apply(audit: AuditLog, action: str, target: str, detail: str, change: Callable[[], object]) -> None:
    """Make a change and record its outcome in the audit log; a refused change is a CommandError."""
    try:
        change()
    except ApiError as exc:
        audit.append(
            user=CONSOLE_USER, source=CONSOLE_SOURCE, action=action, target=target, outcome="failed", detail=exc.detail
        )
        raise CommandError(exc.detail) from exc
    audit.append(
        user=CONSOLE_USER, source=CONSOLE_SOURCE, action=action, target=target, outcome="success", detail=detail
    )


def _user_add(args: argparse.Namespace) -> int:
    state = _open(args)
    try:
        accounts, audit = _services(state)
        password = _read_password(args.password_stdin)
        _apply(
            audit,
            "user.create",
            args.name,
            f"role {args.role}",
            lambda: accounts.create_user(args.name, Role(args.role), password),
        )
        print(f"created user {args.name} ({args.role})")
    finally:
        state.close()
    return 0


def _user_list(args: argparse.Namespace) -> int:
    state = _open(args)
    try:
        accounts, _ = _services(state)
        print(f"{'NAME':<24} {'ROLE':<10} {'ENABLED':<8} CHANGE-PASSWORD")
        for user in accounts.users():
            print(f"{user.name:<24} {user.role:<10} {'yes' if user.enabled else 'no':<8} "
                  f"{'required' if user.must_change_password else '-'}")  # fmt: skip
    finally:
        state.close()
    return 0


def _user_passwd(args: argparse.Namespace) -> int:
    state = _open(args)
    try:
        accounts, audit = _services(state)
        if accounts.user(args.name) is None:
            raise CommandError(f"no user {args.name!r}")
        password = _read_password(args.password_stdin)
        detail = "temporary" if args.temporary else ""
        _apply(
            audit,
            "user.password",
            args.name,
            detail,
            lambda: accounts.set_password(args.name, password, must_change=args.temporary),
        )
        print(f"password of {args.name} set; their sessions have ended")
    finally:
        state.close()
    return 0


def _user_del(args: argparse.Namespace) -> int:
    state = _open(args)
    try:
        accounts, audit = _services(state)
        _apply(audit, "user.delete", args.name, "", lambda: accounts.delete_user(args.name))
        print(f"deleted user {args.name}")
    finally:
        state.close()
    return 0


def _token_create(args: argparse.Namespace) -> int:
    if not 0 < args.ttl <= 7 * 24:
        raise CommandError("--ttl must be between 0 and 168 hours")
    state = _open(args)
    try:
        datadir = DataDir(args.data_dir or default_data_dir())
        identity = load_identity(datadir, state.name)
        api = state.db.get_meta(API_ADVERTISE_KEY)
        if api is None:
            raise CommandError("this node has not served yet, so its API address is unknown; start it first")
        store = ConfigStore(state.db, HybridClock(state.node_id))
        cluster_id = state.db.get_meta("cluster_id") or ""
        joins = JoinService(store=store, db=state.db, identity=identity, cluster_id=cluster_id, api_seeds=lambda: [api])
        try:
            created = joins.create_token(created_by=CONSOLE_USER, ttl=args.ttl * 3600)
        except ApiError as exc:  # not an authority: tokens are redeemed only where they were made
            raise CommandError(exc.detail) from exc
        AuditLog(state.db, state.name).append(
            user=CONSOLE_USER,
            source=CONSOLE_SOURCE,
            action="cluster.token.create",
            target=f"join token {created.id}",
            outcome="success",
            detail=f"valid {args.ttl:g} h",
        )
    finally:
        state.close()
    print(created.token)
    return 0


def _authorities_list(args: argparse.Namespace) -> int:
    return authorities_list(args)


def _authorities_set(args: argparse.Namespace) -> int:
    names = sorted(set(args.names))
    try:
        for name in names:
            validate_node_name(name)
    except SettingsError as exc:
        raise CommandError(str(exc)) from exc
    state = _open(args)
    try:
        identity = load_identity(DataDir(args.data_dir or default_data_dir()), state.name)
        store = ConfigStore(state.db, HybridClock(state.node_id))
        authorities = Authorities(store, identity.ca_cert, state.db.get_meta("cluster_id") or "")
        registry = CertRegistry(store)

        def member(name: str) -> bool:  # joined (a certificate was issued) and not removed since
            return bool(registry.fingerprints_of(name)) and registry.name_revocation(name) is None

        audit = AuditLog(state.db, state.name)
        requested = "requested " + ", ".join(names)
        refused = change_refusal(
            names, me=state.name, have_key=identity.ca_key is not None, holders=authorities.holders(), is_member=member
        )
        if refused is not None or identity.ca_key is None:
            reason = refused or "this node does not hold the CA key"
            audit.append(
                user=CONSOLE_USER, source=CONSOLE_SOURCE, action="cluster.authority.set", target="authorities",
                outcome="failed", detail=f"{requested}: {reason}",
            )  # fmt: skip
            raise CommandError(reason)
        added, removed = authorities.replace(
            names, ca_key=identity.ca_key, by=state.name, requested_by=CONSOLE_USER, now=time.time()
        )
        detail = f"now {', '.join(names)}; added {', '.join(added) or '-'}; removed {', '.join(removed) or '-'}"
        audit.append(
            user=CONSOLE_USER, source=CONSOLE_SOURCE, action="cluster.authority.set", target="authorities",
            outcome="success", detail=detail,
        )  # fmt: skip
        print(f"authorities {detail}; the running node replicates the change")
    finally:
        state.close()
    return 0
