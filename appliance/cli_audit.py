"""`debvisor audit verify`: is this node's audit chain the one it signed to its peers?

Root on a node can rewrite its audit log and the head recorded beside it so that the chain
checks out again; only the heads the node signed earlier, held by its peers, show that. So
by default the command asks a node's API (`GET /api/v1/audit/verify?node=NAME`), which
gathers those heads from every live member and compares them with NAME's chain; it
authenticates like the other API commands (an API token with `audit:read` in DEBVISOR_TOKEN
or `--token`, a remote's, or `--user NAME` to log in). On the node itself it needs nothing
else: the node's name, its API address and the cluster CA are read from the data dir.
`--url` (or `--remote`) another node for a verdict that does not rest on this node's own
software.

`--local` is the offline check of the database alone (it works without the API and without
credentials, and says that it cannot see a rewrite by root).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import msgspec

from appliance.audit.log import AuditLog
from appliance.bootstrap import API_ADVERTISE_KEY, open_local_state
from appliance.cli_connect import ClientError, call, connection_parent, load_config, open_client
from appliance.datadir import DataDir, default_data_dir
from appliance.errors import StartupError

LOCAL_ONLY_NOTE = (
    "local check only: root on this node can rewrite the chain and its recorded head unnoticed here; "
    "only the heads its peers hold show that (run without --local)"
)


INCONCLUSIVE = 2  # exit status: no peer answered, so nothing outside the node vouched for the chain


def add_audit_verify(
    audit_commands: argparse._SubParsersAction[argparse.ArgumentParser], data_dir: argparse.ArgumentParser
) -> None:
    verify = audit_commands.add_parser(
        "verify",
        parents=[data_dir, connection_parent()],
        help="check the audit chain against the heads its peers hold; exit 1 with the reason",
        description=(
            "Compare a node's audit chain with the heads it signed and gossiped to its peers, through "
            "a node's API (credentials: a remote's token, DEBVISOR_TOKEN/--token or --user). Exit 0 "
            "if it matches; else print why (truncated, rewritten, broken) naming the peers that hold the "
            "evidence, and exit 1. Exit 2 if no peer holds a head of it and some did not answer (nothing outside "
            "the node could vouch for it). --local checks this node's database alone, offline."
        ),
    )
    verify.add_argument("--node", default=None, help="the node whose chain to check (default: this node)")
    verify.add_argument(
        "--local", action="store_true", help="offline: check this node's database only (cannot see a rewrite by root)"
    )
    verify.set_defaults(func=audit_verify)


def audit_verify(args: argparse.Namespace) -> int:
    return _local(args) if args.local else _against_peers(args)


def _local(args: argparse.Namespace) -> int:
    state = open_local_state(args.data_dir or default_data_dir())
    try:
        started = time.monotonic()
        verdict = AuditLog(state.db, state.name).verify()
    finally:
        state.close()
    if verdict.bad_seq is not None:
        print(f"audit chain broken at entry {verdict.bad_seq}: {verdict.reason}", file=sys.stderr)
        return 1
    took = time.monotonic() - started
    print(f"audit chain intact: {verdict.entries} entries, head {verdict.head[:16]} ({took:.2f} s)")
    print(LOCAL_ONLY_NOTE)
    return 0


def _node_defaults(args: argparse.Namespace) -> tuple[str | None, str | None, Path]:
    """This node's name and API address (from its data dir, when there is a node) and its CA."""
    root = args.data_dir or default_data_dir()
    ca = Path(root) / "pki" / "ca.crt"
    if DataDir(root).is_fresh():
        return None, None, ca
    try:
        state = open_local_state(root)
    except StartupError:
        return None, None, ca
    try:
        return state.name, state.db.get_meta(API_ADVERTISE_KEY), ca
    finally:
        state.close()


def _against_peers(args: argparse.Namespace) -> int:
    name, api, ca = _node_defaults(args)
    node = args.node or name
    if node is None:
        raise ClientError("no node in the data dir: give --node NAME (and --url), or --data-dir")
    if not (args.token or args.user or args.remote or os.environ.get("DEBVISOR_TOKEN")):
        _, config = load_config()
        if not (config.current or os.environ.get("DEBVISOR_REMOTE")):
            raise ClientError(
                "comparing with the heads peers hold goes through the API: set DEBVISOR_TOKEN (or --token, "
                "--user NAME, or a remote after `debvisor login`) for an account with audit:read; "
                "--local checks this node's database alone"
            )
    given_url = args.url or os.environ.get("DEBVISOR_URL")
    if args.remote or os.environ.get("DEBVISOR_REMOTE") or (given_url is None and api is None):
        client_args = args  # a remote: resolved like every API command
    elif given_url is not None:  # another node, still verified with this node's CA unless told
        own_ca = ca if ca.is_file() else None
        client_args = argparse.Namespace(**{**vars(args), "ca": args.ca or os.environ.get("DEBVISOR_CA") or own_ca})
    else:  # this node, through its own API and CA
        client_args = argparse.Namespace(**{**vars(args), "url": f"https://{api}", "ca": args.ca or ca})
    with open_client(client_args) as client:
        result: dict[str, Any] = call(client, "GET", "/api/v1/audit/verify", params={"node": node})
    if args.json:
        print(msgspec.json.format(msgspec.json.encode(result)).decode())
    if not result["intact"]:
        print(result["reason"], file=sys.stderr)
        return 1
    if not result["holders"] and result["unreachable"]:
        # Nothing vouched for the chain from outside, and peers that may hold its heads did not
        # answer: "intact" would be the node's own word, which is what root can fake.
        print(
            f"audit chain of {result['node']} could not be checked against its peers: no answer from "
            f"{', '.join(result['unreachable'])} (its own hashes hold; try again when they are reachable)",
            file=sys.stderr,
        )
        return INCONCLUSIVE
    if not args.json:
        print(_intact_line(result))
    return 0


def _intact_line(result: dict[str, Any]) -> str:
    node, holders = result["node"], result["holders"]
    line = f"audit chain of {node} intact: {result['entries']} entries"
    if holders:
        line += (
            f"; matches {result['anchors']} signed heads held by {', '.join(holders)}"
            f" (newest at entry {result['anchored_seq']}), checked by {result['checked_by']}"
        )
    else:
        line += f"; no peer holds a head it signed yet, so only its own hashes were checked (by {result['checked_by']})"
    if result["unreachable"]:
        line += f"; no answer from {', '.join(result['unreachable'])}"
    return line
