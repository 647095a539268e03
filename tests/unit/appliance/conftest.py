"""Fixtures for the appliance's unit tests: a node opened in a temporary dir, a fake host."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from litestar.testing import TestClient

from appliance.app import Appliance, create_app
from appliance.bootstrap import OpenedNode, open_node
from appliance.metrics.http import MetricsMiddleware
from appliance.node.types import Cpu, Disk, InterfaceAddress, Memory
from appliance.settings import AuthSettings, ServeSettings, parse_host_port
from tests.kit.clock import FakeClock
from tests.unit.appliance.answers import recording

# Session cookies are Secure: the test client must speak "https" for the browser rules to apply.
# The kit's FakeClock, re-exported for tests written before the kit (new ones import tests.kit.clock).
__all__ = ["BASE", "HOST_ADDRESSES", "FakeClock", "FakeHost", "admin_token", "another_browser", "settings_for"]

BASE = "https://testserver.local"

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
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def appliance(node: OpenedNode, clock: FakeClock) -> Appliance:
    return create_app(node, host=FakeHost(), auth=AuthSettings(rate_limit=0), clock=clock, monotonic=clock)


def admin_token(appliance: Appliance) -> str:
    """A fresh admin API token (made through the service, as a test shortcut past login)."""
    _, secret = appliance.accounts.create_token(owner="admin", name="tests", role=None, expires_at=None)
    return secret


@pytest.fixture
def anonymous(appliance: Appliance) -> Iterator[TestClient[Any]]:
    """A client with no credentials."""
    with TestClient(appliance.asgi, base_url=BASE) as test_client:
        yield test_client


@pytest.fixture
def client(appliance: Appliance) -> Iterator[TestClient[Any]]:
    """A client authenticated as the bootstrap admin with an API token."""
    with TestClient(appliance.asgi, base_url=BASE) as test_client:
        test_client.headers["Authorization"] = f"Bearer {admin_token(appliance)}"
        yield test_client


@contextlib.contextmanager
def another_browser(client: TestClient[Any]) -> Iterator[httpx.Client]:
    """A second client with its own cookies on the same running app (one lifespan for both).

    It borrows the test client's transport, so it is neither entered nor closed itself.
    """
    yield httpx.Client(transport=client._transport, base_url=BASE)


@pytest.fixture(autouse=True, scope="session")
def _record_answers() -> Iterator[None]:
    """Record every answer an API test gets (tests/unit/appliance/answers.py); the OpenAPI
    test checks each one is documented, after all the others ran."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(MetricsMiddleware, "__call__", recording(MetricsMiddleware.__call__))
        yield


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the check of the recorded answers last, after every test that feeds it."""
    last = [item for item in items if item.get_closest_marker("after_api_tests")]
    items[:] = [item for item in items if item not in last] + last
