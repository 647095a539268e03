"""Issue 18, finding 1, replayed against a real boot server node: PXE no longer leaks join tokens.

Before, `GET /pxe/boot.ipxe?mac=MAC` on the plain-HTTP listener answered anyone with that
machine's `debvisor.join=dvj_...`, and `GET /api/v1/nodes/NAME/pxe` showed staged join tokens to
every operator, unaudited. Now a script carries a single-use enrolment credential bound to its
MAC; a machine presents it over pinned TLS, waits pending until approved, and gets its join
token only on its own authenticated poll. These tests play the attacker on the boot LAN and the
curious operator, then boot real second nodes the way the script's kernel line says.

The boot server is a real `debvisor serve --pxe-http 127.0.0.1:PORT` with PXE enabled on `lo`
in proxy mode (as in test_pxe_api.py): every request goes to 127.0.0.1, no machine boots.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from pxe.credential import EnrolCredential, decode, encode
from tests.kit.wait import wait_until
from tests.nodeproc import NodeProcess, free_port

pytestmark = pytest.mark.integration

MAC = "52:54:00:7e:18:01"
OTHER = "52:54:00:7e:18:02"


class BootedNode(NodeProcess):
    """A node started as the image starts a PXE-booted machine: no --name, its settings from the
    kernel command line the boot script rendered (`--boot-params`)."""

    def command(self) -> list[str]:
        command = super().command()
        at = command.index("--name")
        del command[at : at + 2]
        return command


@pytest.fixture
def pxe_port() -> int:
    return free_port()


@pytest.fixture
def server(tmp_path: Path, pxe_port: int) -> Iterator[NodeProcess]:
    files = tmp_path / "files"
    files.mkdir()
    node = NodeProcess(
        tmp_path / "boot",
        name="boot",
        extra_args=["--pxe-http", f"127.0.0.1:{pxe_port}", "--pxe-files", str(files), "--rate-limit", "0"],
    ).start()
    try:
        node.wait_ready()
        _put_config(node, pxe_port)
        yield node
    finally:
        node.stop()


def _put_config(node: NodeProcess, port: int, **changes: Any) -> None:
    config = {"enabled": True, "interface": "lo", "network": "127.0.0.0/8", "http_url": f"http://127.0.0.1:{port}"}
    with node.admin_client() as api:
        answer = api.put(f"/api/v1/nodes/{node.name}/pxe", json=config | changes)
    assert answer.status_code == 200, answer.text


def _script(port: int, mac: str) -> str:
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5.0) as lan:
        answer = lan.get("/pxe/boot.ipxe", params={"mac": mac})
    assert answer.status_code == 200, answer.text
    return answer.text


def _kernel_line(script: str) -> str:
    return script.splitlines()[1].removeprefix("kernel ").split(" ", 1)[1]


def _credential(script: str) -> str:
    [arg] = [a for a in _kernel_line(script).split() if a.startswith("debvisor.enrol=")]
    return arg.removeprefix("debvisor.enrol=")


@contextmanager
def _operator(node: NodeProcess) -> Iterator[httpx.Client]:
    """A client logged in as an operator (pxe:manage, not admin)."""
    with node.admin_client() as api:
        user = {"name": "opal", "role": "operator", "password": "operating the rack"}
        assert api.post("/api/v1/users", json=user).status_code == 201
    with node.client() as client:
        login = client.post("/api/v1/auth/login", json={"username": "opal", "password": "operating the rack"})
        assert login.status_code == 200, login.text
        client.headers["X-CSRF-Token"] = login.json()["csrf_token"]
        yield client


def _audit(node: NodeProcess, action: str | None) -> list[dict[str, Any]]:
    """Audit entries, oldest first: exactly `action`, or a prefix ending in "." (None: all)."""
    params: dict[str, Any] = {"limit": 1000} | ({"action": action} if action else {})
    with node.admin_client() as api:
        answer = api.get("/api/v1/audit", params=params)
    assert answer.status_code == 200, answer.text
    entries: list[dict[str, Any]] = answer.json()["entries"]
    return entries


def _state(node: NodeProcess, mac: str) -> str | None:
    with node.admin_client() as api:
        answer = api.get(f"/api/v1/nodes/{node.name}/pxe/machines/{mac}")
    return str(answer.json()["state"]) if answer.status_code == 200 else None


def test_a_lan_fetch_of_a_boot_script_yields_no_reusable_secret(server: NodeProcess, pxe_port: int) -> None:
    with server.admin_client() as api:
        named = api.put(f"/api/v1/nodes/boot/pxe/machines/{MAC}", json={"name": "rack1-n1"})
        assert named.status_code == 200, named.text
        fingerprint = api.get("/api/v1/cluster/ca").json()["fingerprint"]
    script = _script(pxe_port, MAC)
    assert "dvj_" not in script  # no join token, for a named machine either
    credential = decode(_credential(script))
    assert (credential.mac, credential.ca_fingerprint) == (MAC, fingerprint)
    assert credential.servers == [f"127.0.0.1:{server.api_port}"]

    stolen = {"id": credential.id, "secret": credential.secret}
    with server.client() as tls:
        other = tls.post("/api/v1/pxe/enrol", json=stolen | {"mac": OTHER})
        assert other.status_code == 403
        assert "another machine" in other.json()["detail"]
        again = tls.post("/api/v1/pxe/enrol", json=stolen | {"mac": MAC})  # consumed by the first use
        assert again.status_code == 403
        assert "already used" in again.json()["detail"]

        # A fresh credential, sniffed and used first by the attacker: at most a machine that waits.
        fresh = decode(_credential(_script(pxe_port, MAC)))
        enrolled = tls.post("/api/v1/pxe/enrol", json={"id": fresh.id, "secret": fresh.secret, "mac": MAC})
        assert enrolled.status_code == 200, enrolled.text
        assert enrolled.json()["state"] == "pending"
        poll = {"mac": MAC, "poll_secret": enrolled.json()["poll_secret"]}
        for _ in range(3):
            polled = tls.post("/api/v1/pxe/enrol/poll", json=poll)
            assert polled.status_code == 200
            assert "join_token" not in polled.json()
        # The real machine, booting next, cannot be pushed aside either: the conflict is refused.
        real = decode(_credential(_script(pxe_port, MAC)))
        second = tls.post("/api/v1/pxe/enrol", json={"id": real.id, "secret": real.secret, "mac": MAC})
        assert second.status_code == 409
    assert _state(server, MAC) == "pending"
    denied = [e for e in _audit(server, "pxe.enrol") if e["outcome"] == "denied"]
    assert [e["user"] for e in denied] == [f"machine:{OTHER}", f"machine:{MAC}", f"machine:{MAC}"]
    assert "dve_" not in json.dumps(_audit(server, "pxe.")) + server.stderr()


def test_an_operator_cannot_read_a_join_token_through_any_pxe_route_and_reads_are_audited(
    server: NodeProcess, pxe_port: int
) -> None:
    # A machine enrols, is approved and is handed its token (the test plays the machine).
    credential = decode(_credential(_script(pxe_port, MAC)))
    with server.client() as tls:
        enrolled = tls.post("/api/v1/pxe/enrol", json={"id": credential.id, "secret": credential.secret, "mac": MAC})
        assert enrolled.status_code == 200, enrolled.text
        with _operator(server) as operator, server.admin_client() as admin:
            # Approving admits a member, which can act as any enabled user: an operator may not.
            refused = operator.post(f"/api/v1/nodes/boot/pxe/machines/{MAC}/approve", json={"name": "rack1-n2"})
            assert refused.status_code == 403, refused.text
            policy = operator.get("/api/v1/nodes/boot/pxe").json()
            widened = operator.put("/api/v1/nodes/boot/pxe", json={**policy, "approve_all": True})
            assert widened.status_code == 403, widened.text
            assert "approval policy" in widened.json()["detail"]
            approved = admin.post(f"/api/v1/nodes/boot/pxe/machines/{MAC}/approve", json={"name": "rack1-n2"})
            assert approved.status_code == 200, approved.text
            polled = tls.post(
                "/api/v1/pxe/enrol/poll", json={"mac": MAC, "poll_secret": enrolled.json()["poll_secret"]}
            )
            assert polled.status_code == 200, polled.text
            token = polled.json()["join_token"]
            assert token.startswith("dvj_")
            token_id = json.loads(base64.urlsafe_b64decode(token[4:] + "=" * (-len(token[4:]) % 4)))["id"]

            seen = []
            for path in ("", "/machines", f"/machines/{MAC}"):
                answer = operator.get(f"/api/v1/nodes/boot/pxe{path}")
                assert answer.status_code == 200, answer.text
                seen.append(answer.text)
            assert json.loads(seen[0])["enrolments"][MAC]["token_id"] == token_id  # which token, by id
            put = operator.put(f"/api/v1/nodes/boot/pxe/machines/{MAC}", json={"name": "rack1-n2"})
            seen.append(put.text)
            again = tls.post("/api/v1/pxe/enrol/poll", json={"mac": MAC, "poll_secret": enrolled.json()["poll_secret"]})
            assert again.status_code == 409  # handed over once
            seen.append(again.text)
    leaked = [text for text in seen if "dvj_" in text or token in text]
    assert leaked == []
    reads = [e for e in _audit(server, "pxe.config.read") if e["user"] == "opal"]
    # Two reads of the settings: before the refused policy change, and among the routes above.
    assert [(e["outcome"], e["target"]) for e in reads] == [("success", "node boot")] * 2
    issued = _audit(server, "pxe.enrol.token")
    assert [e["detail"] for e in issued] == [f"join token {token_id} handed over, to join as rack1-n2"]
    assert token not in json.dumps(_audit(server, None)) + server.stderr()


def test_a_pxe_booted_node_waits_pending_until_approved_then_joins(
    tmp_path: Path, server: NodeProcess, pxe_port: int
) -> None:
    cmdline = tmp_path / "cmdline"
    cmdline.write_text(_kernel_line(_script(pxe_port, MAC)) + "\n")
    first = BootedNode(tmp_path / "machine", extra_args=["--boot-params", str(cmdline)])
    with first:
        wait_until(lambda: _state(server, MAC) == "pending", 30.0, 0.3, what="the machine to enrol")
        assert first.proc is not None
        assert first.proc.poll() is None  # waiting, not joined
        assert not (first.data_dir / "pki").exists()
    # systemd restarts the service (a crash, a start timeout): it resumes waiting, its spent
    # credential is not presented again.
    machine = BootedNode(tmp_path / "machine", extra_args=["--boot-params", str(cmdline)])
    with machine:
        wait_until(lambda: "resumes waiting for approval" in machine.stderr(), 30.0, 0.3, what="the machine to resume")
        with server.admin_client() as admin:
            approved = admin.post(f"/api/v1/nodes/boot/pxe/machines/{MAC}/approve", json={"name": "rack1-n3"})
        assert approved.status_code == 200, approved.text
        machine.wait_ready(60.0)
        with server.admin_client() as api:
            wait_until(
                lambda: {n["name"]: n["state"] for n in api.get("/api/v1/nodes").json()}.get("rack1-n3") == "alive",
                30.0,
                0.3,
                what="the machine to be a member",
            )
        assert _state(server, MAC) == "joined"
        assert "waits for approval" in machine.stderr()
        assert not (tmp_path / "machine" / "enrolment").exists()  # the kept poll secret is gone
    assert "dvj_" not in machine.stderr() + server.stderr()
    approvals = _audit(server, "pxe.machine.approve")
    assert [(e["user"], e["detail"]) for e in approvals] == [("admin", "approved to join as rack1-n3")]


def test_an_allow_listed_machine_joins_without_an_operator(tmp_path: Path, server: NodeProcess, pxe_port: int) -> None:
    _put_config(server, pxe_port, approve_macs=[OTHER], machines={OTHER: {"name": "rack1-n4"}})
    cmdline = tmp_path / "cmdline"
    cmdline.write_text(_kernel_line(_script(pxe_port, OTHER)) + "\n")
    with BootedNode(tmp_path / "machine", extra_args=["--boot-params", str(cmdline)]) as machine:
        machine.wait_ready(60.0)
        with machine.client() as own:  # the cluster's admin token works there: it joined
            own.headers["Authorization"] = f"Bearer {server.admin_token()}"
            assert own.get("/api/v1/node").json()["name"] == "rack1-n4"
        wait_until(lambda: _state(server, OTHER) == "joined", 30.0, 0.3, what="the machine to be a member")
    [entry] = [e for e in _audit(server, "pxe.enrol") if e["outcome"] == "success"]
    assert "approved by the policy as rack1-n4" in entry["detail"]


def test_a_wrong_ca_fingerprint_or_an_expired_credential_fails_clearly(
    tmp_path: Path, server: NodeProcess, pxe_port: int
) -> None:
    # An impostor boot server's script (or a tampered one): the CA does not match, nothing is sent.
    genuine = decode(_credential(_script(pxe_port, MAC)))
    forged = EnrolCredential(genuine.id, genuine.secret, MAC, "00" * 32, genuine.servers)
    script = _script(pxe_port, OTHER)
    cmdline = tmp_path / "forged"
    cmdline.write_text(_kernel_line(script).replace(_credential(script), encode(forged)) + "\n")
    wrong = BootedNode(tmp_path / "wrong", extra_args=["--boot-params", str(cmdline)])
    with wrong:
        assert wrong.proc is not None
        assert wrong.proc.wait(30.0) != 0
    assert "cannot enrol with the PXE boot server" in wrong.stderr()
    assert "belongs to another cluster" in wrong.stderr()
    assert _state(server, MAC) == "unknown"  # the credential never reached the server: still unused

    _put_config(server, pxe_port, credential_seconds=5)
    expired = tmp_path / "expired"
    expired.write_text(_kernel_line(_script(pxe_port, MAC)) + "\n")
    time.sleep(6.0)
    late = BootedNode(tmp_path / "late", extra_args=["--boot-params", str(expired)])
    with late:
        assert late.proc is not None
        assert late.proc.wait(30.0) != 0
    assert "the enrolment credential has expired" in late.stderr()
    assert not (late.data_dir / "pki").exists()
