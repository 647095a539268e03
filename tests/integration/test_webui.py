"""The web UI end to end: a real `debvisor serve` node on loopback, Debian's Chromium driven by
Playwright (playwright-core from webui/node_modules: browsers cannot be downloaded here).

The browser side is a Node script (webui/e2e/first-login.mjs): first login with the forced
password change, the dashboard, a change made elsewhere appearing live, an ended session
going back to the login page and then to where the user was, logout; axe-core on every page
(no serious or critical violation) and no Content-Security-Policy violation. Screenshots are
kept in build/webui-e2e/ (or $DEBVISOR_ARTEFACTS) as the run's artefacts.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.kit.need import require, require_tool
from tests.nodeproc import NodeProcess

pytestmark = [pytest.mark.integration, pytest.mark.browser]

ROOT = Path(__file__).resolve().parents[2]
WEBUI = ROOT / "webui"
DIST = ROOT / "appliance" / "webui" / "dist"
CHROMIUM = "/usr/bin/chromium"


def _require_browser_kit() -> None:
    require_tool("node")
    require(Path(CHROMIUM).exists(), "Debian's chromium is missing (see .ci/packages)")
    require((DIST / "index.html").exists(), "the web UI is not built (.ci/setup builds it)")
    require((WEBUI / "node_modules" / "playwright-core").is_dir(), "webui/node_modules is missing (.ci/setup)")


def _artefacts(name: str) -> Path:
    base = Path(os.environ.get("DEBVISOR_ARTEFACTS", ROOT / "build" / "webui-e2e"))
    folder = base / name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


def _run_script(script: str, node: NodeProcess, artefacts: Path, extra: dict[str, str]) -> dict[str, object]:
    env = {
        **os.environ,
        "DEBVISOR_URL": node.url,
        "DEBVISOR_ARTEFACTS": str(artefacts),
        "CHROMIUM": CHROMIUM,
        "NODE_EXTRA_CA_CERTS": str(node.data_dir / "pki" / "ca.crt"),
        **extra,
    }
    done = subprocess.run(
        ["node", str(WEBUI / "e2e" / script)],
        cwd=WEBUI,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    report = f"{script} failed:\n{done.stdout}\n{done.stderr}\n{node.stderr()[-3000:]}"
    assert done.returncode == 0, report
    assert lines, report
    result: dict[str, object] = json.loads(lines[-1])
    return result


def test_first_login_with_the_forced_change_lands_on_a_live_dashboard(tmp_path: Path) -> None:
    _require_browser_kit()
    artefacts = _artefacts("first-login")
    with NodeProcess(tmp_path / "node") as node:
        node.wait_ready()
        with node.client() as client:  # the page itself, as served: verified against the CA
            page = client.get("/", headers={"Accept-Encoding": "br"})
            assert page.status_code == 200
            assert page.headers["content-encoding"] == "br"
            assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
            assert page.headers["cache-control"] == "no-cache"
        initial = (node.data_dir / "initial-admin-password").read_text().strip()
        figures = _run_script(
            "first-login.mjs",
            node,
            artefacts,
            {"DEBVISOR_INITIAL_PASSWORD": initial, "DEBVISOR_NEW_PASSWORD": "a new admin password for e2e"},
        )
    assert figures["ok"] is True
    shots = [Path(str(p)) for p in figures["screenshots"]]  # type: ignore[attr-defined]
    assert len(shots) >= 4
    assert all(p.stat().st_size > 5000 for p in shots)
    event_ms = figures["event_to_screen_ms"]
    assert isinstance(event_ms, int)
    assert event_ms < 5000
    print(f"webui e2e figures: {json.dumps(figures)}")
