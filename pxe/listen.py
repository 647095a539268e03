"""Listening sockets, checked: can this node bind an address, and does an address answer yet.

Shared by the API server (it checks its own address before it starts, and waits until its
TLS port answers before it tells systemd it is ready) and the PXE boot-file listener.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl

from pxe.addresses import HostPort


class ListenerError(OSError):
    """The listener could not be opened; the message says where and why."""


def check_can_bind(listen: HostPort) -> None:
    """Raise ListenerError now if `listen` cannot be bound (in use, not an address of this host)."""
    family = socket.AF_INET6 if listen.host.version == 6 else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((str(listen.host), listen.port))
        except OSError as exc:
            raise ListenerError(exc.errno, f"cannot listen on {listen}: {exc.strerror}") from exc


async def accepts(listen: HostPort, tls: ssl.SSLContext | None = None) -> bool:
    """Whether `listen` accepts a connection now (a wildcard is asked on loopback).

    With `tls`, the TLS handshake must complete too (a TLS server then logs no aborted handshake).
    """
    host = str(listen.host)
    if listen.is_wildcard:
        host = "::1" if listen.host.version == 6 else "127.0.0.1"
    try:
        _reader, writer = await asyncio.wait_for(asyncio.open_connection(host, listen.port, ssl=tls), 1.0)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True
