"""`debvisor --url ... nodes|cluster|authorities|users|audit list`: the REST API from the command line."""

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
        refused = cli(node, "authorities", "set", "n1", "nobody")
        assert refused.returncode == 1
        assert refused.stderr.strip() == "debvisor: 422: not live members of this cluster: nobody"
        kept = cli(node, "authorities", "set", "n1")
        assert kept.returncode == 0, kept.stderr
        assert "cluster.authority.set" in cli(node, "audit", "list", "--action", "cluster.authority.").stdout

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
