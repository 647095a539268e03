"""`debvisor --url ... nodes|cluster|authorities|users|audit list`: the REST API from the command line
(and `debvisor authorities set`, which is not an API call but root on the node's console)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.nodeproc import DEBVISOR, NodeProcess

pytestmark = pytest.mark.integration


def cli(node: NodeProcess, *args: str, stdin: str = "", token: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DEBVISOR_URL": node.url, "DEBVISOR_CA": str(node.data_dir / "pki" / "ca.crt")}
    env["DEBVISOR_TOKEN"] = token if token is not None else node.admin_token()
    return subprocess.run(
        [*DEBVISOR, *args], input=stdin, capture_output=True, text=True, env=env, timeout=30, check=False
    )


def test_operator_commands_over_the_api(tmp_path: Path) -> None:
    with NodeProcess(tmp_path / "node") as node:
        node.wait_ready()
        nodes = cli(node, "nodes")
        assert nodes.returncode == 0, nodes.stderr
        assert nodes.stdout.splitlines()[0].split() == ["NAME", "STATE", "API", "VERSION"]
        assert nodes.stdout.splitlines()[1].split()[:2] == ["n1", "alive"]
        shown = cli(node, "nodes", "show", "n1")
        assert shown.stdout.startswith("name      n1")
        summary = json.loads(cli(node, "--json", "cluster", "--fresh").stdout)
        assert summary["states"] == {"alive": 1}
        assert summary["fresh"][0]["answered"] is True
        added = cli(node, "users", "add", "ops", "--role", "operator", stdin="a good long password\n")
        assert added.returncode == 0, added.stderr
        assert added.stdout.strip() == "created ops (operator)"
        listed = cli(node, "users")
        assert any(line.split()[:2] == ["ops", "operator"] for line in listed.stdout.splitlines())
        audit = cli(node, "audit", "list", "--action", "user.")
        assert "user.create" in audit.stdout
        assert "ops" in audit.stdout

        authorities = cli(node, "authorities")
        assert authorities.stdout.splitlines()[1].split()[:2] == ["n1", "True"], authorities.stdout
        # Changing the set is a console command on the node's data dir, with no API credential.
        console = [*DEBVISOR, "authorities", "set", "--data-dir", str(node.data_dir)]
        env = {k: v for k, v in os.environ.items() if not k.startswith("DEBVISOR_")}
        refused = subprocess.run(
            [*console, "n1", "nobody"], capture_output=True, text=True, env=env, timeout=30, check=False
        )
        assert refused.returncode == 1
        assert refused.stderr.strip() == "debvisor: not members of this cluster: nobody"
        kept = subprocess.run([*console, "n1"], capture_output=True, text=True, env=env, timeout=30, check=False)
        assert kept.returncode == 0, kept.stderr
        assert kept.stdout.startswith("authorities now n1; added -; removed -")
        changes = json.loads(cli(node, "--json", "audit", "list", "--action", "cluster.authority.set").stdout)
        outcomes = sorted((e["user"], e["source"], e["outcome"]) for e in changes["entries"])
        assert outcomes == [("root", "console", "failed"), ("root", "console", "success")], changes

        missing = cli(node, "nodes", "show", "nobody")
        assert missing.returncode == 1
        assert missing.stderr.strip() == "debvisor: 404: no node 'nobody' in this cluster"
        denied = cli(node, "nodes", token="dvt_0123456789abcdef_nope")
        assert denied.returncode == 1
        assert denied.stderr.startswith("debvisor: 401: ")
        assert "Traceback" not in missing.stderr + denied.stderr


def test_client_needs_a_url_and_credentials() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEBVISOR_")}
    result = subprocess.run([sys.executable, "-m", "appliance", "nodes"], capture_output=True, text=True, env=env,
                            timeout=30, check=False)  # fmt: skip
    assert result.returncode == 1
    assert "give --url" in result.stderr
