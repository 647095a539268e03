"""Run a node: open its state, build the app, serve HTTPS with granian until told to stop.

granian runs embedded in this process's asyncio loop (one worker, HTTP/1.1 and HTTP/2 over
TLS with the node certificate), so the API and the node's background work (gossip and
reconcilers, as later issues add them) share one loop and one process. The plain-HTTP
listener for PXE boot files is a second embedded granian server that the PXE service opens
and closes at run time (`pxe.listener`); it is not started here. The app's lifespan (its
background work) runs here around the server rather than inside granian's worker, so that a
renewed node certificate reaches HTTPS by replacing the worker alone (`reload_on_renewal`).
SIGTERM and SIGINT stop accepting requests, let in-flight ones finish, run the app's
shutdown, close the database and release the data dir.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import ssl
import sys
from pathlib import Path
from typing import Any

from granian.constants import Interfaces, SSLProtocols
from granian.log import LogLevels
from granian.server.embed import Server

from appliance import __version__
from appliance.app import create_app, node_meta
from appliance.auth.accounts import BOOTSTRAP_ADMIN, AccountService
from appliance.bootstrap import API_ADVERTISE_KEY, OpenedNode, open_node, routable_ips
from appliance.cluster.service import ClusterSettings
from appliance.cluster.swim import GossipTuning
from appliance.console import notify_systemd, render_issue, write_issue
from appliance.errors import StartupError
from appliance.identity import pki
from appliance.memory import tune_allocator
from appliance.network.service import NetworkSettings
from appliance.node.enlist import EnlistTarget
from appliance.node.host import LinuxHost
from appliance.settings import HostPort, ServeSettings
from appliance.units.bus import SystemBus
from pxe.listen import ListenerError, accepts, check_can_bind
from pxe.listener import GranianListener, granian_server_factory
from pxe.service import DEFAULT_BOOT_FILES, BootServerOptions

log = logging.getLogger(__name__)

GC_GEN0_THRESHOLD = 20_000
CERT_WATCH_SECONDS = 2.0  # how often the API checks its certificate files for a renewal
TLS_OVERLAP_SECONDS = 1.0  # old and new worker both accept this long when the certificate changes
TLS_DRAIN_SECONDS = 30  # then the old worker's in-flight requests get this long to finish

# Route granian's own loggers into ours (no handlers of their own) and drop its banner noise.
_GRANIAN_LOGGING: dict[str, Any] = {
    "handlers": {},
    "loggers": {
        "_granian": {"handlers": [], "propagate": True},
        "granian.access": {"handlers": [], "propagate": True, "level": "WARNING"},
    },
}


class _DropExperimentalNotice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "experimental" not in record.getMessage()


def announce_initial_password(node: OpenedNode) -> None:
    """Tell the operator where the bootstrap admin password is; show it only on a terminal.

    The password is printed once, on the start that created it, and only to an interactive
    terminal: under systemd stdout goes to the journal, and secrets are never logged.
    """
    if node.initial_admin_password is None:
        return
    path = node.datadir.admin_password_path
    if sys.stdout.isatty():
        print(
            f"\n  Initial admin login: admin / {node.initial_admin_password}\n"
            f"  (also in {path}; you must change it at first login)\n",
            flush=True,
        )
    else:
        print(f"initial admin password written to {path} (mode 0600)", flush=True)


def check_can_listen(listen: HostPort, what: str) -> None:
    """Fail with a one-line reason now if `listen` cannot be bound, rather than deep inside granian."""
    try:
        check_can_bind(listen)
    except ListenerError as exc:
        reason = os.strerror(exc.errno) if exc.errno is not None else str(exc)
        raise StartupError(f"cannot listen for the {what} on {listen}: {reason}") from exc


async def serve(settings: ServeSettings) -> None:
    """Serve the node described by `settings` until SIGTERM or SIGINT."""
    tune_allocator()  # before any thread exists (appliance/memory.py says why)
    check_can_listen(settings.api, "API")
    check_can_listen(settings.gossip, "gossip")
    if settings.pxe_http is not None:
        check_can_listen(settings.pxe_http, "PXE HTTP")
    host = LinuxHost()
    addresses = await host.addresses()
    node = await asyncio.to_thread(open_node, settings, addresses)
    try:
        announce_initial_password(node)
        ips = routable_ips(addresses)
        api_advertise = settings.advertised(settings.api, ips)
        node.db.set_meta(API_ADVERTISE_KEY, api_advertise)
        cluster = ClusterSettings(
            name=node.name,
            cluster_id=node.cluster_id,
            listen_host=str(settings.gossip.host),
            listen_port=settings.gossip.port,
            advertise=settings.advertised(settings.gossip, ips),
            meta=node_meta(node, api_advertise),
            seeds=node.gossip_seeds,
            gossip=GossipTuning(),
        )
        appliance = create_app(
            node,
            host=host,
            auth=settings.auth,
            cluster_settings=cluster,
            api_advertise=api_advertise,
            network=NetworkSettings(netns=settings.netns),
            pxe=BootServerOptions(
                boot_files=settings.pxe_files or DEFAULT_BOOT_FILES,
                http_listener=str(settings.pxe_http) if settings.pxe_http is not None else None,
                # Plain HTTP, the public boot files only (a separate app without the API's routes),
                # open only while PXE is enabled on this node.
                listener=lambda app: GranianListener(
                    granian_server_factory(app, log_level=LogLevels.warning, log_dictconfig=_GRANIAN_LOGGING)
                ),
            ),
            enlist=EnlistTarget(settings.enlist_url, settings.boot_mac) if settings.enlist_url is not None else None,
            system_bus=SystemBus(settings.system_bus),
            host_root=settings.host_root,
        )
        # The app's lifespan is run here, around the server (ASGINL: granian runs none), so that
        # granian may replace its worker for a renewed certificate without restarting the app.
        server = Server(
            appliance.asgi,
            address=str(settings.api.host),
            port=settings.api.port,
            interface=Interfaces.ASGINL,
            ssl_cert=node.identity.node_cert_path,
            ssl_key=node.identity.node_key_path,
            ssl_protocol_min=SSLProtocols.tls12,
            log_level=LogLevels.warning,
            log_dictconfig=_GRANIAN_LOGGING,
            websockets=True,
        )
        server.respawn_interval = TLS_OVERLAP_SECONDS  # embed's constructor does not take it
        server.workers_kill_timeout = TLS_DRAIN_SECONDS
        servers = [server]
        logging.getLogger("_granian").addFilter(_DropExperimentalNotice())
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, _stop, servers, sig)
        os.register_at_fork(after_in_child=_forget_signal_handlers)
        log.info(
            "serving",
            extra={
                "node": node.name,
                "api": f"https://{settings.api}",
                "version": __version__,
                "data_dir": str(node.datadir.root),
                "ca_fingerprint": node.identity.ca_fingerprint,
            },
        )
        # Objects made during start-up live for the whole run: keep the collector off them, and
        # collect the young generation less often (requests make short-lived garbage that
        # reference counting frees; the cycle collector's frequent passes showed as p99 spikes).
        gc.collect()
        gc.freeze()
        gc.set_threshold(GC_GEN0_THRESHOLD, 20, 20)
        urls = [f"https://{ip}:{settings.api.port}/" for ip in ips] if settings.api.host.is_unspecified else []
        urls = urls or [f"https://{api_advertise}/"]
        async with contextlib.AsyncExitStack() as running:
            try:
                await running.enter_async_context(appliance.litestar.lifespan())
            except Exception as exc:
                # A subsystem's start raised: the ones that had started are stopped already.
                raise StartupError(appliance.startup.error or f"the node did not start: {exc}") from None
            announcer = asyncio.create_task(_announce_when_serving(settings.api, node, appliance.accounts, urls))
            watcher = asyncio.create_task(
                reload_on_renewal(server, node.identity.node_cert_path, node.identity.node_key_path, CERT_WATCH_SECONDS)
            )
            try:
                await asyncio.gather(*(s.serve() for s in servers))
            finally:
                announcer.cancel()
                watcher.cancel()
        log.info("stopped", extra={"node": node.name})
    finally:
        node.close()


async def _announce_when_serving(api: HostPort, node: OpenedNode, accounts: AccountService, urls: list[str]) -> None:
    """Once the API accepts TLS connections: the console banner, then READY=1 to systemd.

    The banner shows the bootstrap admin password until the admin has changed it (checked
    every 30 s), then only the name and URLs (appliance/console.py says why).
    """
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # only asking whether it serves; nothing is sent
    for _ in range(600):  # 60 s at most
        if await accepts(api, context):
            break
        await asyncio.sleep(0.1)
    else:
        log.warning("the API did not accept a connection within 60 s; not telling systemd it is ready")
        return
    shown: str | None = None
    ready_sent = False
    while True:
        admin = accounts.user(BOOTSTRAP_ADMIN)
        password = None
        if admin is not None and admin.must_change_password:
            with contextlib.suppress(OSError):
                password = node.datadir.admin_password_path.read_text().strip() or None
        text = render_issue(node.name, __version__, urls, password, pki.fingerprint(node.identity.ca_cert))
        if text != shown:
            await asyncio.to_thread(write_issue, text)
            shown = text
        if not ready_sent:
            notify_systemd("READY=1")
            ready_sent = True
        if password is None:
            return
        await asyncio.sleep(30.0)


def _stamp(*paths: Path) -> tuple[tuple[int, int, int], ...] | None:
    """What changes when a file is replaced or rewritten: inode, modification time, size."""
    try:
        return tuple((st.st_ino, st.st_mtime_ns, st.st_size) for st in (p.stat() for p in paths))
    except OSError:
        return None


def _loadable(cert: Path, key: Path) -> str:
    """The certificate's fingerprint if the pair loads as a TLS server's; raises if not."""
    ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(str(cert), str(key))
    return pki.fingerprint(pki.cert_from_pem(cert.read_bytes()))


async def reload_on_renewal(server: Server, cert: Path, key: Path, interval: float) -> None:
    """Serve a renewed certificate on new HTTPS connections without restarting the node.

    granian reads the certificate files when it starts a worker and cannot swap them in a
    running one, so when the files change (the keeper renews the certificate, or an operator
    replaces it) a new worker is started on the same listening socket with the new files; the
    old one stops accepting after TLS_OVERLAP_SECONDS and finishes its in-flight requests
    (for at most TLS_DRAIN_SECONDS). A pair that does not load (a key that does not match)
    is not handed to granian: the running worker keeps serving the old one.
    """
    seen = _stamp(cert, key)
    while True:
        await asyncio.sleep(interval)
        now = _stamp(cert, key)
        if now is None or now == seen:
            continue
        seen = now
        try:
            fingerprint = await asyncio.to_thread(_loadable, cert, key)
        except (OSError, ValueError, ssl.SSLError) as exc:
            log.warning("the changed node certificate does not load; HTTPS keeps the old one: %s", exc)
            continue
        log.info("HTTPS now serves the renewed node certificate", extra={"fingerprint": fingerprint})
        server.reload()  # type: ignore[no-untyped-call]  # granian's embed module is untyped


def _forget_signal_handlers() -> None:
    """In a child forked from the node (pyroute2 forks one to open a socket in `--netns`):
    asyncio's signal wake-up socket is shared with the parent, so a SIGTERM meant for the
    child (its helper ending) would stop the node. The child gets default handlers instead."""
    with contextlib.suppress(ValueError, OSError):
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, signal.SIG_DFL)


def _stop(servers: list[Server], sig: signal.Signals) -> None:
    notify_systemd("STOPPING=1")
    log.info("stopping", extra={"signal": sig.name})
    for server in servers:
        server.stop()  # type: ignore[no-untyped-call]  # granian's embed module is untyped
