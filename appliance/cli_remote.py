"""`debvisor remote|login|logout|passwd|tokens`: using a cluster from a laptop.

`remote add` pins a node's CA by its fingerprint into the per-user config
(appliance/remotes.py); `login` turns a password into an API token for the CLI, stored with
the remote, so later commands need no options at all. A password never leaves this process
except to the node, and a token secret is printed only by `tokens create`, once.

Passwords come from the terminal without echo, or with `--password-stdin` one per line from
standard input: the password, then (when the node requires a change, or for `passwd`) the
new one.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import socket
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from appliance import remotes
from appliance.cli_connect import (
    ClientError,
    Target,
    ask_trust,
    bare_client,
    call,
    connection_parent,
    fetch_ca,
    interactive,
    load_config,
    open_client,
    pinned_ca,
    prompt,
    resolve,
    start_session,
)

if TYPE_CHECKING:
    import httpx  # imported when a client command runs: `debvisor serve` never needs it

_REMOTE_EPILOG = """\
examples:
  debvisor remote add lab https://10.0.0.11:8443 --ca-fingerprint 3f9a...e1
      (the fingerprint is the ca_fingerprint of the node's `serving` log line, or on the node:
       openssl x509 -noout -fingerprint -sha256 -in /var/lib/debvisor/pki/ca.crt)
  debvisor remote list
  debvisor remote use lab
  debvisor remote remove lab
"""

_LOGIN_EPILOG = """\
examples:
  debvisor login admin                      asks the password (and a new one if it must change)
  printf '%s\\n%s\\n' "$OLD" "$NEW" | debvisor login admin --password-stdin
  debvisor login ops --remote lab --expires-days 30
"""

_TOKENS_EPILOG = """\
examples:
  debvisor tokens create prometheus --role viewer --expires-days 365   (asks your password)
  debvisor tokens list
  debvisor tokens revoke 0123abcd4567ef89
"""

_STDIN_HELP = "read passwords from standard input, one per line (current, then new) instead of the terminal"


def add_remote_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    raw = argparse.RawDescriptionHelpFormatter
    remote = commands.add_parser(
        "remote",
        help="the nodes this user talks to (per-user config, like `incus remote`)",
        description=f"Remotes live in {remotes.config_dir()}/{remotes.CONFIG_FILE} (mode 0600): URL, pinned CA, "
        "and after `debvisor login` the CLI's API token.",
        epilog=_REMOTE_EPILOG,
        formatter_class=raw,
    )
    actions = remote.add_subparsers(dest="remote_command", metavar="ACTION", required=True)
    add = actions.add_parser(
        "add", help="pin a node's CA and remember its URL", epilog=_REMOTE_EPILOG, formatter_class=raw
    )
    add.add_argument("name", help="a short name of your choice")
    add.add_argument("url", help="https://NODE:8443")
    add.add_argument("--ca-fingerprint", default=argparse.SUPPRESS, metavar="SHA256",
                     help="the CA's SHA-256 fingerprint; without it (or --ca) you are asked on a terminal")  # fmt: skip
    add.add_argument("--ca", type=Path, default=argparse.SUPPRESS, metavar="FILE",
                     help="a copy of the cluster CA instead of fetching it")  # fmt: skip
    add.set_defaults(func=_remote_add)
    listing = actions.add_parser("list", help="the remotes; * marks the current one")
    listing.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="as JSON (no secrets)")
    listing.set_defaults(func=_remote_list)
    use = actions.add_parser("use", help="make NAME the default for every command")
    use.add_argument("name")
    use.set_defaults(func=_remote_use)
    remove = actions.add_parser("remove", help="forget a remote, revoking its CLI token first (as logout)")
    remove.add_argument("name")
    remove.add_argument("--force", action="store_true", help="forget it even when its token cannot be revoked")
    remove.set_defaults(func=_remote_remove)

    api = [connection_parent()]
    login = commands.add_parser(
        "login",
        parents=api,
        help="log in once: create an API token for this CLI and keep it with the remote",
        description="Log in with a password (changing it first when the node requires that), create an API\n"
        "token named 'cli on HOST' with your role, store it in the remote's config, and end the session.\n"
        "Logging in again replaces (and revokes) the remote's previous CLI token.",
        epilog=_LOGIN_EPILOG,
        formatter_class=raw,
    )
    login.add_argument("username", nargs="?", default=None, help="default: --user, or the remote's last user")
    login.add_argument("--password-stdin", action="store_true", help=_STDIN_HELP)
    login.add_argument("--expires-days", type=_days, default=90, metavar="DAYS",
                       help="the token's lifetime; 0: never expires (default: %(default)s)")  # fmt: skip
    login.set_defaults(func=_login)
    logout = commands.add_parser("logout", parents=api, help="revoke the remote's stored API token and forget it")
    logout.set_defaults(func=_logout)
    passwd = commands.add_parser(
        "passwd",
        parents=api,
        help="change your own password (asks the current one)",
        description="Change your password through a fresh password session (API tokens may not). "
        "Your other sessions end; API tokens stay valid.",
    )
    passwd.add_argument("username", nargs="?", default=None, help="default: --user, or the remote's user")
    passwd.add_argument("--password-stdin", action="store_true", help=_STDIN_HELP)
    passwd.set_defaults(func=_passwd)

    tokens = commands.add_parser(
        "tokens", parents=api, help="your API tokens", epilog=_TOKENS_EPILOG, formatter_class=raw
    )
    token_actions = tokens.add_subparsers(dest="tokens_command", metavar="ACTION", required=True)
    create = token_actions.add_parser(
        "create",
        parents=api,
        help="create a token (needs your password; the secret is shown once)",
        epilog=_TOKENS_EPILOG,
        formatter_class=raw,
    )
    create.add_argument("name", help="what it is for, e.g. prometheus")
    create.add_argument("--role", choices=["admin", "operator", "viewer", "developer"], help="default: yours")
    create.add_argument("--expires-days", type=_days, default=0, metavar="DAYS", help="0: never (default)")
    create.add_argument("--password-stdin", action="store_true", help="read your password from standard input")
    create.add_argument("--username", default=None, help="whose password (default: --user, or the remote's user)")
    create.set_defaults(func=_tokens_create)
    listing = token_actions.add_parser("list", parents=api, help="id, name, role, expiry and last use")
    listing.add_argument("--all", action="store_true", help="everyone's tokens (admin)")
    listing.set_defaults(func=_tokens_list)
    revoke = token_actions.add_parser("revoke", parents=api, help="revoke a token by its id")
    revoke.add_argument("id")
    revoke.set_defaults(func=_tokens_revoke)


def _days(text: str) -> int:
    try:
        days = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number of days: {text!r}") from None
    if not 0 <= days <= 3650:
        raise argparse.ArgumentTypeError("between 0 (never expires) and 3650 days")
    return days


def _remote_error(exc: remotes.RemoteError) -> ClientError:
    return ClientError(str(exc))


# -- remotes ------------------------------------------------------------------------------


def _remote_add(args: argparse.Namespace) -> int:
    try:
        name = remotes.validate_name(args.name)
        url = remotes.normalize_url(args.url)
    except remotes.RemoteError as exc:
        raise _remote_error(exc) from exc
    directory, config = load_config()
    if name in config.remotes:
        raise ClientError(f"remote {name!r} exists; `debvisor remote remove {name}` first")
    if args.ca is not None:
        try:
            ca_pem = args.ca.read_text()
        except OSError as exc:
            raise ClientError(f"cannot read {args.ca}: {exc.strerror}") from exc
        if args.ca_fingerprint:
            try:
                remotes.check_pinned(ca_pem, remotes.normalize_fingerprint(args.ca_fingerprint))
            except remotes.RemoteError as exc:
                raise _remote_error(exc) from exc
    elif args.ca_fingerprint:
        ca_pem = pinned_ca(url, args.ca_fingerprint)
    elif interactive():
        ca_pem = ask_trust(url, fetch_ca(url), prompt)
    else:
        raise ClientError("give --ca-fingerprint SHA256 (the node logs it as ca_fingerprint) or --ca FILE")
    try:
        fingerprint = remotes.ca_fingerprint(ca_pem)
    except remotes.RemoteError as exc:
        raise _remote_error(exc) from exc
    # The node must hold a certificate of that CA: check it now rather than at the first login.
    with bare_client(Target(url=url, ca_pem=ca_pem, token=None, remote=name)) as client:
        call(client, "GET", "/healthz")
    config.remotes[name] = remotes.Remote(url=url, ca_pem=ca_pem, ca_fingerprint=fingerprint)
    if config.current is None:
        config.current = name
    remotes.save(directory, config)
    current = " (current)" if config.current == name else f"; `debvisor remote use {name}` to make it the default"
    print(f"added remote {name}: {url}, CA {fingerprint[:16]}... pinned{current}")
    print(f"next: debvisor login USER{'' if config.current == name else f' --remote {name}'}")
    return 0


def _remote_list(args: argparse.Namespace) -> int:
    _, config = load_config()
    if args.json:
        rows = [{"name": n, "url": r.url, "ca_fingerprint": r.ca_fingerprint, "user": r.user,
                 "logged_in": r.token is not None, "current": n == config.current}
                for n, r in sorted(config.remotes.items())]  # fmt: skip
        print(msgspec.json.format(msgspec.json.encode(rows)).decode())
        return 0
    if not config.remotes:
        print("no remotes; add one: debvisor remote add NAME https://NODE:8443 --ca-fingerprint SHA256")
        return 0
    print(f"  {'NAME':<16} {'URL':<32} {'USER':<16} CA")
    for name, remote in sorted(config.remotes.items()):
        mark = "*" if name == config.current else " "
        user = remote.user if remote.token else "-"
        print(f"{mark} {name:<16} {remote.url:<32} {user or '-':<16} {remote.ca_fingerprint[:16]}...")
    return 0


def _remote_use(args: argparse.Namespace) -> int:
    directory, config = load_config()
    if args.name not in config.remotes:
        raise ClientError(f"no remote {args.name!r}; `debvisor remote list` shows them")
    config.current = args.name
    remotes.save(directory, config)
    print(f"using remote {args.name} ({config.remotes[args.name].url})")
    return 0


def _remote_remove(args: argparse.Namespace) -> int:
    directory, config = load_config()
    remote = config.remotes.get(args.name)
    if remote is None:
        raise ClientError(f"no remote {args.name!r}")
    note = ""
    if remote.token and remote.token_id:  # a forgotten token must not stay valid on the cluster
        target = Target(url=remote.url, ca_pem=remote.ca_pem, token=remote.token, remote=args.name)
        try:
            revoked = _revoke_with_itself(target, remote.token, remote.token_id)
            note = f"; its CLI token {remote.token_id} " + ("is revoked" if revoked else "was no longer valid")
        except ClientError as exc:
            if not args.force:
                raise ClientError(
                    f"cannot revoke the remote's CLI token {remote.token_id} ({exc}); nothing removed "
                    "(--force forgets it anyway; then revoke the token from elsewhere)"
                ) from exc
            print(f"token {remote.token_id} NOT revoked ({exc}): revoke it from elsewhere", file=sys.stderr)
    del config.remotes[args.name]
    if config.current == args.name:
        config.current = None
    remotes.save(directory, config)
    print(f"removed remote {args.name}{note}")
    return 0


# -- passwords ----------------------------------------------------------------------------


def _password_lines(from_stdin: bool) -> Iterator[str]:
    """Lines of standard input for --password-stdin: each read only when needed."""
    while from_stdin:
        line = sys.stdin.readline()
        if not line:
            raise ClientError("not enough lines on standard input (password, then the new one)")
        yield line.rstrip("\n")


def _ask(lines: Iterator[str], from_stdin: bool, text: str) -> str:
    if from_stdin:
        return next(lines)
    if not sys.stdin.isatty():
        raise ClientError("no terminal to ask for a password; use --password-stdin")
    return getpass.getpass(text)


def _ask_new(lines: Iterator[str], from_stdin: bool) -> str:
    first = _ask(lines, from_stdin, "New password: ")
    if not from_stdin and first != getpass.getpass("Repeat the new password: "):
        raise ClientError("the new passwords differ; nothing was changed")
    return first


def _username(args: argparse.Namespace, remote: remotes.Remote | None) -> str:
    name = getattr(args, "username", None) or args.user or (remote.user if remote else None)
    if name:
        return str(name)
    if not sys.stdin.isatty():
        raise ClientError("give the user name")
    return prompt("User: ").strip()


def _target_remote(args: argparse.Namespace) -> tuple[Target, remotes.Remote | None]:
    target = resolve(args)
    _, config = load_config()
    return target, config.remotes.get(target.remote) if target.remote else None


def _change_password(client: httpx.Client, user: str, current: str, new: str) -> None:
    """In a password session: change it; the node ends the session and answers with a new one."""
    changed = call(
        client, "POST", f"/api/v1/users/{user}/password", json={"current_password": current, "new_password": new}
    )
    session = changed.get("session")
    if session:
        client.headers["X-CSRF-Token"] = session["csrf_token"]


def _end_session(client: httpx.Client) -> None:
    with contextlib.suppress(ClientError):  # the session expires by itself; the result stands
        call(client, "POST", "/api/v1/auth/logout")


# -- login, logout, passwd ----------------------------------------------------------------


def _login(args: argparse.Namespace) -> int:
    target, remote = _target_remote(args)
    if remote is None or target.remote is None:
        raise ClientError(
            "login keeps the token with a remote: debvisor remote add NAME https://NODE:8443 --ca-fingerprint SHA256"
        )
    user = _username(args, remote)
    lines = _password_lines(args.password_stdin)
    password = _ask(lines, args.password_stdin, f"Password for {user} at {target.url}: ")
    with bare_client(target) as client:
        session = start_session(client, user, password)
        try:
            if session.get("must_change_password"):
                print("the node requires a new password before anything else", file=sys.stderr)
                _change_password(client, user, password, _ask_new(lines, args.password_stdin))
                print("password changed", file=sys.stderr)
            body: dict[str, Any] = {"name": f"cli on {socket.gethostname()}"[:64]}
            if args.expires_days:
                body["expires_in_seconds"] = args.expires_days * 86400
            created = call(client, "POST", "/api/v1/tokens", json=body)
        finally:
            _end_session(client)
    directory, config = load_config()
    stored = config.remotes[target.remote]
    stored.user, stored.token, stored.token_id = user, created["secret"], created["token"]["id"]
    remotes.save(directory, config)  # first: a new token must never be lost
    token = created["token"]
    expiry = _when(token["expires_at"]) if token["expires_at"] else "never"
    print(f"logged in to {target.remote} as {user} ({token['role']}); token {token['id']} expires {expiry}")
    if remote.token and remote.token_id:  # the previous CLI token is replaced, not left valid
        try:
            _revoke_with_itself(target, remote.token, remote.token_id)
        except ClientError as exc:
            print(f"the previous CLI token {remote.token_id} could not be revoked ({exc}): "
                  f"`debvisor tokens revoke {remote.token_id}`", file=sys.stderr)  # fmt: skip
    return 0


def _revoke_with_itself(target: Target, token: str, token_id: str) -> bool:
    """Revoke a token using the token (it may belong to another user than the one now logged
    in); False when the node no longer knew it (revoked, expired, or its owner removed)."""
    with bare_client(target) as client:
        client.headers["Authorization"] = f"Bearer {token}"
        try:
            call(client, "DELETE", f"/api/v1/tokens/{token_id}")
        except ClientError as exc:
            if not str(exc).startswith(("401", "404")):
                raise
            return False
    return True


def _logout(args: argparse.Namespace) -> int:
    target, remote = _target_remote(args)
    if remote is None or target.remote is None or not remote.token:
        raise ClientError("not logged in to this remote")
    revoked = _revoke_with_itself(target, remote.token, remote.token_id or "")
    outcome = f"token {remote.token_id} " + ("revoked" if revoked else "was no longer valid")
    directory, config = load_config()
    stored = config.remotes[target.remote]
    stored.token = stored.token_id = None
    remotes.save(directory, config)
    print(f"logged out of {target.remote}: {outcome}")
    return 0


def _passwd(args: argparse.Namespace) -> int:
    target, remote = _target_remote(args)
    user = _username(args, remote)
    lines = _password_lines(args.password_stdin)
    current = _ask(lines, args.password_stdin, f"Current password for {user}: ")
    with bare_client(target) as client:
        start_session(client, user, current)
        try:
            _change_password(client, user, current, _ask_new(lines, args.password_stdin))
        finally:
            _end_session(client)
    print(f"password of {user} changed; your other sessions have ended, API tokens stay valid")
    return 0


# -- tokens -------------------------------------------------------------------------------


def _tokens_create(args: argparse.Namespace) -> int:
    target, remote = _target_remote(args)
    user = _username(args, remote)
    lines = _password_lines(args.password_stdin)
    password = _ask(lines, args.password_stdin, f"Password for {user} (tokens are made in a password session): ")
    body: dict[str, Any] = {"name": args.name}
    if args.role:
        body["role"] = args.role
    if args.expires_days:
        body["expires_in_seconds"] = args.expires_days * 86400
    with bare_client(target) as client:
        start_session(client, user, password)
        try:
            created = call(client, "POST", "/api/v1/tokens", json=body)
        finally:
            _end_session(client)
    if args.json:
        print(msgspec.json.format(msgspec.json.encode(created)).decode())
        return 0
    token = created["token"]
    expiry = _when(token["expires_at"]) if token["expires_at"] else "never"
    print(f"created token {token['id']} ({token['name']!r}, role {token['role']}, expires {expiry})")
    print("secret (shown once; it cannot be read again, store it now):", file=sys.stderr)
    print(created["secret"])
    return 0


def _tokens_list(args: argparse.Namespace) -> int:
    with open_client(args) as client:
        data = call(client, "GET", "/api/v1/tokens", params={"all": "true"} if args.all else None)
    if args.json:
        print(msgspec.json.format(msgspec.json.encode(data)).decode())
        return 0
    print(f"{'ID':<24} {'NAME':<24} {'OWNER':<12} {'ROLE':<10} {'EXPIRES (UTC)':<20} LAST USED (UTC)")
    for t in data:
        expires = _when(t["expires_at"]) if t["expires_at"] else "never"
        used = _when(t["last_used"]) if t["last_used"] else "never"
        print(f"{t['id']:<24} {t['name']:<24} {t['owner']:<12} {t['role']:<10} {expires:<20} {used}")
    return 0


def _tokens_revoke(args: argparse.Namespace) -> int:
    with open_client(args) as client:
        call(client, "DELETE", f"/api/v1/tokens/{args.id}")
    print(f"revoked token {args.id}")
    return 0


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")
