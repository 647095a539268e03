"""`python -m pxe serve`: a boot server without a node (dnsmasq + the /pxe files over plain HTTP).

For tests and for booting a first node from a laptop. A node serves the same routes on its
boot-file listener while PXE is enabled (`pxe.listener`). Runs until SIGTERM/SIGINT; dnsmasq
stops with it. Every dnsmasq line goes to stderr. Booted machines and their reports are kept
in memory only.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from granian.constants import Interfaces
from granian.log import LogLevels
from granian.server.embed import Server
from litestar import Litestar
from litestar.exceptions import HTTPException

from pxe.dnsmasq import Mode
from pxe.http import pxe_routes, standalone_problem
from pxe.service import IPXE_DIR, PxeMachine, PxeService, PxeSettings


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m pxe", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run dnsmasq and serve /pxe over HTTP")
    serve.add_argument("--listen", required=True, help="HOST:PORT of the HTTP listener")
    serve.add_argument("--http-url", required=True, help="how machines reach it, e.g. http://10.0.0.1:8080")
    serve.add_argument("--interface", required=True)
    serve.add_argument("--mode", choices=[m.value for m in Mode], default=Mode.PROXY.value)
    serve.add_argument("--network", help="proxy mode: the interface's IPv4 network")
    serve.add_argument("--range", help="full mode: START,END")
    serve.add_argument("--ipv6-prefix", help="a /64 to announce (iPXE then does not wait for IPv6)")
    serve.add_argument("--boot-files", type=Path, required=True, help="vmlinuz, initrd.img, filesystem.squashfs")
    serve.add_argument("--state-dir", type=Path, required=True, help="dnsmasq's lease file goes here")
    serve.add_argument("--tftp-root", type=Path, default=IPXE_DIR)
    serve.add_argument(
        "--machine",
        action="append",
        default=[],
        help="MAC=NAME[@IPV4], repeatable (an IP needs full mode)",
    )
    return parser.parse_args(argv)


async def run(args: argparse.Namespace) -> None:
    start, _, end = (args.range or "").partition(",")
    machines: dict[str, PxeMachine] = {}
    for spec in args.machine:
        mac, _, rest = spec.partition("=")
        name, _, ip = rest.partition("@")
        machines[mac] = PxeMachine(name=name or None, ip=ip or None)
    config = PxeSettings(
        enabled=True,
        interface=args.interface,
        mode=Mode(args.mode),
        network=args.network,
        range_start=start or None,
        range_end=end or None,
        ipv6_prefix=args.ipv6_prefix,
        http_url=args.http_url,
        machines=machines,
    )
    service = PxeService(
        config,
        boot_files=args.boot_files,
        state_dir=args.state_dir,
        tftp_root=args.tftp_root,
        http_listener=args.listen,
    )

    @asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        await service.apply()
        try:
            yield
        finally:
            await service.close()

    app = Litestar(
        route_handlers=[pxe_routes(service)],
        exception_handlers={HTTPException: standalone_problem},
        lifespan=[lifespan],
        logging_config=None,
    )
    host, _, port = args.listen.rpartition(":")
    server = Server(app, address=host, port=int(port), interface=Interfaces.ASGI, log_level=LogLevels.info)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, server.stop)
    await server.serve()


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")
    asyncio.run(run(parse(sys.argv[1:] if argv is None else argv)))


if __name__ == "__main__":
    main()
