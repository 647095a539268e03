"""The supervisor restarts a failing child with growing back-off and stops a running one."""

from __future__ import annotations

import asyncio

from pxe.server import Supervisor


async def test_a_failing_child_is_restarted_with_back_off() -> None:
    lines: list[str] = []
    sup = Supervisor(["sh", "-c", "echo started; exit 3"], on_line=lines.append, initial_backoff=0.05, max_backoff=0.2)
    sup.start()
    await asyncio.sleep(0.6)
    await sup.stop()
    # 0.05 + 0.1 + 0.2 + 0.2 ... : several restarts, but far fewer than without back-off.
    assert 3 <= sup.starts <= 6
    assert sup.last_exit == 3
    assert lines.count("started") == sup.starts


async def test_stop_ends_a_running_child() -> None:
    sup = Supervisor(["sleep", "60"], stop_timeout=2.0)
    sup.start()
    for _ in range(100):
        if sup.pid is not None:
            break
        await asyncio.sleep(0.02)
    assert sup.pid is not None
    await sup.stop()
    assert sup.pid is None
    assert sup.starts == 1


async def test_a_missing_binary_is_retried_not_raised() -> None:
    sup = Supervisor(["/nonexistent/dnsmasq"], initial_backoff=0.05)
    sup.start()
    await asyncio.sleep(0.2)
    await sup.stop()
    assert sup.starts == 0
