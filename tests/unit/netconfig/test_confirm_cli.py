"""Commit-confirmed state machine and the `debvisor net` command, on the simulated kernel."""

from __future__ import annotations

import argparse
import asyncio
import io
import subprocess
import threading
import time
from pathlib import Path

import pytest

from netconfig import cli
from netconfig.confirm import ConfirmError, ConfirmManager, NetConfig, PingCheck, RolledBack
from netconfig.load import loads
from netconfig.model import Nic
from netconfig.state import StateDir
from netconfig.validate import ConfigError
from tests.kit.clock import FakeClock
from tests.kit.wait import wait_until
from tests.unit.netconfig.fakekernel import FakeKernel

BASE = loads('nics: [{name: eth0, mac: "02:00:00:00:00:01", addresses: [10.0.0.1/24]}]')
CHANGE = loads(
    'nics: [{name: eth0, mac: "02:00:00:00:00:01", addresses: [10.0.0.2/24]}]\nbridges: [{name: br0, mtu: 1400}]'
)


def setup(tmp_path: Path, check: bool = True) -> tuple[FakeKernel, NetConfig, FakeClock]:
    kernel = FakeKernel([Nic(name="eth0", mac="02:00:00:00:00:01", mtu=1500)])
    clock = FakeClock(1000.0)
    core = NetConfig(kernel, StateDir(tmp_path), clock=clock, check=lambda _address: check)
    core.apply_now(BASE)
    return kernel, core, clock


def test_expiry_rolls_back_and_confirm_keeps(tmp_path: Path) -> None:
    kernel, core, clock = setup(tmp_path)
    core.begin(CHANGE, confirm_within=120)
    assert "br0" in kernel.specs
    assert core.status().remaining == 120
    clock.now += 119
    assert not core.expire()
    clock.now += 1
    assert core.expire()
    assert "br0" not in kernel.specs
    assert kernel.specs["eth0"].addresses == ("10.0.0.1/24",)
    assert core.state.applied() == BASE

    core.begin(CHANGE, confirm_within=120)
    assert core.confirm().result == "confirmed"
    clock.now += 500
    assert not core.expire()
    assert core.state.applied() == CHANGE
    with pytest.raises(ConfirmError, match="no change is waiting"):
        core.confirm()


def test_a_failed_check_rolls_back_at_once(tmp_path: Path) -> None:
    kernel, core, _clock = setup(tmp_path, check=False)
    with pytest.raises(RolledBack, match=r"192\.0\.2\.1 did not answer"):
        core.begin(CHANGE, confirm_within=120, check="192.0.2.1")
    assert "br0" not in kernel.specs
    assert core.state.pending() is None


def test_a_second_change_waits_for_the_first(tmp_path: Path) -> None:
    _kernel, core, _clock = setup(tmp_path)
    core.begin(CHANGE, confirm_within=120)
    with pytest.raises(ConfirmError, match="already waiting"):
        core.begin(BASE, confirm_within=120)
    with pytest.raises(ConfirmError, match="waiting for confirmation"):
        core.apply_now(BASE)


async def test_manager_rolls_back_at_the_deadline_and_resumes_after_restart(tmp_path: Path) -> None:
    kernel, core, _clock = setup(tmp_path)
    core.clock = time.time
    manager = ConfirmManager(core)
    await manager.start()
    await manager.apply(CHANGE, confirm_within=0.3)
    await asyncio.sleep(1.5)
    assert (await manager.status()).pending is None
    assert "br0" not in kernel.specs
    await manager.close()

    core.begin(CHANGE, confirm_within=0.5)  # a service that stops inside the window
    restarted = ConfirmManager(NetConfig(kernel, StateDir(tmp_path)))
    await restarted.start()
    assert (await restarted.status()).pending == CHANGE
    await asyncio.sleep(1.6)
    assert (await restarted.status()).pending is None
    assert "br0" not in kernel.specs
    await restarted.close()


def run_cli(kernel: FakeKernel, *argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    parser = argparse.ArgumentParser(prog="debvisor")
    commands = parser.add_subparsers(dest="command", required=True)
    cli.add_net_parser(commands, adapter_factory=lambda _netns: kernel)
    args = parser.parse_args(list(argv))
    code = cli.run(args, adapter_factory=lambda _netns: kernel, out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def test_cli_plan_show_apply_confirm(tmp_path: Path) -> None:
    kernel = FakeKernel([Nic(name="eth0", mac="02:00:00:00:00:01", mtu=1500)])
    data = ["--data-dir", str(tmp_path)]
    config = tmp_path / "net.yaml"
    config.write_text(
        'bridges: [{name: br0, addresses: [10.0.0.1/24]}]\nnics: [{name: eth0, mac: "02:00:00:00:00:01"}]'
    )

    code, out, _ = run_cli(kernel, "net", "plan", str(config), *data)
    assert code == 0
    assert out.splitlines()[0] == "ip link add br0 type bridge stp_state 0 vlan_filtering 0"
    assert "br0" not in kernel.specs  # a plan is a dry run

    results: list[tuple[int, str, str]] = []
    waiter = threading.Thread(
        target=lambda: results.append(run_cli(kernel, "net", "apply", str(config), "--confirm-within", "30", *data))
    )
    waiter.start()
    wait_until(lambda: StateDir(tmp_path / "netconfig").pending() is not None, 10, what="the pending change")
    assert run_cli(kernel, "net", "confirm", *data)[:2] == (0, "confirmed\n")
    waiter.join(timeout=10)
    code, out, err = results[0]
    assert (code, err) == (0, "")
    assert out.endswith("confirmed\n")
    assert "br0" in kernel.specs

    code, out, _ = run_cli(kernel, "net", "show", *data)
    assert "name: br0" in out
    assert "name: eth0" in out


def test_cli_unconfirmed_apply_rolls_back_and_errors_are_one_line(tmp_path: Path) -> None:
    kernel = FakeKernel([Nic(name="eth0", mac="02:00:00:00:00:01", mtu=1500)])
    data = ["--data-dir", str(tmp_path)]
    config = tmp_path / "net.yaml"
    config.write_text("bridges: [{name: br0}]")
    code, _out, err = run_cli(kernel, "net", "apply", str(config), "--confirm-within", "0.5", *data)
    assert code == 1
    assert err == "debvisor: the change was rolled back (not confirmed in time)\n"
    assert "br0" not in kernel.specs

    config.write_text("vlans: [{name: v, link: eth0, id: 5000}]")
    code, _out, err = run_cli(kernel, "net", "plan", str(config), *data)
    assert code == 1
    assert err.count("\n") == 1
    assert err.startswith("debvisor: ") and "$.vlans[0].id: 5000 is outside 1\u20134094" in err  # noqa: PT018
    assert run_cli(kernel, "net", "rollback", *data)[2] == "debvisor: no change is waiting for confirmation\n"


@pytest.mark.parametrize("bad", ["-f", "--help", "-c100000", "example.org", "10.0.0.1 -f", "fe80::1%eth0", "", "1.2.3"])
def test_the_check_address_must_be_an_ip_literal(tmp_path: Path, bad: str) -> None:
    kernel, core, _clock = setup(tmp_path)
    with pytest.raises(ConfigError, match=r"\$\.check: .* is not an IPv4 or IPv6 address"):
        core.begin(CHANGE, confirm_within=120, check=bad)
    assert "br0" not in kernel.specs  # refused before anything changed
    assert core.state.pending() is None


def test_the_check_address_is_canonical(tmp_path: Path) -> None:
    asked: list[str] = []

    def check(address: str) -> bool:
        asked.append(address)
        return True

    kernel = FakeKernel([Nic(name="eth0", mac="02:00:00:00:00:01", mtu=1500)])
    core = NetConfig(kernel, StateDir(tmp_path), clock=FakeClock(1000.0), check=check)
    pending, _ = core.begin(BASE, confirm_within=120, check="2001:DB8:0::1")
    assert asked == ["2001:db8::1"]
    assert pending.check == "2001:db8::1"


def test_ping_gets_the_address_after_a_double_dash(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[list[str]] = []

    def fake_run(argv: list[str], **_kw: object) -> subprocess.CompletedProcess[bytes]:
        calls.append(argv)
        return subprocess.CompletedProcess(argv, 0)

    monkeypatch.setattr(subprocess, "run", fake_run)
    assert PingCheck(netns="lab")("192.0.2.1")
    assert calls[0][-2:] == ["--", "192.0.2.1"]
    assert calls[0][:4] == ["ip", "netns", "exec", "lab"]
    assert not PingCheck()("-f")  # never run: not an address
    assert len(calls) == 1


@pytest.mark.parametrize("given", ["--check=-f", "--check=--help", "--check=example.org"])
def test_cli_check_must_be_an_address(tmp_path: Path, capsys: pytest.CaptureFixture[str], given: str) -> None:
    kernel = FakeKernel([Nic(name="eth0", mac="02:00:00:00:00:01", mtu=1500)])
    config = tmp_path / "net.yaml"
    config.write_text("bridges: [{name: br0}]")
    with pytest.raises(SystemExit) as exited:
        run_cli(kernel, "net", "apply", str(config), given, "--data-dir", str(tmp_path))
    assert exited.value.code == 2
    err = capsys.readouterr().err.splitlines()[-1]
    value = given.removeprefix("--check=")
    assert err == (
        f"debvisor net apply: error: argument --check: {value!r} is not an IPv4 or IPv6 address "
        "(such as 192.0.2.1 or 2001:db8::1)"
    )
    assert "br0" not in kernel.specs
