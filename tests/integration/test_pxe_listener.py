"""A real `debvisor serve` opens its plain-HTTP boot-file port only while PXE is enabled.

The node runs as the image starts it: no `--pxe-http` flag, its listener address from the
kernel command line (`--boot-params FILE` with `debvisor.pxe-http=`). Disabled: the port is
closed. PUT enabled: /pxe/boot.ipxe answers on it. PUT disabled: closed again.

The node runs inside a Lab host namespace (tests.nodeproc with an `ip netns exec` prefix), so
the dnsmasq that enabling starts binds the Lab's veth, never an interface of this machine, and
the listener is on that namespace's 127.0.0.1; every request is made from a thread inside the
namespace (tests.nsclient).

The dnsmasq the node starts must have dropped root (its uids in /proc are not 0) and still
serve: a machine on the Lab's second host gets its proxy-DHCP offer and fetches the loader by
TFTP, byte for byte Debian's.
"""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import httpx
import pytest

from pxe.dnsmasq import BIOS_LOADER
from pxe.service import IPXE_DIR
from tests.dhcpclient import ARCH_BIOS, DISCOVER, OFFER, DhcpClient, Firmware, build, new_xid
from tests.kit.need import require, require_available, require_tool
from tests.kit.procs import assert_not_root, children_named
from tests.kit.wait import wait_until
from tests.netns import Host, Lab, available
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


def _dnsmasq_serves_without_root(node: NodeProcess, server: Host, client: Host, tmp_path: Path) -> None:
    """The node's dnsmasq runs as a user other than root, and DHCP and TFTP still work."""
    wait_until(
        lambda: "TFTP root is" in node.stderr(), 10.0, 0.1, what="dnsmasq's start-up (it drops root before this line)"
    )
    assert node.proc is not None
    pids = children_named(node.proc.pid, "dnsmasq")
    assert len(pids) == 1, pids
    assert_not_root(pids[0])
    with DhcpClient(client.netns, client.ifname) as dhcp:
        xid = new_xid()
        dhcp.send(build(Firmware("52:54:00:89:00:01", ARCH_BIOS, None), DISCOVER, xid))
        offers = {sender: message for message, sender in dhcp.replies(xid, 5.0)}
    assert offers[server.address].message_type == OFFER, offers
    assert offers[server.address].vendor_class == "PXEClient"  # a proxy offer
    loader = tmp_path / "loader.bin"
    url = f"tftp://{server.address}/{BIOS_LOADER}"
    fetched = client.run(["curl", "-sS", "--max-time", "10", "-o", str(loader), url], timeout=20.0)
    assert fetched.returncode == 0, fetched.stderr
    assert loader.read_bytes() == (IPXE_DIR / BIOS_LOADER).read_bytes()


def test_the_boot_file_port_follows_the_pxe_setting(tmp_path: Path) -> None:
    require_available(available())
    require_tool("dnsmasq", "curl")
    require((IPXE_DIR / BIOS_LOADER).exists(), f"Debian's ipxe package is missing ({IPXE_DIR / BIOS_LOADER})")
    cmdline = tmp_path / "cmdline"
    cmdline.write_text(f"boot=live debvisor.pxe-http=127.0.0.1:{PXE_PORT}\n")
    with Lab(2, SUBNET) as lab:
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
            wait_until(ca.exists, 30.0, 0.1, what="the node's CA")
            with NamespaceClient(host.netns, node.url, ca) as api:

                def ready() -> bool:
                    assert node.proc is not None
                    assert node.proc.poll() is None, node.stderr()[-2000:]
                    try:
                        return api.get("/readyz").status_code == 200
                    except httpx.TransportError:
                        return False

                wait_until(ready, 30.0, 0.1, what="/readyz")
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
                wait_until(lambda: "started dnsmasq" in node.stderr(), 10.0, 0.1, what="dnsmasq")
                assert f"machines are sent to http://127.0.0.1:{PXE_PORT}" in node.stderr()  # the default URL
                _dnsmasq_serves_without_root(node, host, lab.host(1), tmp_path)

                put = api.put("/api/v1/nodes/pxe1/pxe", json=config | {"enabled": False}, headers=auth)
                assert put.status_code == 200, put.text
                assert not _port_open(host.netns, PXE_PORT)
        finally:
            assert node.stop() == 0
