"""The networking pages of the web UI end to end: a real `debvisor serve --netns NS` on loopback
managing a network namespace this test makes, driven through Debian's Chromium by
webui/e2e/network.mjs: a bad document's problem on its line, the plan as a diff, apply and
Confirm within the countdown, a second apply left to roll back (the page shows it), overlay
networks, a join token's command, sessions, PXE, and a viewer's read-only views. Afterwards the
namespace itself is checked: the confirmed bridge is there, the rolled-back one is not.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.test_webui import _artefacts, _require_browser_kit, _run_script
from tests.kit.need import require_available
from tests.netns import _quiet, _run, available
from tests.nodeproc import NodeProcess, first_admin_token

pytestmark = [pytest.mark.integration, pytest.mark.browser, pytest.mark.privileged]

SUBNET = "10.93.0.0/16"  # the bridges' addresses, inside the namespace only


@pytest.fixture
def netns() -> Iterator[str]:
    require_available(available())
    name = f"dv{secrets.token_hex(3)}-ui"
    metric = str(1000 + secrets.randbelow(60000))
    _run(["ip", "route", "add", "unreachable", SUBNET, "metric", metric])
    try:
        _run(["ip", "netns", "add", name])
        _run(["ip", "-n", name, "link", "set", "lo", "up"])
        yield name
    finally:
        _quiet(["ip", "netns", "del", name])
        _quiet(["ip", "route", "del", "unreachable", SUBNET, "metric", metric])


def links_in(netns: str) -> set[str]:
    found = json.loads(_run(["ip", "-n", netns, "-j", "link", "show"]).stdout)
    return {str(link["ifname"]) for link in found}


def test_a_network_change_confirmed_through_the_countdown_and_one_rolled_back(tmp_path: Path, netns: str) -> None:
    _require_browser_kit()
    artefacts = _artefacts("network")
    with NodeProcess(tmp_path / "node", extra_args=["--netns", netns]) as node:
        node.wait_ready()
        initial = (node.data_dir / "initial-admin-password").read_text().strip()
        with node.client() as client:
            first_admin_token(client, initial)
        figures = _run_script("network.mjs", node, artefacts, {"DEBVISOR_ADMIN_PASSWORD": initial + "-changed"})
        assert figures["ok"] is True
        names = links_in(netns)
        assert "dvwb0" in names  # confirmed through the page
        assert "dvwb1" not in names  # left alone: rolled back
        assert "dvwb0" not in links_in_root()
    shots = [Path(str(p)) for p in figures["screenshots"]]  # type: ignore[attr-defined]
    assert len(shots) >= 10
    assert all(p.stat().st_size > 5000 for p in shots)
    print(f"webui network e2e figures: {json.dumps(figures)}")


def links_in_root() -> set[str]:
    return {str(link["ifname"]) for link in json.loads(_run(["ip", "-j", "link", "show"]).stdout)}
