"""`debvisor net show|plan|apply|confirm|rollback [FILE]`: host networking from the console.

`add_net_parser(commands)` registers the `net` command on the `debvisor` parser; its handler
returns an exit code and reports operator errors as one line `debvisor: ...` on stderr.
`main(argv)` runs the same parser standalone (tests); `appliance.cli` wires it into `debvisor`.

`apply` is commit-confirmed by default: it applies FILE, then stays in the foreground printing
a countdown until `debvisor net confirm` is run from another shell (the session that applied
may be the one that lost connectivity) or the window (`--confirm-within`, default 120 s)
ends, and then rolls back. It forks nothing: if it is killed, the change stays pending and the
next `debvisor net` command or the running service (which adopts the window within seconds)
rolls it back once the deadline has passed. `--confirm-within 0` applies without a window.
Every command first rolls back a pending change whose deadline has passed.

The state lives in DATA_DIR/netconfig, shared with the running service: a change pending from
the API blocks `apply` here (and the other way round), and `confirm`/`rollback` here end a
change applied through the API.

Left out: talking to a running node over the API (these commands act on this machine's
kernel and state directory directly, as root, like `debvisor user`).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TextIO

from netconfig.adapter import Adapter
from netconfig.apply import ApplyError
from netconfig.confirm import DEFAULT_CONFIRM_WITHIN, ConfirmError, NetConfig, PingCheck, RolledBack
from netconfig.load import dumps, load
from netconfig.observe import observe, observe_managed
from netconfig.plan import PlanError, render
from netconfig.state import StateDir, StateError
from netconfig.validate import ConfigError, check_address

EXIT_FAILURE = 1
STATE_SUBDIR = "netconfig"

AdapterFactory = Callable[[str | None], Adapter]


def _kernel_adapter(netns: str | None) -> Adapter:
    from netconfig.kernel import KernelAdapter  # noqa: PLC0415 - keep `debvisor --help` free of netlink

    return KernelAdapter(netns)


def _check_address(text: str) -> str:
    """argparse's type for --check: an IP literal, or a one-line usage error naming the option."""
    try:
        return check_address(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("$.check: ")) from exc


def _default_data_dir() -> Path:
    # The same rule as appliance.datadir.default_data_dir; netconfig does not import appliance.
    return Path("/var/lib/debvisor") if os.geteuid() == 0 else Path.cwd() / ".debvisor"


def add_net_parser(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    *,
    adapter_factory: AdapterFactory = _kernel_adapter,
    clock: Callable[[], float] = time.time,
) -> None:
    """Register `net` and its actions on the top-level parser's subcommands."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--data-dir", type=Path, default=None, metavar="DIR", help="the node's data dir (state in DIR/netconfig)"
    )
    common.add_argument("--netns", default=None, metavar="NAME", help="act inside this network namespace")
    net = commands.add_parser(
        "net",
        help="declarative host networking (show, plan, apply with confirm, rollback)",
        description=__doc__.split("\n\n")[2] if __doc__ else None,
    )
    actions = net.add_subparsers(dest="net_command", metavar="ACTION", required=True)
    show = actions.add_parser("show", parents=[common], help="print the links as the kernel has them")
    show.add_argument("file", nargs="?", type=Path, metavar="FILE", help="only the links FILE manages")
    show.add_argument("--json", action="store_true", help="JSON instead of YAML")
    plan = actions.add_parser("plan", parents=[common], help="print what applying FILE would do (a dry run)")
    plan.add_argument("file", type=Path, metavar="FILE")
    apply = actions.add_parser("apply", parents=[common], help="apply FILE; roll back unless confirmed in time")
    apply.add_argument("file", type=Path, metavar="FILE")
    apply.add_argument(
        "--confirm-within",
        type=float,
        default=DEFAULT_CONFIRM_WITHIN,
        metavar="SECONDS",
        help="roll back unless `debvisor net confirm` runs within this time; 0: no window (default: %(default)g)",
    )
    apply.add_argument(
        "--check",
        default=None,
        type=_check_address,
        metavar="ADDR",
        help="roll back at once unless ADDR (an IPv4 or IPv6 address) answers ping",
    )
    actions.add_parser("confirm", parents=[common], help="keep the change being applied")
    actions.add_parser("rollback", parents=[common], help="undo the change being applied, now")
    net.set_defaults(func=lambda args: run(args, adapter_factory=adapter_factory, clock=clock))


def run(
    args: argparse.Namespace,
    *,
    adapter_factory: AdapterFactory = _kernel_adapter,
    clock: Callable[[], float] = time.time,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Handle a parsed `net` command; the exit code."""
    out = out or sys.stdout
    err = err or sys.stderr
    state = StateDir((args.data_dir or _default_data_dir()) / STATE_SUBDIR)
    adapter = adapter_factory(args.netns)
    try:
        core = NetConfig(adapter, state, clock=clock, check=PingCheck(netns=args.netns))
        if core.expire():
            print("debvisor: a pending change was not confirmed in time and has been rolled back", file=err)
        return _dispatch(args, core, out, err)
    except (ConfigError, ConfirmError, PlanError, ApplyError, RolledBack, StateError, LookupError) as exc:
        print(f"debvisor: {exc}", file=err)
        return EXIT_FAILURE
    finally:
        adapter.close()


def _dispatch(args: argparse.Namespace, core: NetConfig, out: TextIO, err: TextIO) -> int:
    match args.net_command:
        case "show":
            if args.file is not None:
                observed = observe_managed(core.adapter, load(args.file))
            else:
                links = [kl for kl in core.adapter.links() if kl.spec.name != "lo"]
                observed = observe(links, names=[kl.spec.name for kl in links])
            out.write(dumps(observed, json=args.json).decode())
        case "plan":
            actions = core.plan(load(args.file))
            out.write(render(actions) or "no changes\n")
        case "apply":
            return _apply(args, core, out, err)
        case "confirm":
            core.confirm()
            print("confirmed", file=out)
        case "rollback":
            out.write(render(core.rollback()))
            print("rolled back", file=out)
    return 0


def _apply(args: argparse.Namespace, core: NetConfig, out: TextIO, err: TextIO, *, poll: float = 0.2) -> int:
    desired = load(args.file)
    if args.confirm_within <= 0:
        out.write(render(core.apply_now(desired)) or "no changes\n")
        return 0
    pending, actions = core.begin(desired, args.confirm_within, args.check)
    out.write(render(actions) or "no changes\n")
    print(f"applied; rolling back in {args.confirm_within:g} s unless confirmed: run `debvisor net confirm`", file=out)
    out.flush()
    announced = int(args.confirm_within)
    try:
        while True:
            current = core.state.pending()
            if current is None or current.id != pending.id:
                outcome = core.state.outcome()
                if outcome is not None and outcome.id == pending.id and outcome.result == "confirmed":
                    print("confirmed", file=out)
                    return 0
                reason = outcome.reason if outcome is not None and outcome.id == pending.id else "ended elsewhere"
                print(f"debvisor: the change was rolled back ({reason})", file=err)
                return EXIT_FAILURE
            remaining = pending.deadline - core.clock()
            if remaining <= 0:
                core.expire(pending.id)
                continue
            if int(remaining) < announced and (int(remaining) % 10 == 0 or remaining < 5):
                announced = int(remaining)
                print(f"rolling back in {announced + 1} s unless confirmed", file=out)
                out.flush()
            time.sleep(min(poll, remaining))
    except KeyboardInterrupt:
        core.rollback("interrupted at the console")
        print("debvisor: interrupted; the change was rolled back", file=err)
        return 130


def main(argv: Sequence[str] | None = None, *, adapter_factory: AdapterFactory = _kernel_adapter) -> int:
    """Run `debvisor net ...` standalone (argv without the program name)."""
    parser = argparse.ArgumentParser(prog="debvisor")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    add_net_parser(commands, adapter_factory=adapter_factory)
    args = parser.parse_args(argv)
    return int(args.func(args))
