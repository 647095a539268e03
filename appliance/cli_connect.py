"""Which node the API commands talk to, how it is verified, and with which credential.

Every API command takes the same options, before or after the command
(`debvisor --remote lab nodes list` = `debvisor nodes list --remote lab`). They resolve, in
this order: `--remote NAME` (or DEBVISOR_REMOTE), else `--url`/DEBVISOR_URL, else the
current remote (`debvisor remote use`). A remote's stored CA and token are only ever used
with that remote's own URL, so a credential never goes to a node it was not made for.

The node is verified against the cluster CA: `--ca FILE`/DEBVISOR_CA, else a CA fetched and
checked against `--ca-fingerprint`, else the remote's pinned CA, else the local node's
(`/var/lib/debvisor/pki/ca.crt` as root), else, on a terminal only, the fetched CA's
fingerprint is shown and the operator asked. Nothing is trusted silently and no credential
is sent before the CA is settled.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from appliance import remotes
from appliance.datadir import default_data_dir

if TYPE_CHECKING:
    import httpx


class ClientError(Exception):
    """The API refused or could not be reached, or the command is wrong; the message is one line."""


@dataclass(frozen=True)
class Target:
    url: str
    ca_pem: str
    token: str | None
    remote: str | None  # the remote's name when one was used


def add_connection_options(container: argparse.ArgumentParser, *, suppress: bool) -> None:
    """The options of every API command. On subcommands they default to SUPPRESS, so a value
    given before the subcommand is kept unless it is given again after it."""

    def default(value: object) -> object:
        return argparse.SUPPRESS if suppress else value

    group = container.add_argument_group("talking to a node (before or after the command)")
    group.add_argument("--remote", default=default(None), metavar="NAME", help="a remote from `debvisor remote add` "
                       "(DEBVISOR_REMOTE; default: the current remote)")  # fmt: skip
    group.add_argument("--url", default=default(None), help="https://NODE:8443 instead of a remote (DEBVISOR_URL)")
    group.add_argument("--token", default=default(None), help="API token (DEBVISOR_TOKEN; default: the remote's)")
    group.add_argument("--user", default=default(None), help="log in as this user instead (asks for the password)")
    group.add_argument("--ca", type=Path, default=default(None), help="cluster CA file (DEBVISOR_CA)")
    group.add_argument("--ca-fingerprint", default=default(None), metavar="SHA256",
                       help="fetch the node's CA and use it only if its SHA-256 fingerprint is this")  # fmt: skip
    group.add_argument("--json", action="store_true", default=default(False), help="print the API's JSON")


def connection_parent() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    add_connection_options(parent, suppress=True)
    return parent


def load_config() -> tuple[Path, remotes.RemotesConfig]:
    directory = remotes.config_dir()
    try:
        return directory, remotes.load(directory)
    except remotes.RemoteError as exc:
        raise ClientError(str(exc)) from exc


def _pick_remote(args: argparse.Namespace, config: remotes.RemotesConfig) -> tuple[str, remotes.Remote | None, str]:
    """(url, remote, name) for the command: see the module docstring for the order."""
    name = args.remote or os.environ.get("DEBVISOR_REMOTE")
    given = args.url or os.environ.get("DEBVISOR_URL")
    url = remotes.normalize_url(given) if given else None
    if name:
        remote = config.remotes.get(name)
        if remote is None:
            raise ClientError(f"no remote {name!r}; `debvisor remote list` shows them")
        if url is not None and url != remote.url:
            raise ClientError(f"--url {url} is not remote {name}'s URL ({remote.url}); give one or the other")
        return remote.url, remote, name
    if url is not None:
        for other, remote in config.remotes.items():
            if remote.url == url:
                return url, remote, other
        return url, None, ""
    if config.current and config.current in config.remotes:
        return config.remotes[config.current].url, config.remotes[config.current], config.current
    raise ClientError(
        "give --url https://NODE:8443 (or set DEBVISOR_URL), or add a remote once: "
        "debvisor remote add NAME https://NODE:8443 --ca-fingerprint SHA256"
    )


def interactive() -> bool:
    return sys.stdin.isatty() and sys.stderr.isatty()


def ask_trust(url: str, ca_pem: str, ask: Callable[[str], str]) -> str:
    """Show the fetched CA's fingerprint and trust it only on an explicit yes."""
    fingerprint = remotes.ca_fingerprint(ca_pem)
    answer = ask(
        f"The node at {url} presents a cluster CA with SHA-256 fingerprint\n  {fingerprint}\n"
        "Compare it with the node's (the ca_fingerprint of its `serving` log line). Trust it? [y/N] "
    )
    if answer.strip().lower() not in ("y", "yes"):
        raise ClientError("CA not trusted; nothing was sent to the node")
    return ca_pem


def prompt(text: str) -> str:
    print(text, end="", file=sys.stderr, flush=True)
    return sys.stdin.readline()


def first_use_ca(url: str) -> str:
    """The CA of a node we know nothing about: asked on a terminal, an error without one."""
    if not interactive():
        raise ClientError(
            f"no cluster CA for {url}: give --ca-fingerprint SHA256 (the node logs it as ca_fingerprint), "
            "--ca FILE, or add a remote (debvisor remote add NAME URL --ca-fingerprint SHA256)"
        )
    return ask_trust(url, fetch_ca(url), prompt)


def fetch_ca(url: str) -> str:
    try:
        return remotes.fetch_ca(url)
    except remotes.RemoteError as exc:
        raise ClientError(str(exc)) from exc


def pinned_ca(url: str, fingerprint: str) -> str:
    try:
        return remotes.check_pinned(remotes.fetch_ca(url), remotes.normalize_fingerprint(fingerprint))
    except remotes.RemoteError as exc:
        raise ClientError(str(exc)) from exc


def resolve(args: argparse.Namespace) -> Target:
    """The node, its CA and the credential (if any) for this command."""
    _, config = load_config()
    try:
        url, remote, name = _pick_remote(args, config)
    except remotes.RemoteError as exc:
        raise ClientError(str(exc)) from exc
    ca_file = args.ca or os.environ.get("DEBVISOR_CA")
    local_ca = default_data_dir() / "pki" / "ca.crt"
    if ca_file:
        if not Path(ca_file).is_file():
            raise ClientError(f"no cluster CA at {ca_file}")
        ca_pem = Path(ca_file).read_text()
        if args.ca_fingerprint:
            ca_pem = _checked(ca_pem, args.ca_fingerprint)
    elif args.ca_fingerprint:
        ca_pem = pinned_ca(url, args.ca_fingerprint)
    elif remote is not None:
        ca_pem = remote.ca_pem
    elif local_ca.is_file():
        ca_pem = local_ca.read_text()
    else:
        ca_pem = first_use_ca(url)
    token = args.token or os.environ.get("DEBVISOR_TOKEN") or (remote.token if remote else None)
    return Target(url=url, ca_pem=ca_pem, token=token, remote=name or None)


def _checked(ca_pem: str, fingerprint: str) -> str:
    try:
        return remotes.check_pinned(ca_pem, remotes.normalize_fingerprint(fingerprint))
    except remotes.RemoteError as exc:
        raise ClientError(str(exc)) from exc


def bare_client(target: Target) -> httpx.Client:
    """A client verified against the target's CA, without credentials."""
    import httpx  # noqa: PLC0415 - kept off the node's start-up path (~65 ms here, seconds emulated)

    try:
        context = remotes.context_for(target.ca_pem)
    except ValueError as exc:  # ssl.SSLError is a ValueError subclass too
        raise ClientError(f"the cluster CA cannot be used: {exc}") from exc
    return httpx.Client(base_url=target.url, verify=context, timeout=15)


def open_client(args: argparse.Namespace) -> httpx.Client:
    """A client for the API commands: `--user` logs in with a password, else a token is sent."""
    target = resolve(args)
    client = bare_client(target)
    if args.user:
        password = ask_password(f"Password for {args.user}: ")
        start_session(client, args.user, password)
    elif target.token:
        client.headers["Authorization"] = f"Bearer {target.token}"
    else:
        client.close()
        raise ClientError("give --token (or DEBVISOR_TOKEN), --user to log in, or `debvisor login` once")
    return client


def ask_password(text: str) -> str:
    if not sys.stdin.isatty():
        raise ClientError("no terminal to ask for a password; use --password-stdin where offered, or a token")
    return getpass.getpass(text)


def start_session(client: httpx.Client, user: str, password: str) -> dict[str, Any]:
    """Log in with a password: the session cookie goes into the client, its CSRF token into the headers."""
    login: dict[str, Any] = call(client, "POST", "/api/v1/auth/login", json={"username": user, "password": password})
    client.headers["X-CSRF-Token"] = login["csrf_token"]
    return login


def call(client: httpx.Client, method: str, path: str, **kwargs: Any) -> Any:
    import httpx  # noqa: PLC0415 - see bare_client

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


def target_node(client: httpx.Client, args: argparse.Namespace) -> str:
    """The node a per-node command acts on: `--node`, else the node the client talks to."""
    if getattr(args, "node", None):
        return str(args.node)
    return str(call(client, "GET", "/api/v1/node")["name"])
