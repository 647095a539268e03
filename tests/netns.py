"""A throwaway L2 network in network namespaces, for integration tests and gossip benchmarks.

Why it exists: cluster code (gossip, failure detection, joins) has to be tested with real
sockets on real, separate IP addresses, with packets that can be lost and hosts that can go
silent. Loopback gives neither. A `Lab` builds, in well under a second, one "switch"
namespace holding a Linux bridge and N host namespaces, each wired to the bridge by a veth
pair and given one IPv4 address (host i gets the subnet's address 10 + i, e.g. 10.97.0.10).
Processes started through `Host.popen`/`Host.run` live inside a host namespace. Faults
(random loss per direction, total isolation) are nftables rules on the host's bridge port in
the switch namespace (the host kernel has no netem, see /work/shared/TESTBED.md). They are
deliberately not in the host's own output hook: an nftables drop there makes the sender's
sendto() fail with EPERM, so the software under test would see every "lost" packet as a local
error, which a lossy wire never produces.

Safety rules it enforces (TESTBED.md, "Addresses inside test namespaces"): the root
namespace would route the test subnet out through its default gateway, off the machine, so
while a Lab exists it holds `ip route add unreachable SUBNET metric M` in the root namespace
(a per-Lab metric, so Labs running in parallel on the same subnet do not remove each
other's route). Clients must run inside a host namespace, never in the root namespace.

Everything is named `dv` + 6 random hex characters + a suffix, so parallel runs and leftovers
of a killed run never collide. On exit, even after an exception, a Lab terminates every
process it started (SIGTERM, a bounded wait, SIGKILL, reap), kills anything else still
inside its namespaces, deletes its nft tables, links and namespaces and its root route;
every cleanup step tolerates things already being gone.

Deliberately left out:
- Delay, jitter, reordering and bandwidth limits (need netem in a guest kernel or a
  userspace proxy); only loss (random, per direction) and total isolation are offered.
- IPv6 (disabled in the host namespaces by default so that byte counters are not polluted by
  router solicitations and MLD; pass `ipv6=True` to keep it), VLANs, routing between
  subnets, and any path to the outside world (hosts have no default route).
- Recovery from a SIGKILLed test process: its namespaces stay until someone runs
  `ip netns del`; the random names only guarantee they do not get in the way.
- Mount, PID or user namespaces: a process in a host sees the machine's filesystem and
  process table; only the network is separate.
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from tests.kit.procs import signal_process, stop_process

DEFAULT_SUBNET = "10.97.0.0/24"
FIRST_HOST_OFFSET = 10
IFNAMSIZ_MAX = 15  # Linux interface names are at most 15 characters
_COMMAND_TIMEOUT = 15.0  # no single `ip`/`nft` call may take longer than this


def _run(argv: list[str], *, input_text: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run an administrative command (ip, nft) with a bounded time; raise with its stderr on failure."""
    result = subprocess.run(
        argv, input=input_text, capture_output=True, text=True, timeout=_COMMAND_TIMEOUT, check=False
    )
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({result.returncode}): {result.stderr.strip()}")
    return result


def _quiet(argv: list[str], input_text: str | None = None) -> None:
    """Run a cleanup command, ignoring failure (the thing may already be gone)."""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        _run(argv, input_text=input_text, check=False)


@functools.cache
def available() -> str | None:
    """None if this machine can run a Lab (root, `ip`, `nft`, working netns + nftables), else why not."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", "nft"):
        if shutil.which(tool) is None:
            return f"`{tool}` is not installed (apt-get install {'iproute2' if tool == 'ip' else 'nftables'})"
    probe = f"dv{secrets.token_hex(3)}-probe"
    try:
        created = _run(["ip", "netns", "add", probe], check=False)
        if created.returncode != 0:
            return f"cannot create a network namespace: {created.stderr.strip()}"
        table = 'table bridge probe {\n chain c { type filter hook forward priority 0; iifname "x" drop\n }\n}\n'
        nft = _run(["ip", "netns", "exec", probe, "nft", "-f", "-"], input_text=table, check=False)
        if nft.returncode != 0:
            return f"nftables does not work inside a namespace: {nft.stderr.strip()}"
    except (OSError, subprocess.SubprocessError) as exc:
        return f"network namespace probe failed: {exc}"
    finally:
        _quiet(["ip", "netns", "del", probe])
    return None


@dataclass(frozen=True)
class LinkStats:
    """Counters of a host's veth interface, as seen inside the host (tx = sent by the host)."""

    tx_bytes: int
    rx_bytes: int
    tx_packets: int
    rx_packets: int


class Host:
    """One host namespace of a `Lab`: an address on the bridge, processes, and fault injection."""

    def __init__(self, lab: Lab, index: int, address: str) -> None:
        self.lab = lab
        self.index = index
        self.name = f"h{index}"
        self.netns = f"{lab.prefix}-h{index}"
        self.ifname = f"{lab.prefix}h{index}"  # inside the host namespace
        self.peer_ifname = f"{lab.prefix}s{index}"  # inside the switch namespace, a bridge port
        self.address = address
        self.loss_in = 0  # percent of IP packets to the host dropped
        self.loss_out = 0  # percent of IP packets from the host dropped
        self.isolated = False
        self.closed_ports: set[int] = set()  # TCP ports whose connection attempts to the host are dropped

    def __repr__(self) -> str:
        return f"Host({self.name}, {self.address}, netns={self.netns})"

    # -- processes ---------------------------------------------------------------------------

    def command(self, argv: list[str]) -> list[str]:
        """`argv` prefixed so that it runs inside this host's network namespace."""
        return ["ip", "netns", "exec", self.netns, *argv]

    def popen(self, argv: list[str], **kwargs: Any) -> subprocess.Popen[Any]:
        """Start `argv` inside this host; the Lab terminates and reaps it on exit.

        Keyword arguments go to `subprocess.Popen`. Defaults: stdin is /dev/null and the child
        starts a new session, so cleanup can signal its whole process group.
        """
        return self.lab._popen(self.command(argv), **kwargs)

    def run(
        self, argv: list[str], *, timeout: float = 30.0, check: bool = False, input_text: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run `argv` inside this host to completion (killed at `timeout`); output captured as text."""
        return subprocess.run(
            self.command(argv), input=input_text, capture_output=True, text=True, timeout=timeout, check=check
        )

    def kill_process(self, proc: subprocess.Popen[Any], sig: int = signal.SIGKILL, *, wait: float = 5.0) -> int | None:
        """Send `sig` to a process started by `popen`, wait up to `wait` s; its exit code (None: still running)."""
        return stop_process(proc, sig, timeout=wait, kill=False)

    def ping(self, target: str, *, count: int = 3, interval: float = 0.2, wait: float = 1.0) -> int:
        """Ping `target` from inside this host; return how many replies came back."""
        result = self.run(
            ["ping", "-n", "-q", "-c", str(count), "-i", str(interval), "-W", str(wait), target],
            timeout=count * interval + wait + 10.0,
        )
        match = re.search(r"(\d+) (?:packets )?received", result.stdout)
        if match is None:
            raise RuntimeError(f"unexpected ping output: {result.stdout!r} {result.stderr!r}")
        return int(match.group(1))

    # -- counters ----------------------------------------------------------------------------

    def link_stats(self) -> LinkStats:
        """Current byte and packet counters of this host's veth interface."""
        out = _run(["ip", "-n", self.netns, "-s", "-j", "link", "show", "dev", self.ifname]).stdout
        stats = json.loads(out)[0]["stats64"]
        return LinkStats(
            tx_bytes=int(stats["tx"]["bytes"]),
            rx_bytes=int(stats["rx"]["bytes"]),
            tx_packets=int(stats["tx"]["packets"]),
            rx_packets=int(stats["rx"]["packets"]),
        )

    # -- faults ------------------------------------------------------------------------------

    def set_loss(self, percent: int, *, inbound: bool = True, outbound: bool = True) -> None:
        """Drop `percent`% of the IP packets entering and/or leaving this host, independently per packet.

        Both directions by default, so a round trip through this host (a ping to it) succeeds
        with probability (1 - p)^2: 50% loss loses about 75% of pings. `set_loss(0)` removes the
        loss; `inbound=False` or `outbound=False` leaves that direction as it was. The drop
        happens on the bridge port, so the sender's kernel accepts the packet and no process
        sees an error, as with loss on a wire. ARP is spared (see `isolate` for total silence).
        """
        if not 0 <= percent <= 100:
            raise ValueError(f"loss must be 0..100 percent, not {percent}")
        if inbound:
            self.loss_in = percent
        if outbound:
            self.loss_out = percent
        self.lab._apply_faults()

    def isolate(self) -> None:
        """Make the host silent: the bridge drops every frame to and from it, ARP included.

        Its processes keep running and their sends succeed locally, but nothing arrives and
        nothing reaches them: to the rest of the lab it is a machine that went away (loopback
        inside the host still works).
        """
        self.isolated = True
        self.lab._apply_faults()

    def heal(self) -> None:
        """Undo `isolate()` (the loss set by `set_loss` stays)."""
        self.isolated = False
        self.lab._apply_faults()

    def close_port(self, port: int) -> None:
        """Drop every TCP segment sent to `port` on this host, as a firewall would: a dial to
        it times out while the rest of the host answers. `open_port` undoes it."""
        self.closed_ports.add(port)
        self.lab._apply_faults()

    def open_port(self, port: int) -> None:
        self.closed_ports.discard(port)
        self.lab._apply_faults()

    def _fault_rules(self) -> list[str]:
        port = f'"{self.peer_ifname}"'  # frames from the host enter the bridge here (iif), to it leave here (oif)
        rules = []
        if self.isolated:
            rules += [f"iifname {port} drop", f"oifname {port} drop"]
        rules += [f"oifname {port} tcp dport {closed} drop" for closed in sorted(self.closed_ports)]
        for match, percent in ((f"iifname {port}", self.loss_out), (f"oifname {port}", self.loss_in)):
            if percent == 100:
                rules.append(f"{match} ether type {{ ip, ip6 }} drop")  # numgen's mod 100 cannot say < 100
            elif percent:
                rules.append(f"{match} ether type {{ ip, ip6 }} numgen random mod 100 < {percent} drop")
        return rules


class Lab:
    """A bridge in a "switch" namespace and `hosts` host namespaces on it; use as a context manager.

    For example (host i has the address `subnet[10 + i]`):

    with Lab(3) as lab:
        server = lab.host(0).popen(["my-daemon", "--bind", lab.host(0).address])
        lab.host(2).set_loss(10)
        assert lab.host(1).ping(lab.host(0).address) == 3
    """

    def __init__(
        self,
        hosts: int,
        subnet: str = DEFAULT_SUBNET,
        *,
        ipv6: bool = False,
        term_timeout: float = 5.0,
    ) -> None:
        network = ipaddress.IPv4Network(subnet)
        if hosts < 1 or FIRST_HOST_OFFSET + hosts > network.num_addresses - 1:
            raise ValueError(f"{hosts} hosts do not fit in {subnet} from offset {FIRST_HOST_OFFSET}")
        self.prefix = f"dv{secrets.token_hex(3)}"
        self.subnet = network
        self.ipv6 = ipv6
        self.term_timeout = term_timeout
        self.switch_netns = f"{self.prefix}-sw"
        self.bridge = f"{self.prefix}br"
        self.route_metric = 1000 + secrets.randbelow(60000)
        self.hosts = [Host(self, i, str(network[FIRST_HOST_OFFSET + i])) for i in range(hosts)]
        for name in [self.bridge, *(h.ifname for h in self.hosts), *(h.peer_ifname for h in self.hosts)]:
            assert len(name) <= IFNAMSIZ_MAX, name
        self._procs: list[subprocess.Popen[Any]] = []
        self._namespaces: list[str] = []
        self._route_added = False
        self._fault_table = False
        self._closed = False

    def host(self, index: int) -> Host:
        """Host namespace number `index` (0-based)."""
        return self.hosts[index]

    @property
    def namespaces(self) -> list[str]:
        """Names of every namespace this Lab created (switch first)."""
        return list(self._namespaces)

    @property
    def route(self) -> str:
        """The root-namespace route this Lab holds while it exists, as `ip route show` prints it."""
        return f"unreachable {self.subnet} metric {self.route_metric}"

    # -- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> Lab:
        try:
            self._create()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _create(self) -> None:
        # The safety route comes first, so no address of the lab exists without it.
        for _attempt in range(5):
            added = _run(
                ["ip", "route", "add", "unreachable", str(self.subnet), "metric", str(self.route_metric)], check=False
            )
            if added.returncode == 0:
                self._route_added = True
                break
            if "File exists" not in added.stderr:
                raise RuntimeError(f"cannot add the root-namespace route {self.route}: {added.stderr.strip()}")
            self.route_metric = 1000 + secrets.randbelow(60000)
        else:
            raise RuntimeError(f"no free metric for an unreachable route to {self.subnet}")

        names = [self.switch_netns, *(h.netns for h in self.hosts)]
        for name in names:
            self._namespaces.append(name)  # recorded before creation: cleanup tolerates absence
            _run(["ip", "netns", "add", name])
        disable = "0" if self.ipv6 else "1"
        for name in names:
            _run(
                [
                    "ip", "netns", "exec", name, "sysctl", "-q", "-w",
                    f"net.ipv6.conf.all.disable_ipv6={disable}", f"net.ipv6.conf.default.disable_ipv6={disable}",
                ]
            )  # fmt: skip
        # Veth pairs are created directly in their namespaces: nothing ever appears in the root namespace.
        _run(
            ["ip", "-batch", "-"],
            input_text="".join(
                f"link add {h.ifname} netns {h.netns} type veth peer name {h.peer_ifname} netns {self.switch_netns}\n"
                for h in self.hosts
            ),
        )
        switch = [f"link add {self.bridge} type bridge stp_state 0 forward_delay 0", f"link set {self.bridge} up"]
        switch += ["link set lo up"]
        for h in self.hosts:
            switch += [f"link set {h.peer_ifname} master {self.bridge}", f"link set {h.peer_ifname} up"]
        _run(["ip", "-n", self.switch_netns, "-batch", "-"], input_text="\n".join(switch) + "\n")
        for h in self.hosts:
            commands = [
                "link set lo up",
                f"addr add {h.address}/{self.subnet.prefixlen} dev {h.ifname}",
                f"link set {h.ifname} up",
            ]
            _run(["ip", "-n", h.netns, "-batch", "-"], input_text="\n".join(commands) + "\n")

    def _apply_faults(self) -> None:
        """Replace the bridge's fault table with one made from every host's current faults (atomically)."""
        table = self.prefix
        # "add table; delete table" removes it whether it existed or not; `nft -f` applies all or nothing.
        script = [f"table bridge {table}", f"delete table bridge {table}"]
        rules = [rule for h in self.hosts for rule in h._fault_rules()]
        if rules:
            script += [
                f"table bridge {table} {{",
                "  chain forward { type filter hook forward priority 0; policy accept;",
                *(f"    {rule}" for rule in rules),
                "  }",
                "}",
            ]
            self._fault_table = True  # recorded first: a failed apply must still be cleaned up
        _run(["ip", "netns", "exec", self.switch_netns, "nft", "-f", "-"], input_text="\n".join(script) + "\n")
        self._fault_table = bool(rules)

    def fault_rules(self) -> str:
        """The nftables ruleset of the switch namespace as `nft list ruleset` prints it ("" without faults)."""
        return _run(["ip", "netns", "exec", self.switch_netns, "nft", "list", "ruleset"]).stdout

    def _popen(self, argv: list[str], **kwargs: Any) -> subprocess.Popen[Any]:
        if self._closed:
            raise RuntimeError("this Lab is closed")
        kwargs.setdefault("stdin", subprocess.DEVNULL)
        kwargs.setdefault("start_new_session", True)
        proc: subprocess.Popen[Any] = subprocess.Popen(argv, **kwargs)
        self._procs.append(proc)
        return proc

    def stop_processes(self, timeout: float | None = None) -> None:
        """Terminate every process started in this Lab: SIGTERM, wait up to `timeout`, SIGKILL, reap."""
        timeout = self.term_timeout if timeout is None else timeout
        running = [p for p in self._procs if p.poll() is None]
        for proc in running:
            self._signal(proc, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for proc in running:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        for proc in running:
            if proc.returncode is None:
                self._signal(proc, signal.SIGKILL)
        for proc in running:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5.0)  # SIGKILL is final unless the process is stuck in the kernel

    @staticmethod
    def _signal(proc: subprocess.Popen[Any], sig: int) -> None:
        signal_process(proc, sig)

    def _sweep_namespace(self, netns: str) -> None:
        """SIGKILL whatever still runs inside `netns` (grandchildren, daemons), so it can be freed."""
        for _attempt in range(3):
            try:
                out = _run(["ip", "netns", "pids", netns], check=False).stdout
            except (OSError, subprocess.SubprocessError):
                return
            pids = [int(p) for p in out.split() if p.isdigit()]
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.1)

    def close(self) -> None:
        """Tear everything down; safe to call more than once and after partial creation."""
        if self._closed:
            return
        self._closed = True
        try:
            self.stop_processes()
        finally:
            for netns in self._namespaces:
                self._sweep_namespace(netns)
            # Close our ends of any pipes, so no file descriptor outlives the Lab. Only now: a
            # thread may be reading one, and with every writer dead its read has returned.
            for proc in self._procs:
                for stream in (proc.stdin, proc.stdout, proc.stderr):
                    if stream is not None:
                        with contextlib.suppress(OSError):
                            stream.close()
            if self._fault_table:
                _quiet(["ip", "netns", "exec", self.switch_netns, "nft", "delete", "table", "bridge", self.prefix])
                self._fault_table = False
            for h in self.hosts:
                _quiet(["ip", "-n", self.switch_netns, "link", "del", h.peer_ifname])
            _quiet(["ip", "-n", self.switch_netns, "link", "del", self.bridge])
            for netns in reversed(self._namespaces):
                _quiet(["ip", "netns", "del", netns])
            self._namespaces.clear()
            if self._route_added:
                _quiet(["ip", "route", "del", "unreachable", str(self.subnet), "metric", str(self.route_metric)])
                self._route_added = False
