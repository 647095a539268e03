"""The test harness never hands one port to two listeners (a node's API and gossip ports)."""

from __future__ import annotations

import socket

from tests.nodeproc import free_port


def test_free_port_never_repeats_and_is_bindable() -> None:
    ports = [free_port() for _ in range(200)]
    assert len(set(ports)) == len(ports)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", ports[-1]))
