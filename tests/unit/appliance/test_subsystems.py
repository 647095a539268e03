"""Subsystems: a new one is its own module plus one list entry; a failed start leaves nothing running.

The toy subsystems here are defined in this module only and handed to `create_app` through its
list (`extra`); nothing else in the code base knows them. The node around them is the real
one: its gossip listens on loopback, so "nothing running" is checked on a real socket.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Iterator
from typing import Any

import msgspec
import pytest
from litestar import get
from litestar.testing import TestClient

from appliance.app import create_app
from appliance.auth.permissions import Permission, requires
from appliance.bootstrap import OpenedNode
from appliance.health.readiness import Readiness
from appliance.settings import AuthSettings
from appliance.subsystem import Core, ReadinessCheck, Startup, Subsystem, Task, run
from tests.unit.appliance.answers import ANSWERS
from tests.unit.appliance.conftest import BASE, FakeHost, admin_token


@pytest.fixture(autouse=True)
def _forget_toy_answers() -> Iterator[None]:
    """The toy routes are not in the node's OpenAPI document, which the recorded answers are
    checked against (test_openapi.py): forget theirs."""
    yield
    ANSWERS[:] = [a for a in ANSWERS if not a.path.startswith(("/api/v1/toy", "/api/v1/first", "/api/v1/broken"))]


class Toy(msgspec.Struct, frozen=True):
    """What the toy route answers."""

    node: str
    started: bool


class Record:
    """What the toy subsystems saw happen, in order."""

    def __init__(self) -> None:
        self.events: list[str] = []
        self.cancelled: list[str] = []


def toy(record: Record, name: str = "toy", *, fail: bool = False, probe: Callable[[], None] = lambda: None) -> Any:
    """A builder: a route under its own permission from the table, a start, a task, a stop."""

    def build(core: Core) -> Subsystem:
        state = {"started": False}

        @get(f"/api/v1/{name}", opt=requires(Permission.NODE_READ), summary="A toy subsystem's answer")
        async def answer() -> Toy:
            return Toy(node=core.name, started=state["started"])

        async def start() -> None:
            record.events.append(f"{name} start")
            probe()
            await asyncio.sleep(0.05)  # a start waits for something, as real ones do: the tasks run meanwhile
            if fail:
                raise RuntimeError(f"{name} cannot open its\ndevice")
            state["started"] = True
            core.readiness.set(name, True, "running")

        async def work() -> None:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                record.cancelled.append(name)
                raise

        async def stop() -> None:
            record.events.append(f"{name} stop")

        return Subsystem(
            name=name,
            routes=[answer],
            start=start,
            tasks=[Task(f"{name}-work", work)],
            stop=stop,
            readiness=[ReadinessCheck(name)],
        )

    return build


def leaves(exc: BaseException) -> list[BaseException]:
    """The exceptions inside `exc` (the test client wraps the app's in an exception group)."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in leaves(inner)]
    return [exc]


def listening(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1.0)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def test_a_toy_subsystem_needs_only_its_module_and_one_list_entry(node: OpenedNode) -> None:
    record = Record()
    appliance = create_app(node, host=FakeHost(), auth=AuthSettings(rate_limit=0), extra=[toy(record)])
    with TestClient(appliance.asgi, base_url=BASE) as client:
        client.headers["Authorization"] = f"Bearer {admin_token(appliance)}"
        assert client.get("/api/v1/toy").json() == {"node": "n1", "started": True}
        ready = client.get("/readyz").json()
        assert ready["ready"] is True
        assert ready["checks"]["toy"] == {"ready": True, "detail": "running"}
        assert client.get("/api/v1/toy", headers={"Authorization": ""}).status_code == 401
        document = client.get("/api/v1/openapi.json").json()
        assert "/api/v1/toy" in document["paths"]
    assert record.events == ["toy start", "toy stop"]
    assert record.cancelled == ["toy"]


def test_a_failed_start_stops_what_had_started_and_leaves_nothing_running(node: OpenedNode) -> None:
    record = Record()
    gossip_ports: list[int] = []

    def gossip_listens() -> None:
        port = appliance.cluster.transport.port
        assert listening(port)
        gossip_ports.append(port)

    appliance = create_app(
        node,
        host=FakeHost(),
        auth=AuthSettings(rate_limit=0),
        extra=[toy(record, "first", probe=gossip_listens), toy(record, "broken", fail=True), toy(record, "never")],
    )
    client = TestClient(appliance.asgi, base_url=BASE)
    with pytest.raises(BaseExceptionGroup, match="unhandled errors") as raised, client:
        pass
    assert [str(e) for e in leaves(raised.value)] == ["broken cannot open its\ndevice"]
    # The broken one is stopped too (it may have done half its work); the later one never started.
    assert record.events == ["first start", "broken start", "broken stop", "first stop"]
    assert record.cancelled == ["first"]
    assert appliance.startup.error == "broken did not start: broken cannot open its device"
    # The real subsystems before it stopped too: gossip no longer listens, the node is not ready.
    [port] = gossip_ports
    assert not listening(port)
    assert appliance.readiness.report().ready is False


async def test_the_runner_unwinds_in_reverse_and_cancels_tasks() -> None:
    order: list[str] = []
    readiness = Readiness()
    readiness.register("api")
    readiness.register("optional", critical=False)

    def part(name: str) -> Subsystem:
        async def start() -> None:
            order.append(f"start {name}")

        async def stop() -> None:
            order.append(f"stop {name}")

        async def work() -> None:
            try:
                await asyncio.Event().wait()
            finally:
                order.append(f"cancelled {name}")

        return Subsystem(name=name, start=start, stop=stop, tasks=[Task(name, work)])

    async with run([part("a"), part("b")], readiness, Startup()):
        await asyncio.sleep(0)
        assert readiness.report().ready is True  # "optional" is degraded only: it never holds readiness back
    assert order == ["start a", "start b", "cancelled b", "stop b", "cancelled a", "stop a"]
    assert readiness.report().checks["api"].detail == "stopping"
