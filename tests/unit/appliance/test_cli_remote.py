"""The remote CLI's pure parts: option parsing, the remotes file, CA pinning, picking a remote."""

from __future__ import annotations

import argparse
import datetime as dt
import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from appliance import cli, cli_connect, remotes
from appliance.cli_connect import ClientError
from appliance.identity import pki


def parse(*argv: str) -> argparse.Namespace:
    return cli._build_parser().parse_args(argv)


def ca_pem(cluster: str = "c1") -> str:
    _, cert = pki.new_ca(cluster, dt.datetime.now(dt.UTC))
    return pki.cert_to_pem(cert).decode()


@pytest.fixture
def config_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for key in list(os.environ):
        if key.startswith("DEBVISOR_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    monkeypatch.chdir(tmp_path)  # no ./.debvisor node here
    return tmp_path / "cfg" / "debvisor"


# -- parsing ------------------------------------------------------------------------------


def test_options_work_before_and_after_the_command() -> None:
    before = parse("--url", "https://a:8443", "--token", "t", "--json", "nodes", "list")
    after = parse("nodes", "list", "--url", "https://a:8443", "--token", "t", "--json")
    for key in ("url", "token", "json", "action"):
        assert getattr(before, key) == getattr(after, key)
    assert after.url == "https://a:8443"
    assert after.json is True


def test_an_option_after_the_command_wins_and_one_before_is_kept() -> None:
    both = parse("--remote", "a", "nodes", "--remote", "b")
    assert both.remote == "b"
    kept = parse("--remote", "a", "--json", "nodes", "list")
    assert kept.remote == "a"
    assert kept.json is True
    nested = parse("audit", "list", "--remote", "lab", "--limit", "5")
    assert (nested.remote, nested.limit) == ("lab", 5)
    tokens = parse("tokens", "create", "ci", "--role", "viewer", "--ca-fingerprint", "ab" * 32)
    assert (tokens.name, tokens.role, tokens.ca_fingerprint) == ("ci", "viewer", "ab" * 32)


def test_bad_arguments_exit_2_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        parse("login", "--expires-days", "soon")
    assert exited.value.code == 2
    assert "not a whole number of days: 'soon'" in capsys.readouterr().err


def test_command_errors_are_one_line_and_exit_1(config_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["remote", "use", "nowhere"]) == 1
    assert capsys.readouterr().err == "debvisor: no remote 'nowhere'; `debvisor remote list` shows them\n"
    assert cli.main(["nodes", "--url", "http://plain:8443"]) == 1
    assert capsys.readouterr().err.startswith("debvisor: not a node URL: 'http://plain:8443'")


# -- fingerprints and URLs ----------------------------------------------------------------


def test_fingerprint_forms_are_normalized() -> None:
    hexed = "3f" * 32
    openssl = "sha256 Fingerprint=" + ":".join(["3F"] * 32)
    assert remotes.normalize_fingerprint(openssl) == hexed
    assert remotes.normalize_fingerprint(f" SHA256:{hexed.upper()} ") == hexed
    for bad in ("3f" * 31, "zz" * 32, "", "md5:" + "3f" * 16):
        with pytest.raises(remotes.RemoteError, match="64 hex digits"):
            remotes.normalize_fingerprint(bad)


def test_urls_are_https_without_a_path() -> None:
    assert remotes.normalize_url("https://10.0.0.11:8443/") == "https://10.0.0.11:8443"
    assert remotes.normalize_url("https://[2001:db8::1]:8443") == "https://[2001:db8::1]:8443"
    for bad in ("http://n:8443", "n:8443", "https://n:8443/api/v1", "https://"):
        with pytest.raises(remotes.RemoteError):
            remotes.normalize_url(bad)


def test_a_ca_is_pinned_only_by_its_own_fingerprint() -> None:
    pem, other = ca_pem("c1"), ca_pem("c2")
    fingerprint = remotes.ca_fingerprint(pem)
    assert remotes.check_pinned(pem, fingerprint) == pem
    with pytest.raises(remotes.RemoteError, match=f"is not the expected {fingerprint}"):
        remotes.check_pinned(other, fingerprint)
    with pytest.raises(remotes.RemoteError, match="not a PEM certificate"):
        remotes.ca_fingerprint("-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n")


def replying(reply: str) -> Callable[[str], str]:
    return lambda _text: reply


def test_first_use_asks_and_trusts_only_a_yes() -> None:
    pem = ca_pem()
    shown: list[str] = []

    def answer(text: str) -> str:
        shown.append(text)
        return "y\n"

    assert cli_connect.ask_trust("https://n:8443", pem, answer) == pem
    assert remotes.ca_fingerprint(pem) in shown[0]
    for reply in ("\n", "n\n", "yes please\n", ""):
        with pytest.raises(ClientError, match="CA not trusted; nothing was sent"):
            cli_connect.ask_trust("https://n:8443", pem, replying(reply))


def test_without_a_terminal_there_is_no_prompt(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli_connect, "interactive", lambda: False)

    def no_network(url: str) -> str:
        raise AssertionError("must not fetch anything")

    monkeypatch.setattr(remotes, "fetch_ca", no_network)
    with pytest.raises(ClientError, match="no cluster CA for https://n:8443: give --ca-fingerprint"):
        cli_connect.first_use_ca("https://n:8443")


# -- the remotes file ---------------------------------------------------------------------


def test_config_is_written_0600_in_a_0700_dir_and_read_back(config_home: Path) -> None:
    config = remotes.RemotesConfig(current="lab")
    config.remotes["lab"] = remotes.Remote(url="https://n:8443", ca_pem=ca_pem(), ca_fingerprint="ab" * 32, token="t")
    remotes.save(config_home, config)
    path = config_home / remotes.CONFIG_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(config_home.stat().st_mode) == 0o700
    assert remotes.load(config_home) == config
    assert sorted(p.name for p in config_home.iterdir()) == [remotes.CONFIG_FILE]  # no temp files left


def test_a_failed_write_leaves_the_old_file(config_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    remotes.save(config_home, remotes.RemotesConfig(current="old"))

    def crash(src: object, dst: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        remotes.save(config_home, remotes.RemotesConfig(current="new"))
    assert remotes.load(config_home).current == "old"
    assert sorted(p.name for p in config_home.iterdir()) == [remotes.CONFIG_FILE]


def test_a_config_others_can_read_is_refused(config_home: Path) -> None:
    remotes.save(config_home, remotes.RemotesConfig())
    path = config_home / remotes.CONFIG_FILE
    path.chmod(0o644)
    with pytest.raises(remotes.RemoteError, match="readable by others and holds credentials: chmod 600"):
        remotes.load(config_home)


def test_a_damaged_config_is_named(config_home: Path) -> None:
    config_home.mkdir(parents=True)
    path = config_home / remotes.CONFIG_FILE
    path.write_text("{not json")
    path.chmod(0o600)
    with pytest.raises(remotes.RemoteError, match="is damaged"):
        remotes.load(config_home)


def test_config_dir_follows_xdg_then_home() -> None:
    assert remotes.config_dir({"XDG_CONFIG_HOME": "/x", "HOME": "/h"}) == Path("/x/debvisor")
    assert remotes.config_dir({"HOME": "/h"}) == Path("/h/.config/debvisor")


# -- which node, CA and token a command uses ----------------------------------------------


def _with_remotes(config_home: Path, pem: str) -> None:
    config = remotes.RemotesConfig(current="lab")
    fp = remotes.ca_fingerprint(pem)
    config.remotes["lab"] = remotes.Remote(url="https://lab:8443", ca_pem=pem, ca_fingerprint=fp, token="lab-token")
    config.remotes["edge"] = remotes.Remote(url="https://edge:8443", ca_pem=pem, ca_fingerprint=fp, token="edge-tok")
    remotes.save(config_home, config)


def test_the_current_remote_gives_url_ca_and_token(config_home: Path) -> None:
    pem = ca_pem()
    _with_remotes(config_home, pem)
    target = cli_connect.resolve(parse("nodes"))
    assert (target.url, target.ca_pem, target.token, target.remote) == ("https://lab:8443", pem, "lab-token", "lab")
    other = cli_connect.resolve(parse("nodes", "--remote", "edge"))
    assert (other.url, other.token) == ("https://edge:8443", "edge-tok")


def test_a_stored_token_never_goes_to_another_url(config_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _with_remotes(config_home, ca_pem())
    monkeypatch.setattr(cli_connect, "interactive", lambda: False)
    with pytest.raises(ClientError, match="no cluster CA for https://elsewhere:8443"):
        cli_connect.resolve(parse("nodes", "--url", "https://elsewhere:8443"))
    args = parse("nodes", "--url", "https://elsewhere:8443", "--ca", str(config_home / "missing.pem"))
    with pytest.raises(ClientError, match="no cluster CA at"):
        cli_connect.resolve(args)
    with pytest.raises(ClientError, match="is not remote lab's URL"):
        cli_connect.resolve(parse("nodes", "--remote", "lab", "--url", "https://elsewhere:8443"))
    same = cli_connect.resolve(parse("nodes", "--url", "https://edge:8443/"))
    assert (same.remote, same.token) == ("edge", "edge-tok")


def test_environment_overrides_keep_working(config_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pem = ca_pem()
    _with_remotes(config_home, pem)
    ca_file = config_home.parent / "ca.crt"
    ca_file.write_text(pem)
    monkeypatch.setenv("DEBVISOR_URL", "https://env:8443")
    monkeypatch.setenv("DEBVISOR_TOKEN", "env-token")
    monkeypatch.setenv("DEBVISOR_CA", str(ca_file))
    target = cli_connect.resolve(parse("nodes"))
    assert (target.url, target.token, target.remote) == ("https://env:8443", "env-token", None)
    flagged = cli_connect.resolve(parse("nodes", "--token", "flag-token"))
    assert flagged.token == "flag-token"
    monkeypatch.delenv("DEBVISOR_URL")
    monkeypatch.setenv("DEBVISOR_REMOTE", "edge")
    assert cli_connect.resolve(parse("nodes")).url == "https://edge:8443"


def test_a_ca_file_is_checked_against_a_given_fingerprint(config_home: Path) -> None:
    pem = ca_pem()
    ca_file = config_home.parent / "ca.crt"
    ca_file.parent.mkdir(parents=True, exist_ok=True)
    ca_file.write_text(pem)
    args = parse("nodes", "--url", "https://n:8443", "--ca", str(ca_file), "--ca-fingerprint", "00" * 32)
    with pytest.raises(ClientError, match="is not the expected 0000"):
        cli_connect.resolve(args)


def test_remove_keeps_a_remote_whose_token_cannot_be_revoked_unless_forced(
    config_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pem = ca_pem()
    config = remotes.RemotesConfig(current="gone")
    config.remotes["gone"] = remotes.Remote(  # nothing listens on port 1 of loopback
        url="https://127.0.0.1:1", ca_pem=pem, ca_fingerprint=remotes.ca_fingerprint(pem), token="t", token_id="id1"
    )
    remotes.save(config_home, config)
    assert cli.main(["remote", "remove", "gone"]) == 1
    assert "cannot revoke the remote's CLI token id1" in capsys.readouterr().err
    assert "gone" in remotes.load(config_home).remotes
    assert cli.main(["remote", "remove", "gone", "--force"]) == 0
    assert "token id1 NOT revoked" in capsys.readouterr().err
    assert remotes.load(config_home) == remotes.RemotesConfig()
