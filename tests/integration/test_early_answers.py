"""A request answered before its body was read keeps its connection (a real node, over HTTPS).

The per-node router answers 404 for a node that is not a member without reading the body;
before `appliance.api.drain` the server then closed the connection, so a client still sending
its body was cut off, and the next request on a kept-alive connection failed. It happened about
once in six 100 KB uploads, and broke the API fuzz test now and then.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.nodeproc import NodeProcess

pytestmark = pytest.mark.integration

ROUNDS = 30  # the failure was a race: enough rounds to see it every time it is there


def test_an_early_answer_to_a_large_body_keeps_the_connection(tmp_path: Path) -> None:
    with NodeProcess(tmp_path / "node", extra_args=["--rate-limit", "0"]) as node:
        node.wait_ready()
        body = {"bridges": [{"name": "x" * 10}] * 5000}  # ~100 KB
        with node.admin_client(timeout=30.0) as client:
            for _ in range(ROUNDS):
                # A connection cut while the body is on its way raises here (httpx.WriteError,
                # RemoteProtocolError): httpx does not resend a PUT.
                answer = client.put("/api/v1/nodes/nobody/network", json=body)
                assert answer.status_code == 404, answer.text
                assert "no node 'nobody'" in answer.json()["detail"]
                assert client.get("/api/v1/node").status_code == 200
