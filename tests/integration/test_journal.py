"""A node's journal through the API, against real systemd as PID 1 in a systemd-nspawn container.

Node n1 runs on the host and manages the container from outside (`--system-bus` its bus,
`--host-root` its root): its journal is the container's. Node n2 joins n1, and every request
goes to n2, so it is forwarded to n1 (HTTP and the follow WebSocket alike). Lines are written
inside the container by a transient unit (`systemd-run`) and by `systemd-cat`.
"""

from __future__ import annotations

import json
import os
import re
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx
import msgspec
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from tests.kit.nspawn import Container, debian_root
from tests.kit.wait import wait_until
from tests.managedpair import managing, role_tokens, start_pair
from tests.nodeproc import DEBVISOR, NodeProcess, run_debvisor

pytestmark = [pytest.mark.integration, pytest.mark.privileged, pytest.mark.systemd]

JOURNAL = "/api/v1/nodes/n1/journal"


@dataclass
class Lab:
    box: Container
    n1: NodeProcess
    n2: NodeProcess
    tokens: dict[str, str]  # role -> an API token of that role (made on n2)

    def client(self, role: str = "admin") -> httpx.Client:
        client = self.n2.client(timeout=15)
        client.headers["Authorization"] = f"Bearer {self.tokens[role]}"
        return client


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    tmp = tmp_path_factory.mktemp("journal")
    with Container(debian_root(), tmp) as box:
        n1, n2 = start_pair(tmp, managing(box))
        try:
            lab = Lab(box, n1, n2, role_tokens(n1))
            with lab.client("viewer") as client:  # the tokens have reached n2
                wait_until(lambda: client.get(JOURNAL).status_code == 403, 15, 0.2, what="n2 to know the tokens")
            yield lab
        finally:
            n2.stop()
            n1.stop()


def entries(client: httpx.Client, **params: str) -> dict[str, Any]:
    answer = client.get(JOURNAL, params=params)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def messages(page: dict[str, Any]) -> list[str]:
    return [e["message"] for e in page["entries"]]


def test_a_units_lines_are_read_with_filters_and_paging(lab: Lab) -> None:
    lines = [f"paging line {i}" for i in range(7)]
    script = "; ".join(f"echo '{line}'" for line in lines) + "; echo 'a warning' >&2"
    lab.box.run(["systemd-run", "--unit", "jpaging", "--description", "a test unit", "--wait", "sh", "-c", script])
    with lab.client("operator") as client:
        wait_until(lambda: "a warning" in messages(entries(client, unit="jpaging.service")), 10, 0.1, what="the lines")
        whole = entries(client, unit="jpaging.service")
        said = [m for m in messages(whole) if m.startswith("paging line")]
        assert said == lines
        assert all(e["unit"] == "jpaging.service" for e in whole["entries"] if "paging line" in e["message"])
        assert whole["more"] is False

        # the newest three, then back from the first of them, then forward from there
        newest = entries(client, unit="jpaging.service", match="paging line", limit="3")
        assert messages(newest) == lines[4:]
        assert newest["more"] is True
        unit = {"unit": "jpaging.service", "match": "paging line"}
        older = entries(client, **unit, limit="3", before=newest["entries"][0]["cursor"])
        assert messages(older) == lines[1:4]
        assert older["more"] is True
        oldest = entries(client, **unit, before=older["entries"][0]["cursor"])
        assert messages(oldest) == lines[:1]
        assert oldest["more"] is False
        newer = entries(
            client, unit="jpaging.service", match="PAGING LINE", limit="2", after=older["entries"][0]["cursor"]
        )
        assert messages(newer) == lines[2:4]
        assert newer["more"] is True

        # the text match is literal, whatever it holds
        assert messages(entries(client, unit="jpaging.service", match="line 5")) == ["paging line 5"]
        assert messages(entries(client, unit="jpaging.service", match="line .")) == []
        # time filters: everything is since a minute ago, nothing until then
        assert len(messages(entries(client, unit="jpaging.service", since="-1m"))) >= len(lines)
        assert messages(entries(client, unit="jpaging.service", until="-1m")) == []
        assert messages(entries(client, unit="jpaging.service", boot="0", match="paging line 0")) == [lines[0]]


def test_priority_identifier_and_bytes_that_are_not_utf8(lab: Lab) -> None:
    lab.box.run(["sh", "-c", "printf 'odd \\377\\376 bytes\\n' | systemd-cat -t jbytes -p warning"])
    lab.box.run(["systemd-cat", "-t", "jbytes", "-p", "info", "echo", "plain info"])
    with lab.client("operator") as client:
        wait_until(lambda: len(entries(client, identifier="jbytes")["entries"]) == 2, 10, 0.1, what="both lines")
        page = entries(client, identifier="jbytes")
        assert messages(page) == ["odd \ufffd\ufffd bytes", "plain info"]
        assert [e["priority"] for e in page["entries"]] == [4, 6]
        assert all(e["identifier"] == "jbytes" and e["hostname"] == "debvisor-test" for e in page["entries"])
        assert messages(entries(client, identifier="jbytes", priority="warning")) == ["odd \ufffd\ufffd bytes"]
        assert messages(entries(client, identifier="jbytes", priority="3")) == []


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("unit", "../../etc/passwd"),
        ("unit", "--root=/"),
        ("unit", "foo@.service"),
        ("priority", "9"),
        ("priority", "loud"),
        ("boot", "1; reboot"),
        ("boot", "--list-boots"),
        ("after", "--root=/etc"),
        ("before", "s=zz"),
        ("since", "tomorrow-ish"),
        ("until", "1e300"),
        ("match", "x" * 201),
        ("identifier", "-o cat"),
        ("limit", "0"),
        ("limit", "1001"),
        ("fields", "MESSAGE"),
    ],
)
def test_bad_filters_are_422_naming_the_field(lab: Lab, field: str, value: str) -> None:
    with lab.client("operator") as client:
        answer = client.get(JOURNAL, params={field: value})
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert answer.json()["errors"][0]["path"] == f"$.{field}"


def test_a_boot_not_in_the_journal_is_422(lab: Lab) -> None:
    with lab.client("operator") as client:
        answer = client.get(JOURNAL, params={"boot": "-5"})
    assert answer.status_code == 422
    assert "boot" in answer.json()["detail"]


def _socket(lab: Lab, role: str, **params: str) -> ClientConnection:
    context = ssl.create_default_context(cafile=str(lab.n2.data_dir / "pki" / "ca.crt"))
    url = f"wss://127.0.0.1:{lab.n2.api_port}{JOURNAL}/follow?{urlencode(params)}"
    return connect(
        url, ssl=context, additional_headers={"Authorization": f"Bearer {lab.tokens[role]}"},
        open_timeout=10, proxy=None, compression=None, ping_interval=None,
    )  # fmt: skip


def test_follow_through_another_node_gets_new_lines(lab: Lab) -> None:
    lab.box.run(["systemd-cat", "-t", "jfollow", "echo", "before the socket"])
    with lab.client("operator") as client:
        wait_until(lambda: messages(entries(client, identifier="jfollow")) != [], 10, 0.1, what="the first line")
    with _socket(lab, "operator", identifier="jfollow", limit="1") as ws:
        first = msgspec.json.decode(ws.recv(timeout=10))
        assert first["message"] == "before the socket"
        delays = []
        for i in range(3):
            started = time.monotonic()
            lab.box.run(["systemd-cat", "-t", "jfollow", "echo", f"followed {i}"])
            written = time.monotonic()
            entry = msgspec.json.decode(ws.recv(timeout=10))
            delays.append((written - started, time.monotonic() - written))
            assert entry["message"] == f"followed {i}"
            assert entry["cursor"]
            assert entry["identifier"] == "jfollow"
        shown = ", ".join(f"{w * 1000:.0f} + {r * 1000:.0f}" for w, r in delays)
        print(f"\nms to write a line in the container (nsenter systemd-cat) + from then to the client on n2: {shown}")
    # resuming after a cursor replays what came since
    with _socket(lab, "operator", identifier="jfollow", after=first["cursor"]) as ws:
        assert [msgspec.json.decode(ws.recv(timeout=10))["message"] for _ in range(3)] == [
            f"followed {i}" for i in range(3)
        ]


def test_a_bad_filter_closes_the_follow_socket_with_4422(lab: Lab) -> None:
    with _socket(lab, "operator", unit="-x") as ws, pytest.raises(ConnectionClosed):
        ws.recv(timeout=10)
    assert ws.close_code == 4422


def test_role_matrix_of_the_journal_routes(lab: Lab) -> None:
    for role, allowed in (("admin", True), ("operator", True), ("viewer", False), ("developer", False)):
        with lab.client(role) as client:
            assert client.get(JOURNAL, params={"limit": "1"}).status_code == (200 if allowed else 403), role
        if allowed:
            with _socket(lab, role, limit="1") as ws:
                assert "cursor" in msgspec.json.decode(ws.recv(timeout=10))
        else:
            with pytest.raises(InvalidStatus) as refused:
                _socket(lab, role, limit="1")
            assert refused.value.response.status_code == 403
    with lab.n2.client() as anonymous:
        assert anonymous.get(JOURNAL).status_code == 401


def cli(lab: Lab, role: str = "operator") -> list[str]:
    """Connection options of the CLI for n2 (the request is forwarded to n1)."""
    return ["--url", lab.n2.url, "--ca", str(lab.n2.data_dir / "pki" / "ca.crt"), "--token", lab.tokens[role]]


def test_the_cli_prints_and_follows_a_units_journal(lab: Lab) -> None:
    script = "echo first from cli; echo second from cli"
    lab.box.run(["systemd-run", "--unit", "jcli", "--description", "cli test", "--wait", "sh", "-c", script])
    with lab.client("operator") as client:
        wait_until(lambda: len(entries(client, unit="jcli.service", match="from cli")["entries"]) == 2, 10, 0.1,
                   what="the unit's lines")  # fmt: skip
    printed = run_debvisor("unit", "logs", "jcli.service", "--node", "n1", "-g", "from cli", *cli(lab))
    assert printed.returncode == 0, printed.stderr
    lines = printed.stdout.splitlines()
    assert len(lines) == 2
    assert re.fullmatch(r"\w{3} \d\d \d\d:\d\d:\d\d debvisor-test sh\[\d+\]: first from cli", lines[0])
    assert lines[1].endswith("]: second from cli")

    bad = run_debvisor("unit", "logs", "bad@.service", "--node", "n1", *cli(lab))
    assert bad.returncode == 1
    assert bad.stderr.startswith("debvisor: 422: ")
    assert len(bad.stderr.splitlines()) == 1
    refused = run_debvisor("unit", "logs", "--node", "n1", *cli(lab, "viewer"))
    assert refused.returncode == 1
    assert "403" in refused.stderr

    with subprocess.Popen(
        [*DEBVISOR, "unit", "logs", "--node", "n1", "-t", "jclif", "-f", "--json", *cli(lab)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    ) as follow:  # fmt: skip
        try:
            assert follow.stdout is not None
            os.set_blocking(follow.stdout.fileno(), False)
            got: list[str] = []

            def printed_line() -> bool:
                chunk = follow.stdout.read() if follow.stdout is not None else None
                got.extend((chunk or "").splitlines())
                return any("followed by the cli" in line for line in got)

            def written_and_printed() -> bool:
                lab.box.run(["systemd-cat", "-t", "jclif", "echo", "followed by the cli"])
                wait_until(printed_line, 5, 0.1, what="the CLI to print the line")
                return True

            # written again until printed: the CLI's socket may open after the first line was written
            wait_until(written_and_printed, 20, 0.5, what="the followed line")
            entry = json.loads(next(line for line in got if "followed by the cli" in line))
            assert entry["identifier"] == "jclif"
        finally:
            follow.terminate()


def test_journal_of_a_node_without_one_is_empty_not_an_error(lab: Lab) -> None:
    """n2 reads its own machine's journal: on these machines there is none, and that is empty."""
    with lab.client("operator") as client:
        answer = client.get("/api/v1/nodes/n2/journal", params={"identifier": "no-such-thing-here"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["entries"] == []
