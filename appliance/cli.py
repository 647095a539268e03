"""The `debvisor` command.

Subcommands are small functions over the same parts the service uses. Errors an operator can
fix end with one line on stderr (`debvisor: <reason>`) and a non-zero exit; tracebacks are
for bugs only.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from appliance import __version__
from appliance.bootparams import BootParams, read_boot_params
from appliance.cli_admin import CommandError, add_admin_commands
from appliance.cli_client import ClientError, add_client_commands, add_client_options
from appliance.cli_history import add_history_commands
from appliance.cli_remote import add_remote_commands
from appliance.cli_units import add_unit_commands
from appliance.console import report_failure
from appliance.datadir import default_data_dir
from appliance.errors import StartupError
from appliance.settings import (
    DEFAULT_API_PORT,
    DEFAULT_GOSSIP_PORT,
    DEFAULT_PXE_HTTP_PORT,
    AuthSettings,
    HostPort,
    ServeSettings,
    SettingsError,
    parse_host_port,
    parse_ip,
    validate_node_name,
)
from netconfig.cli import add_net_parser

EXIT_USAGE = 2
EXIT_FAILURE = 1

_DESCRIPTION = """\
DebVisor turns this machine into a node of a self-managing hypervisor cluster.

`debvisor serve` runs the node: the web UI and REST API on HTTPS port 8443 and the
cluster's gossip on port 7946. The first start on an empty data directory creates the
node: a cluster CA, the node's key and certificate, its database, and an `admin` account
whose password is written to DATA_DIR/initial-admin-password.

From any other machine, the API commands (nodes, cluster, users, tokens, ...) need the
node's URL and its CA fingerprint once:
  debvisor remote add lab https://NODE:8443 --ca-fingerprint SHA256
  debvisor login admin
  debvisor nodes list
"""

_SERVE_EPILOG = """\
examples:
  debvisor serve                                   node on 0.0.0.0:8443, data in /var/lib/debvisor (root)
  debvisor serve --api 127.0.0.1:8443 --name lab1  local-only API, node named lab1
  debvisor serve --data-dir /srv/dv --api [::]:8443

The data directory is refused (and left untouched) when it holds something other than a
DebVisor node, a database from a newer version, or keys that others can read.
"""


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="debvisor", description=_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"debvisor {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    serve = commands.add_parser(
        "serve",
        help="run this node (API, web UI, cluster membership)",
        description="Run this node until SIGTERM or SIGINT.",
        epilog=_SERVE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    serve.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="where the node keeps its state (default: /var/lib/debvisor as root, else ./.debvisor)",
    )
    serve.add_argument(
        "--api",
        default=None,
        metavar="HOST:PORT",
        help=f"HTTPS listen address for the API and web UI (default: 0.0.0.0:{DEFAULT_API_PORT}; IPv6 as [::]:8443)",
    )
    serve.add_argument(
        "--gossip",
        default=None,
        metavar="HOST:PORT",
        help=f"mutual-TLS listen address for cluster gossip (default: 0.0.0.0:{DEFAULT_GOSSIP_PORT})",
    )
    serve.add_argument(
        "--name",
        default=None,
        help="node name, a DNS label (default: the stored name, or the host name on first start)",
    )
    serve.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="default: %(default)s",
    )
    serve.add_argument(
        "--log-format",
        default="auto",
        choices=["auto", "json", "text"],
        help="auto: JSON lines unless stderr is a terminal (default: %(default)s)",
    )
    serve.add_argument(
        "--session-idle",
        type=float,
        default=AuthSettings.session_idle_seconds,
        metavar="SECONDS",
        help="end browser sessions idle this long (default: %(default)g)",
    )
    serve.add_argument(
        "--session-lifetime",
        type=float,
        default=AuthSettings.session_lifetime_seconds,
        metavar="SECONDS",
        help="end browser sessions this long after login (default: %(default)g)",
    )
    serve.add_argument(
        "--rate-limit",
        type=float,
        default=AuthSettings.rate_limit,
        metavar="PER_SECOND",
        help="requests per second per user, bursts of twice that; 0 turns it off (default: %(default)g)",
    )
    serve.add_argument(
        "--join",
        default=None,
        metavar="TOKEN",
        help="on an empty data dir, join the cluster of this token (from `debvisor token create`) "
        "instead of founding a new one; ignored once the node exists",
    )
    serve.add_argument(
        "--advertise",
        default=None,
        metavar="IP",
        help="address other nodes use to reach this one (default: the listen address, or the first "
        "routable host address when listening on all)",
    )
    serve.add_argument(
        "--netns",
        default=None,
        metavar="NAME",
        help="manage the links of this network namespace (`ip netns add NAME`) instead of the node's own; "
        "for labs and tests",
    )
    serve.add_argument(
        "--system-bus",
        default=None,
        metavar="ADDRESS",
        help="D-Bus address of the system bus where systemd answers (default: the machine's own, "
        "unix:path=/run/dbus/system_bus_socket); for labs and tests that manage a container",
    )
    serve.add_argument(
        "--host-root",
        type=Path,
        default=Path("/"),
        metavar="DIR",
        help="root directory of the managed machine's files: its journal and unit files (default: /); "
        "set with --system-bus to manage a container from outside",
    )
    serve.add_argument(
        "--boot-params",
        type=Path,
        default=None,
        metavar="FILE",
        help="read debvisor.name=, debvisor.join=, debvisor.pxe-http=, ... from this kernel command line "
        "(the image passes /proc/cmdline) as the lowest layer: flags and the node's stored state win",
    )
    serve.add_argument(
        "--pxe-http",
        default=None,
        metavar="HOST:PORT",
        help="while PXE is enabled on this node, serve the boot files (/pxe only, never the API) over "
        f"plain HTTP here (default: port {DEFAULT_PXE_HTTP_PORT} on the PXE interface's IPv4 address; "
        "also debvisor.pxe-http=); the boot server itself is configured through /api/v1/nodes/NAME/pxe",
    )
    serve.add_argument(
        "--pxe-files",
        type=Path,
        default=None,
        metavar="DIR",
        help="where vmlinuz, initrd.img and filesystem.squashfs are (default: the live medium, /run/live/medium/live)",
    )
    serve.add_argument(
        "--console",
        action="append",
        type=Path,
        default=[],
        metavar="TTY",
        help="if the node cannot start, write the reason on this terminal too (repeatable; skipped if it "
        "cannot be opened; the image passes /dev/console and /dev/ttyS0): the journal is not at the console",
    )
    serve.set_defaults(func=_cmd_serve)
    add_admin_commands(commands)
    # `debvisor net`: on this machine's kernel, with the state in DATA_DIR/netconfig, the same
    # directory the service uses (see appliance/network/service.py for how the two coexist).
    add_net_parser(commands)
    add_client_commands(commands)
    add_remote_commands(commands)
    add_history_commands(commands)
    add_unit_commands(commands)
    add_client_options(parser)
    return parser


def _cmd_serve(args: argparse.Namespace) -> int:
    from appliance import logs  # noqa: PLC0415 - keep `debvisor --help` fast
    from appliance.server import serve  # noqa: PLC0415

    # Layers, lowest first: defaults < kernel command line (--boot-params) < flags. What the node
    # has stored (its name, its cluster) wins over the command line in bootstrap.
    boot = read_boot_params(args.boot_params) if args.boot_params is not None else BootParams()
    every = "0.0.0.0"  # noqa: S104 - a node serves on every address unless told otherwise
    api = (
        parse_host_port(args.api, DEFAULT_API_PORT)
        if args.api
        else boot.api or HostPort(parse_ip(every), DEFAULT_API_PORT)
    )
    gossip = (
        parse_host_port(args.gossip, DEFAULT_GOSSIP_PORT)
        if args.gossip
        else boot.gossip or HostPort(parse_ip(every), DEFAULT_GOSSIP_PORT)
    )
    settings = ServeSettings(
        data_dir=args.data_dir or default_data_dir(),
        api=api,
        gossip=gossip,
        name=validate_node_name(args.name) if args.name is not None else None,
        default_name=boot.name,
        auth=AuthSettings(
            session_idle_seconds=args.session_idle,
            session_lifetime_seconds=args.session_lifetime,
            rate_limit=args.rate_limit,
            rate_burst=2 * args.rate_limit,
        ),
        join=args.join or boot.join,
        advertise=parse_ip(args.advertise) if args.advertise else boot.advertise,
        netns=args.netns,
        system_bus=args.system_bus,
        host_root=args.host_root,
        pxe_http=parse_host_port(args.pxe_http, DEFAULT_PXE_HTTP_PORT) if args.pxe_http else boot.pxe_http,
        pxe_files=args.pxe_files,
        enlist_url=boot.enlist,
        boot_mac=boot.boot_mac,
        enrol=boot.enrol,
    )
    logs.configure(args.log_level, json={"auto": None, "json": True, "text": False}[args.log_format])
    asyncio.run(serve(settings))
    # The node has closed its database and released its data dir. Leave without interpreter
    # finalisation: granian's runtime threads can still be winding down and must not race it.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `debvisor` console script."""
    args = _build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (SettingsError, StartupError) as exc:
        print(f"debvisor: {exc}", file=sys.stderr)
        # `serve` given --console: the operator at the machine sees why too (a bad boot
        # parameter is a SettingsError, a refused enrolment or join a StartupError).
        if getattr(args, "console", None):
            report_failure(str(exc), args.console, __version__)
        return EXIT_USAGE if isinstance(exc, SettingsError) else EXIT_FAILURE
    except (CommandError, ClientError) as exc:
        print(f"debvisor: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return 130
