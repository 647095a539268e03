"""docs/cli.md, walked as a laptop operator would, against a real node process.

The operator has only the node's URL and the CA fingerprint the node prints. HOME and
XDG_CONFIG_HOME point into the test's directory and the working directory holds no node, so
nothing but what the walkthrough stores is known to the CLI. Each command the test runs is
first looked up in docs/cli.md (with the doc's placeholders), so doc and test cannot drift.
"""

from __future__ import annotations

import json
import os
import pty
import re
import select
import stat
import subprocess
import time
from pathlib import Path

import pytest

from tests.nodeproc import DEBVISOR, NodeProcess

pytestmark = pytest.mark.integration

DOC = (Path(__file__).parents[2] / "docs" / "cli.md").read_text()
# The doc's placeholders, replaced by this test's values.
DOC_URL = "https://10.0.0.11:8443"
DOC_FINGERPRINT = "3f9a...e1"


class Laptop:
    """A user account with an empty config, running `debvisor` as the doc shows it."""

    def __init__(self, home: Path, url: str, fingerprint: str) -> None:
        home.mkdir()
        self.home = home
        self.config = home / ".config" / "debvisor" / "remotes.json"
        self.url, self.fingerprint = url, fingerprint
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("DEBVISOR_")}
        self.env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"))

    def run(self, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*DEBVISOR, *args], input=stdin, capture_output=True, text=True, env=self.env, cwd=self.home,
            timeout=60, check=False,
        )  # fmt: skip

    def documented(self, line: str, *extra: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        """Run a command line as docs/cli.md shows it (after the doc's placeholders), plus `extra`
        (`--password-stdin`, which the doc explains, in place of a terminal)."""
        assert f"{line}\n" in DOC, f"docs/cli.md no longer shows: {line}"
        actual = line.replace(DOC_URL, self.url).replace(DOC_FINGERPRINT, self.fingerprint)
        return self.run(*actual.split()[1:], *extra, stdin=stdin)

    def stored(self) -> dict[str, object]:
        remote: dict[str, object] = json.loads(self.config.read_text())["remotes"]["lab"]
        return remote


def printed_fingerprint(node: NodeProcess) -> str:
    """The ca_fingerprint of the node's `serving` log line, as docs/cli.md step 1 finds it."""
    found = re.findall(r'"ca_fingerprint": *"([0-9a-f]*)"', node.stderr())
    assert found, node.stderr()[-2000:]
    return str(found[-1])


def ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return result


def test_laptop_from_url_and_fingerprint_to_tokens_and_logout(tmp_path: Path) -> None:
    with NodeProcess(tmp_path / "node") as node:
        node.wait_ready()
        initial = (node.data_dir / "initial-admin-password").read_text().strip()
        laptop = Laptop(tmp_path / "home", node.url, printed_fingerprint(node))
        new, newer = initial + "-mine", initial + "-mine-again"

        # A wrong fingerprint: refused before anything is stored or any credential sent (a bogus
        # token that reached the node would have been answered 401).
        wrong = laptop.run("remote", "add", "lab", node.url, "--ca-fingerprint", "00" * 32)
        assert wrong.returncode == 1
        assert "not the expected " + "00" * 32 in wrong.stderr
        assert not laptop.config.exists()
        bogus = laptop.run("nodes", "list", "--url", node.url, "--ca-fingerprint", "ab" * 32,
                           "--token", "dvt_0123456789abcdef_nope")  # fmt: skip
        assert bogus.returncode == 1
        assert bogus.stderr.startswith("debvisor: the node's CA fingerprint "), bogus.stderr
        # No CA and no terminal: a clear error, never silent trust.
        blind = laptop.run("nodes", "list", "--url", node.url, "--token", "dvt_0123456789abcdef_nope")
        assert blind.returncode == 1
        assert blind.stderr.startswith(f"debvisor: no cluster CA for {node.url}: give --ca-fingerprint")

        # 2. remote add, with the fingerprint as the node printed it.
        added = ok(laptop.documented(f"debvisor remote add lab {DOC_URL} --ca-fingerprint {DOC_FINGERPRINT}"))
        assert "(current)" in added.stdout
        assert stat.S_IMODE(laptop.config.stat().st_mode) == 0o600
        assert stat.S_IMODE(laptop.config.parent.stat().st_mode) == 0o700
        assert laptop.stored()["ca_pem"] == (node.data_dir / "pki" / "ca.crt").read_text()
        listed = ok(laptop.documented("debvisor remote list"))
        assert listed.stdout.splitlines()[1].split()[:3] == ["*", "lab", node.url]

        # 3. login as the bootstrap admin, forced to change the initial password.
        login = ok(laptop.documented("debvisor login admin --password-stdin", stdin=f"{initial}\n{new}\n"))
        assert "password changed" in login.stderr
        assert login.stdout.startswith("logged in to lab as admin (admin); token ")
        cli_token = str(laptop.stored()["token"])
        assert cli_token.startswith("dvt_")
        assert cli_token not in login.stdout + login.stderr
        assert stat.S_IMODE(laptop.config.stat().st_mode) == 0o600
        with node.client() as client:  # the new password is the one that works now
            assert client.post("/api/v1/auth/login", json={"username": "admin", "password": new}).status_code == 200

        # 4. use it, options before or after the command.
        nodes = ok(laptop.documented("debvisor nodes list"))
        assert nodes.stdout.splitlines()[1].split()[:2] == ["n1", "alive"]
        after = ok(laptop.run("nodes", "list", "--remote", "lab", "--json"))
        before = ok(laptop.run("--remote", "lab", "--json", "nodes", "list"))
        assert json.loads(after.stdout)[0]["name"] == json.loads(before.stdout)[0]["name"] == "n1"

        # 5. tokens: the secret is printed once, listed without it, usable, revocable.
        created = ok(laptop.documented("debvisor tokens create prometheus --role viewer --expires-days 365",
                                       "--password-stdin", stdin=f"{new}\n"))  # fmt: skip
        assert "shown once" in created.stderr
        secret = created.stdout.splitlines()[-1]
        token_id = re.search(r"created token (\w+) \('prometheus', role viewer, expires 20", created.stdout)
        assert token_id is not None, created.stdout
        assert secret.startswith(f"dvt_{token_id[1]}_")
        tokens = ok(laptop.documented("debvisor tokens list"))
        assert secret not in tokens.stdout
        rows = {line.split()[0]: line for line in tokens.stdout.splitlines()[1:]}
        assert rows[token_id[1]].split()[1:4] == ["prometheus", "admin", "viewer"]
        assert str(laptop.stored()["token_id"]) in rows
        viewer = ok(laptop.run("--json", "nodes", "--token", secret))
        assert json.loads(viewer.stdout)[0]["name"] == "n1"
        ok(laptop.run("tokens", "revoke", token_id[1]))
        gone = laptop.run("nodes", "--token", secret)
        assert gone.returncode == 1
        assert gone.stderr.startswith("debvisor: 401: ")

        # 6. passwd through a fresh password session; the CLI's token stays valid.
        ok(laptop.documented("debvisor passwd", "--password-stdin", stdin=f"{new}\n{newer}\n"))
        ok(laptop.documented("debvisor nodes list"))
        stale = laptop.run("passwd", "--password-stdin", stdin=f"{new}\n{new}-x\n")
        assert stale.returncode == 1
        assert stale.stderr.startswith("debvisor: 401: ")

        # Logging in again replaces the CLI's token and revokes the previous one.
        ok(laptop.documented("debvisor login admin --password-stdin", stdin=f"{newer}\n"))
        replaced = laptop.run("nodes", "--token", cli_token)
        assert replaced.returncode == 1
        assert replaced.stderr.startswith("debvisor: 401: ")
        cli_token = str(laptop.stored()["token"])
        ok(laptop.documented("debvisor nodes list"))

        # logout revokes the stored token and forgets it; the remote stays.
        cli_token_id = laptop.stored()["token_id"]
        logout = ok(laptop.documented("debvisor logout"))
        assert logout.stdout.strip() == f"logged out of lab: token {cli_token_id} revoked"
        assert laptop.stored()["token"] is None
        revoked = laptop.run("nodes", "--token", cli_token)
        assert revoked.returncode == 1
        assert revoked.stderr.startswith("debvisor: 401: ")
        needs_login = laptop.run("nodes", "list")
        assert needs_login.returncode == 1
        assert "`debvisor login` once" in needs_login.stderr
        shown = json.loads(ok(laptop.run("remote", "list", "--json")).stdout)
        assert shown == [{"name": "lab", "url": node.url, "ca_fingerprint": laptop.fingerprint, "user": "admin",
                          "logged_in": False, "current": True}]  # fmt: skip
        for secret_text in (initial, new, newer, cli_token, secret):
            assert secret_text not in laptop.run("remote", "list").stdout

        # Removing a remote revokes its CLI token too: nothing valid is left behind.
        ok(laptop.run("login", "admin", "--password-stdin", stdin=f"{newer}\n"))
        last_token = str(laptop.stored()["token"])
        removed = ok(laptop.documented("debvisor remote remove lab"))
        assert removed.stdout.strip().endswith("is revoked")
        assert json.loads(laptop.config.read_text())["remotes"] == {}
        assert laptop.run("nodes", "--url", node.url, "--ca", str(node.data_dir / "pki" / "ca.crt"),
                          "--token", last_token).stderr.startswith("debvisor: 401: ")  # fmt: skip


def read_until(fd: int, expected: bytes, shown: bytearray, deadline: float) -> bool:
    """Read the terminal into `shown` until `expected` appears; False at EOF or the deadline."""
    while expected not in shown:
        if time.monotonic() > deadline:
            return False
        ready, _, _ = select.select([fd], [], [], 1.0)
        if not ready:
            continue
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # EIO: the child closed the terminal
            return False
        if not chunk:
            return False
        shown += chunk
    return True


def on_terminal(laptop: Laptop, args: list[str], script: list[tuple[str, str]]) -> tuple[int, str]:
    """Run `debvisor ARGS` on a pseudo-terminal; for each (prompt, reply) wait for the prompt,
    then type the reply. Returns the exit code and everything the terminal showed."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: its controlling terminal is the pty, as in an operator's shell
        try:
            os.chdir(laptop.home)
            os.execve(DEBVISOR[0], [*DEBVISOR, *args], laptop.env)
        finally:
            os._exit(127)  # exec failed: never return into pytest in the child
    shown = bytearray()
    deadline = time.monotonic() + 60
    try:
        for expected, reply in script:
            if not read_until(fd, expected.encode(), shown, deadline):
                break
            os.write(fd, reply.encode())
        read_until(fd, b"\0end of output", shown, deadline)  # until the child exits
    finally:
        os.close(fd)
        _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), shown.decode(errors="replace")


def test_on_a_terminal_the_cli_shows_the_fingerprint_asks_and_never_echoes(tmp_path: Path) -> None:
    with NodeProcess(tmp_path / "node") as node:
        node.wait_ready()
        initial = (node.data_dir / "initial-admin-password").read_text().strip()
        fingerprint = printed_fingerprint(node)
        laptop = Laptop(tmp_path / "home", node.url, fingerprint)
        trust = "Trust it? [y/N] "

        code, shown = on_terminal(laptop, ["remote", "add", "lab", node.url], [(trust, "n\n")])
        assert code == 1, shown
        assert fingerprint in shown
        assert "CA not trusted; nothing was sent to the node" in shown
        assert not laptop.config.exists()

        code, shown = on_terminal(laptop, ["remote", "add", "lab", node.url], [(trust, "y\n")])
        assert code == 0, shown
        assert laptop.stored()["ca_fingerprint"] == fingerprint

        new = initial + "-typed"
        script = [("Password for admin", initial + "\n"), ("New password: ", new + "\n"),
                  ("Repeat the new password: ", new + "\n")]  # fmt: skip
        code, shown = on_terminal(laptop, ["login", "admin"], script)
        assert code == 0, shown
        assert "logged in to lab as admin" in shown
        assert initial not in shown  # getpass: nothing typed is echoed
        assert new not in shown
        ok(laptop.run("nodes", "list"))
