"""The web UI's node page end to end (webui/e2e/node-page.mjs in Debian's Chromium, against
real `debvisor serve` nodes on loopback): the resource charts drawn from one history request
and moved on by `history` events alone, the range switcher, the power dialog's typed
confirmation (never sent), a viewer's page without buttons, and the units tab two ways: a
node with no system bus says so plainly, and a node managing a systemd-nspawn container
(`--system-bus`, `--host-root`) shows a unit stopped and started through the API live on the
open page, restarts it from the page and follows its journal. Screenshots and axe-core on
every view, as in test_webui.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.integration.test_webui import _artefacts, _require_browser_kit, _run_script
from tests.kit.nspawn import Container, debian_root, require_nspawn
from tests.nodeproc import NodeProcess

pytestmark = [pytest.mark.integration, pytest.mark.browser]

UNIT = "dvt-web.service"
UNIT_FILE = (
    "[Unit]\nDescription=DebVisor web UI test service\n[Service]\nExecStart=/bin/sleep infinity\n"
    "[Install]\nWantedBy=multi-user.target\n"
)


def _check(figures: dict[str, object]) -> None:
    assert figures["ok"] is True
    shots = [Path(str(p)) for p in figures["screenshots"]]  # type: ignore[attr-defined]
    assert len(shots) >= 5
    assert all(p.stat().st_size > 5000 for p in shots)
    assert figures["history_requests"] == ["?range=1h", "?range=1d", "?range=1h&metrics=cpu%2Cmemory"]
    print(f"webui node page figures: {json.dumps(figures)}")


def test_node_page_charts_power_and_units_without_a_system_bus(tmp_path: Path) -> None:
    _require_browser_kit()
    artefacts = _artefacts("node-page")
    # Pointed at a bus that is not there: the units tab must say so (and nothing here may
    # reach the test machine's own systemd).
    bus = ["--system-bus", f"unix:path={tmp_path}/no-bus"]
    with NodeProcess(tmp_path / "node", extra_args=bus) as node:
        node.wait_ready()
        initial = (node.data_dir / "initial-admin-password").read_text().strip()
        figures = _run_script("node-page.mjs", node, artefacts, {"DEBVISOR_INITIAL_PASSWORD": initial})
    _check(figures)


@pytest.mark.privileged
@pytest.mark.systemd
def test_node_page_shows_a_container_s_unit_change_live(tmp_path: Path) -> None:
    _require_browser_kit()
    require_nspawn()
    artefacts = _artefacts("node-page-units")
    with Container(debian_root(), tmp_path / "box") as box:
        target = box.path(f"/etc/systemd/system/{UNIT}")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(UNIT_FILE)
        box.run(["systemctl", "daemon-reload"])
        box.run(["systemctl", "start", UNIT])
        extra = ["--system-bus", box.bus_address(), "--host-root", str(box.path("/"))]
        with NodeProcess(tmp_path / "node", extra_args=extra) as node:
            node.wait_ready()
            initial = (node.data_dir / "initial-admin-password").read_text().strip()
            figures = _run_script(
                "node-page.mjs", node, artefacts, {"DEBVISOR_INITIAL_PASSWORD": initial, "DEBVISOR_UNIT": UNIT}
            )
    _check(figures)
    assert isinstance(figures["stop_on_screen_ms"], int)
