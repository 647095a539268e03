"""The network-namespace harness itself: connectivity, fault injection, and cleanup that leaves nothing.

Every packet here is sent from inside a Lab host; the root namespace never addresses the
test subnet (TESTBED.md).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from tests.kit.need import require_available
from tests.kit.procs import stop_process
from tests.kit.wait import wait_until
from tests.netns import Lab, available

pytestmark = [pytest.mark.integration, pytest.mark.privileged]


@pytest.fixture(autouse=True)
def _needs_netns() -> None:
    require_available(available())


def _root(*argv: str) -> str:
    return subprocess.run(["ip", *argv], capture_output=True, text=True, timeout=10, check=True).stdout


def _root_routes() -> list[str]:
    return [line.strip() for line in _root("route", "show").splitlines()]


def test_two_hosts_ping_each_other() -> None:
    with Lab(2) as lab:
        a, b = lab.host(0), lab.host(1)
        assert (a.address, b.address) == ("10.97.0.10", "10.97.0.11")
        assert f"inet {a.address}/24" in a.run(["ip", "-o", "addr", "show", "dev", a.ifname], check=True).stdout
        assert a.address not in _root("-o", "addr")  # the address lives only inside the namespace
        assert a.ping(b.address, count=3, interval=0.05) == 3
        assert b.ping(a.address, count=3, interval=0.05) == 3
        assert a.link_stats().tx_packets >= 3


def test_isolate_silences_a_host_and_heal_restores_it() -> None:
    with Lab(3) as lab:
        a, b, c = lab.hosts
        assert a.ping(b.address, count=2, interval=0.05) == 2
        b.isolate()
        assert a.ping(b.address, count=3, interval=0.05, wait=0.3) == 0
        assert b.ping(c.address, count=3, interval=0.05, wait=0.3) == 0
        assert a.ping(c.address, count=2, interval=0.05) == 2  # only b is silent
        assert b.ping("127.0.0.1", count=2, interval=0.05) == 2  # loopback still works inside b
        b.heal()
        assert a.ping(b.address, count=3, interval=0.05) == 3
        assert lab.fault_rules().strip() == ""


def test_loss_drops_the_requested_share_of_packets() -> None:
    with Lab(2) as lab:
        a, b = lab.hosts
        assert a.ping(b.address, count=2, interval=0.05) == 2  # ARP resolved before measuring
        # Inbound only: each echo request to b is dropped with p = 0.5, so about half come back
        # (binomial n=40: mean 20, sd 3.2; the range is about 3.8 sd either way).
        b.set_loss(50, outbound=False)
        assert 8 <= a.ping(b.address, count=40, interval=0.02, wait=0.5) <= 32
        # Both ways: request and reply each cross a 50% filter, so about a quarter come back.
        b.set_loss(50)
        assert 1 <= a.ping(b.address, count=40, interval=0.02, wait=0.5) <= 20
        b.set_loss(0)
        assert a.ping(b.address, count=10, interval=0.02) == 10
        assert lab.fault_rules().strip() == ""


_LISTEN = """
import socket, sys
server = socket.create_server((sys.argv[1], int(sys.argv[2])))
server.settimeout(20)
while True:
    conn, _ = server.accept()
    conn.close()
"""

_CONNECT = """
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=0.5).close()
    print("connected")
except OSError as exc:
    print(type(exc).__name__)
"""


def test_a_closed_port_times_out_dials_while_the_host_still_answers() -> None:
    with Lab(2) as lab:
        a, b = lab.hosts
        server = b.popen([sys.executable, "-c", _LISTEN, b.address, "7946"])
        try:

            def dial() -> str:
                return a.run([sys.executable, "-c", _CONNECT, b.address, "7946"], check=True).stdout.strip()

            wait_until(lambda: dial() == "connected", 10, 0.1, what="the listener to come up")
            b.close_port(7946)
            assert dial() in ("TimeoutError", "timeout")
            assert a.ping(b.address, count=2, interval=0.05) == 2
            b.open_port(7946)
            assert dial() == "connected"
            assert lab.fault_rules().strip() == ""
        finally:
            stop_process(server, timeout=5)


_SEND_UDP = """
import socket, sys
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for _ in range(20):
    sock.sendto(b"x" * 100, (sys.argv[1], 9))
"""


def test_dropped_packets_are_silent_to_the_sender() -> None:
    # A drop in the sender's own output hook would fail sendto() with EPERM; a wire does not.
    with Lab(2) as lab:
        a, b = lab.hosts
        assert a.ping(b.address, count=1) == 1  # neighbours resolved, so isolation drops IP frames
        a.set_loss(100)
        sent = a.run([sys.executable, "-c", _SEND_UDP, b.address], timeout=10)
        assert (sent.returncode, sent.stderr) == (0, "")
        a.set_loss(0)
        a.isolate()
        sent = a.run([sys.executable, "-c", _SEND_UDP, b.address], timeout=10)
        assert (sent.returncode, sent.stderr) == (0, "")
        assert b.ping(a.address, count=2, interval=0.05, wait=0.3) == 0


def _crash_inside(lab: Lab, procs: list[subprocess.Popen[bytes]]) -> None:
    with lab:
        assert lab.route in _root_routes()
        assert set(lab.namespaces) <= set(_root("netns", "list").split())
        procs.append(lab.host(0).popen(["sleep", "60"]))
        procs.append(lab.host(1).popen(["sh", "-c", "trap '' TERM; exec sleep 60"]))  # ignores SIGTERM
        lab.host(1).isolate()
        lab.host(2).set_loss(20)
        raise RuntimeError("body failed")


def test_exit_removes_everything_even_after_an_exception() -> None:
    lab = Lab(3, term_timeout=0.5)
    procs: list[subprocess.Popen[bytes]] = []
    started = time.monotonic()
    with pytest.raises(RuntimeError, match="body failed"):
        _crash_inside(lab, procs)
    assert time.monotonic() - started < 5.0  # SIGTERM, 0.5 s, then SIGKILL
    sleeper, stubborn = procs
    assert sleeper.returncode == -signal.SIGTERM
    assert stubborn.returncode == -signal.SIGKILL
    assert lab.prefix not in _root("netns", "list")
    assert lab.prefix not in _root("link", "show")
    assert lab.route not in _root_routes()
    assert not any(str(lab.subnet) in line and f"metric {lab.route_metric}" in line for line in _root_routes())
    lab.close()  # a second close is harmless
