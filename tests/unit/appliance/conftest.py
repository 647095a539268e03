"""Fixtures for the appliance's unit tests: a node opened in a temporary dir, a fake host."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from appliance.app import Appliance, create_app
from appliance.bootstrap import OpenedNode, open_node
from appliance.node.types import Cpu, Disk, InterfaceAddress, Memory
from appliance.settings import ServeSettings, parse_host_port

HOST_ADDRESSES = [
    InterfaceAddress(interface="lo", family="inet", address="127.0.0.1", prefix_len=8, scope="host"),
    InterfaceAddress(interface="eth0", family="inet", address="192.0.2.10", prefix_len=24, scope="global"),
    InterfaceAddress(interface="eth0", family="inet6", address="fe80::1", prefix_len=64, scope="link"),
    InterfaceAddress(interface="eth0", family="inet6", address="2001:db8::10", prefix_len=64, scope="global"),
]


class FakeHost:
    """A host with fixed facts; counts address lookups so caching can be checked."""

    def __init__(self) -> None:
        self.address_calls = 0

    def cpu(self) -> Cpu:
        return Cpu(count=4, model="Test CPU")

    def kernel(self) -> str:
        return "6.1.0-test"

    def memory(self) -> Memory:
        return Memory(total_bytes=8 << 30, available_bytes=6 << 30)

    def disk(self, path: Path) -> Disk:
        return Disk(path=str(path), total_bytes=100 << 30, free_bytes=40 << 30)

    async def addresses(self) -> list[InterfaceAddress]:
        self.address_calls += 1
        return list(HOST_ADDRESSES)


def settings_for(data_dir: Path, name: str | None = "n1", api: str = "127.0.0.1:8443") -> ServeSettings:
    return ServeSettings(
        data_dir=data_dir,
        api=parse_host_port(api, 8443),
        gossip=parse_host_port("127.0.0.1:7946", 7946),
        name=name,
    )


@pytest.fixture
def node(tmp_path: Path) -> Iterator[OpenedNode]:
    opened = open_node(settings_for(tmp_path / "data"), HOST_ADDRESSES)
    yield opened
    opened.close()


@pytest.fixture
def appliance(node: OpenedNode) -> Appliance:
    return create_app(node, host=FakeHost())


@pytest.fixture
def client(appliance: Appliance) -> Iterator[TestClient[Any]]:
    with TestClient(appliance.asgi) as test_client:
        yield test_client
