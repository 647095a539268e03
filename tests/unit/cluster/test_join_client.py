"""The joining side keeps trying seeds that do not answer, for a while, then says why it gave up."""

from __future__ import annotations

import socket

import pytest

from appliance.cluster import join_client
from appliance.cluster.join import JoinToken
from appliance.identity import pki


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_unreachable_seeds_are_retried_with_growing_waits_until_patience_runs_out() -> None:
    seed = f"127.0.0.1:{closed_port()}"  # nothing listens: every attempt is refused at once
    token = JoinToken(id="t", secret="s", ca_fingerprint="ab" * 32, seeds=[seed])
    waits: list[float] = []
    with pytest.raises(join_client.JoinError, match=f"no seed could be reached: {seed}: "):
        join_client.join(
            token, name="n9", key=pki.new_key(), gossip_address="127.0.0.1:7946", api_address="127.0.0.1:8443",
            patience=0.0, sleep=waits.append,
        )  # fmt: skip
    assert waits == []  # no patience: one pass only

    clock = [0.0]

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        clock[0] += seconds

    with pytest.raises(join_client.JoinError, match="no seed could be reached"):
        join_client.join(
            token, name="n9", key=pki.new_key(), gossip_address="127.0.0.1:7946", api_address="127.0.0.1:8443",
            patience=30.0, sleep=sleep, clock=lambda: clock[0],
        )  # fmt: skip
    assert waits == [1.0, 2.0, 4.0, 8.0, 8.0]  # the next 8 s wait would pass the 30 s
