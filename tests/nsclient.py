"""Run client code inside a test network namespace, from the test process itself.

A Linux thread can enter another network namespace (setns with CLONE_NEWNET) without
affecting the rest of the process; sockets it opens then live in that namespace. Tests use
this to talk to nodes on addresses that exist only inside their namespaces, so no packet
for a test subnet is ever sent from the root namespace (TESTBED.md), and without paying a
process start per request.
"""

from __future__ import annotations

import ctypes
import os
import ssl
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import httpx

CLONE_NEWNET = 0x40000000
T = TypeVar("T")

_libc = ctypes.CDLL(None, use_errno=True)


def enter_netns(netns: str) -> None:
    """Move the calling thread (only it) into network namespace `netns`."""
    fd = os.open(f"/var/run/netns/{netns}", os.O_RDONLY)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"setns into {netns}: {os.strerror(errno)}")
    finally:
        os.close(fd)


class NamespaceClient:
    """An HTTPS client whose every request runs on a thread inside one network namespace."""

    def __init__(self, netns: str, base_url: str, ca: Path, token: str | None = None, timeout: float = 5.0) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, initializer=enter_netns, initargs=(netns,))
        context = ssl.create_default_context(cafile=str(ca))
        context.check_hostname = False
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._client = self._pool.submit(
            lambda: httpx.Client(base_url=base_url, verify=context, timeout=timeout, headers=headers)
        ).result()

    def call(self, fn: Callable[[httpx.Client], T]) -> T:
        return self._pool.submit(fn, self._client).result()

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.call(lambda c: c.get(path, **kwargs))

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.call(lambda c: c.post(path, **kwargs))

    def put(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.call(lambda c: c.put(path, **kwargs))

    def patch(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.call(lambda c: c.patch(path, **kwargs))

    def delete(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.call(lambda c: c.delete(path, **kwargs))

    def close(self) -> None:
        self.call(lambda c: c.close())
        self._pool.shutdown(wait=True)

    def __enter__(self) -> NamespaceClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
