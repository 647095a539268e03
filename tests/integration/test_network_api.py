"""Three real nodes in namespaces: host networking through another node, and an overlay network.

Each node is a `debvisor serve` started by `ip netns exec` in its own namespace, with no
`--netns`: its netconfig (KernelAdapter(netns=None)) acts on the namespace the process runs in,
which these tests check by looking for the links there and not in the root namespace. Every
request goes to n0; those for n2 are forwarded. One cluster serves the tests, in order.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.clusterlab import ClusterLab, ClusterNode, running_cluster
from tests.kit.need import require_available
from tests.kit.wait import wait_until
from tests.netns import _quiet, _run, available

pytestmark = [pytest.mark.integration, pytest.mark.privileged]

OVERLAY_SUBNET = "10.92.0.0/24"  # addresses on the overlay bridges, inside the namespaces only


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterLab]:
    require_available(available())  # before the root route below
    metric = str(1000 + secrets.randbelow(60000))
    _run(["ip", "route", "add", "unreachable", OVERLAY_SUBNET, "metric", metric])
    try:
        with running_cluster(tmp_path_factory, 3, label="netapi") as cluster:
            yield cluster
    finally:
        _quiet(["ip", "route", "del", "unreachable", OVERLAY_SUBNET, "metric", metric])


def ip_json(node: ClusterNode, *args: str) -> Any:
    result = _run(["ip", "-n", node.host.netns, "-j", *args], check=False)
    return json.loads(result.stdout) if result.returncode == 0 and result.stdout.strip() else None


def inet(node: ClusterNode, name: str) -> list[str] | None:
    """IPv4 addresses of a link in the node's namespace; None if there is no such link."""
    found = ip_json(node, "address", "show", "dev", name)
    if not found:
        return None
    return [f"{a['local']}/{a['prefixlen']}" for a in found[0]["addr_info"] if a["family"] == "inet"]


def fdb_peers(node: ClusterNode, vxlan: str) -> set[str]:
    result = subprocess.run(
        ["bridge", "-n", node.host.netns, "-j", "fdb", "show", "dev", vxlan],
        capture_output=True, text=True, timeout=10, check=False,
    )  # fmt: skip
    if result.returncode != 0:
        return set()
    return {e["dst"] for e in json.loads(result.stdout) if e.get("mac") == "00:00:00:00:00:00" and "dst" in e}


def config_for(*bridges: tuple[str, str]) -> dict[str, Any]:
    return {"bridges": [{"name": name, "addresses": [address]} for name, address in bridges]}


def test_configure_n2_through_n0(cluster: ClusterLab) -> None:
    n0, n2 = cluster.nodes[0], cluster.nodes[2]
    api = n0.client()
    base = "/api/v1/nodes/n2/network"
    desired = config_for(("dvnet0", "10.92.0.102/24"))
    stored = api.put(base, json=desired)
    assert stored.status_code == 200, stored.text
    assert n2.client().get("/api/v1/nodes/n2/network").json() == stored.json()  # stored on n2 itself
    assert "n0" not in json.dumps(api.get("/api/v1/nodes/n0/network").json())  # n0's own is untouched
    plan = api.post(f"{base}/plan", json={})
    assert plan.status_code == 200
    assert plan.json()["node"] == "n2"
    assert "ip link add dvnet0 type bridge" in " ".join(plan.json()["actions"])
    applied = api.post(f"{base}/apply", json={"confirm_within": 60})
    assert applied.status_code == 200, applied.text
    assert inet(n2, "dvnet0") == ["10.92.0.102/24"]  # in n2's namespace...
    assert inet(n0, "dvnet0") is None  # ...not in n0's...
    assert _run(["ip", "link", "show", "dev", "dvnet0"], check=False).returncode != 0  # ...nor the root's
    status = api.get(f"{base}/status").json()
    assert status["node"] == "n2"
    assert status["pending"]["bridges"][0]["name"] == "dvnet0"
    assert status["remaining"] > 0
    assert "dvnet0" in {link["name"] for link in status["links"]}
    confirmed = api.post(f"{base}/confirm")
    assert confirmed.status_code == 200, confirmed.text
    status = api.get(f"{base}/status").json()
    assert status["pending"] is None
    assert status["last_outcome"]["result"] == "confirmed"
    # audited on n2 (where it happened) and on n0 (where it was asked)
    for node in ("n0", "n2"):
        entries = api.get("/api/v1/audit", params={"node": node, "action": "network."}).json()
        actions = [e["action"] for e in entries["entries"]]
        assert {"network.config.put", "network.plan", "network.apply", "network.confirm"} <= set(actions), actions


def test_unconfirmed_apply_on_n2_rolls_back(cluster: ClusterLab) -> None:
    n0, n2 = cluster.nodes[0], cluster.nodes[2]
    base = "/api/v1/nodes/n2/network"
    config = config_for(("dvnet0", "10.92.0.102/24"), ("dvnet1", "10.92.1.102/24"))
    applied = n0.client().post(f"{base}/apply", json={"config": config, "confirm_within": 10})
    assert applied.status_code == 200, applied.text
    assert inet(n2, "dvnet1") == ["10.92.1.102/24"]
    again = n0.client().post(f"{base}/apply", json={"config": config})
    assert again.status_code == 409
    took = wait_until(lambda: inet(n2, "dvnet1") is None, timeout=20, interval=0.2)
    print(f"\nunconfirmed change rolled back {took:.1f} s after the check (10 s window)")
    assert inet(n2, "dvnet0") == ["10.92.0.102/24"]  # the confirmed configuration stays
    status = n0.client().get(f"{base}/status").json()
    assert status["last_outcome"]["reason"] == "not confirmed in time"


def test_viewer_cannot_apply_through_another_node(cluster: ClusterLab) -> None:
    n0 = cluster.nodes[0]
    user = {"name": "watcher", "role": "viewer", "password": "only looking here"}
    assert n0.client().post("/api/v1/users", json=user).status_code == 201
    from tests.nsclient import NamespaceClient

    def as_viewer(client: Any) -> tuple[int, int]:
        login = client.post("/api/v1/auth/login", json={"username": "watcher", "password": "only looking here"})
        csrf = {"X-CSRF-Token": login.json()["csrf_token"]}
        read = client.get("/api/v1/nodes/n2/network/status").status_code
        write = client.post("/api/v1/nodes/n2/network/apply", json={}, headers=csrf).status_code
        return read, write

    with NamespaceClient(n0.host.netns, n0.url, n0.data_dir / "pki" / "ca.crt") as browser:
        assert browser.call(as_viewer) == (200, 403)


def test_overlay_network_on_every_node(cluster: ClusterLab) -> None:
    n0, n1, n2 = cluster.nodes
    created = n0.client().post("/api/v1/networks", json={"name": "blue", "vni": 4242, "bridge": "ovl42"})
    assert created.status_code == 201, created.text
    addresses = {n.name: n.host.address for n in cluster.nodes}

    def built_everywhere() -> bool:
        for node in cluster.nodes:
            others = {a for name, a in addresses.items() if name != node.name}
            vxlan = ip_json(node, "-d", "link", "show", "dev", "vx4242")
            if not vxlan or vxlan[0].get("master") != "ovl42" or fdb_peers(node, "vx4242") != others:
                return False
        return True

    took = wait_until(built_everywhere, timeout=15, interval=0.1)
    print(f"\noverlay built on 3 nodes with full FDB peer lists in {took:.2f} s")
    info = ip_json(n1, "-d", "link", "show", "dev", "vx4242")[0]["linkinfo"]["info_data"]
    assert info["id"] == 4242
    assert info["local"] == n1.host.address
    assert info["port"] == 4789
    assert not info.get("learning", False)
    assert ip_json(n1, "link", "show", "dev", "ovl42")[0]["mtu"] == 1450
    status = n0.client().get("/api/v1/nodes/n1/network/status").json()
    assert status["overlays"][0]["peers"] == sorted(a for name, a in addresses.items() if name != "n1")

    # traffic over the overlay: addresses on the bridges by hand (the reconciler leaves them alone)
    for index, node in enumerate(cluster.nodes):
        _run(["ip", "-n", node.host.netns, "addr", "add", f"10.92.0.{index + 1}/24", "dev", "ovl42"])
    wait_until(lambda: n0.host.ping("10.92.0.2", count=1) == 1, timeout=10, interval=0.2)
    assert n1.host.ping("10.92.0.1", count=3) == 3
    n0.client().get("/api/v1/networks")  # (a request, so a resync had a chance to run meanwhile)
    assert inet(n0, "ovl42") == ["10.92.0.1/24"]

    # a node dies: its FDB entry goes away on the others
    n2.kill()
    killed = time.monotonic()

    def forgotten() -> bool:
        return all(fdb_peers(n, "vx4242") == {addresses[o.name]} for n, o in ((n0, n1), (n1, n0)))

    wait_until(forgotten, timeout=10, interval=0.1)
    print(f"\nkilled n2's FDB entry gone on n0 and n1 {time.monotonic() - killed:.2f} s after the kill")
    assert n0.host.ping("10.92.0.2", count=2) == 2

    # deleting the network removes its links everywhere that is alive
    assert n0.client().delete("/api/v1/networks/blue").status_code == 204
    wait_until(lambda: all(inet(n, "ovl42") is None and inet(n, "vx4242") is None for n in (n0, n1)), timeout=10)
