"""A real `debvisor serve` opens its plain-HTTP boot-file port only while PXE is enabled.

The node runs as the image starts it: no `--pxe-http` flag, its listener address from the
kernel command line (`--boot-params FILE` with `debvisor.pxe-http=`). Disabled: the port is
closed. PUT enabled: /pxe/boot.ipxe answers on it. PUT disabled: closed again.

The node runs inside a Lab host namespace (tests.nodeproc with an `ip netns exec` prefix), so
the dnsmasq that enabling starts binds the Lab's veth, never an interface of this machine, and
the listener is on that namespace's 127.0.0.1; every request is made from a thread inside the
namespace (tests.nsclient).
"""

from __future__ import annotations

import shutil
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.conftest import require
from tests.netns import Lab, available
from tests.nodeproc import NodeProcess, first_admin_token
from tests.nsclient import NamespaceClient, enter_netns

pytestmark = [pytest.mark.integration, pytest.mark.privileged]

SUBNET = "10.89.0.0/24"
PXE_PORT = 18080


def _port_open(netns: str, port: int) -> bool:
    """Whether 127.0.0.1:`port` accepts a connection inside `netns` (asked from a thread in it)."""
    result: list[bool] = []

    def probe() -> None:
        enter_netns(netns)
        with socket.socket() as sock:
            sock.settimeout(2.0)
            result.append(sock.connect_ex(("127.0.0.1", port)) == 0)

    thread = threading.Thread(target=probe)
    thread.start()
    thread.join(5.0)
    return result == [True]


def _wait(condition: Callable[[], bool], what: str, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {seconds} s waiting for {what}", pytrace=False)
        time.sleep(0.1)


def test_the_boot_file_port_follows_the_pxe_setting(tmp_path: Path) -> None:
    reason = available()
    require(reason is None, reason or "")
    require(shutil.which("dnsmasq") is not None, "dnsmasq is missing (see .ci/packages)")
    cmdline = tmp_path / "cmdline"
    cmdline.write_text(f"boot=live debvisor.pxe-http=127.0.0.1:{PXE_PORT}\n")
    with Lab(1, SUBNET) as lab:
        host = lab.host(0)
        node = NodeProcess(
            tmp_path / "node",
            name="pxe1",
            prefix=host.command([]),
            extra_args=["--boot-params", str(cmdline), "--rate-limit", "0"],
        )
        node.start()
        try:
            ca = node.data_dir / "pki" / "ca.crt"
            _wait(ca.exists, "the node's CA", 30.0)
            with NamespaceClient(host.netns, node.url, ca) as api:

                def ready() -> bool:
                    assert node.proc is not None
                    assert node.proc.poll() is None, node.stderr()[-2000:]
                    try:
                        return api.get("/readyz").status_code == 200
                    except httpx.TransportError:
                        return False

                _wait(ready, "/readyz", 30.0)
                initial = (node.data_dir / "initial-admin-password").read_text().strip()
                token = api.call(lambda c: first_admin_token(c, initial))
                auth = {"Authorization": f"Bearer {token}"}

                assert not _port_open(host.netns, PXE_PORT)  # disabled: no plain-HTTP port
                config = {"enabled": True, "interface": host.ifname, "mode": "proxy", "network": SUBNET}
                put = api.put("/api/v1/nodes/pxe1/pxe", json=config, headers=auth)
                assert put.status_code == 200, put.text
                assert _port_open(host.netns, PXE_PORT)
                boot = NamespaceClient(host.netns, f"http://127.0.0.1:{PXE_PORT}", ca)
                with boot:
                    script = boot.get("/pxe/boot.ipxe")
                    assert script.status_code == 200, script.text
                    assert script.text.startswith("#!ipxe")
                    assert boot.get("/api/v1/nodes").status_code == 404  # never the API
                _wait(lambda: "started dnsmasq" in node.stderr(), "dnsmasq")
                assert f"machines are sent to http://127.0.0.1:{PXE_PORT}" in node.stderr()  # the default URL

                put = api.put("/api/v1/nodes/pxe1/pxe", json=config | {"enabled": False}, headers=auth)
                assert put.status_code == 200, put.text
                assert not _port_open(host.netns, PXE_PORT)
        finally:
            assert node.stop() == 0
