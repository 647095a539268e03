"""Gossip benchmark: DebVisor's membership against HashiCorp Serf (LAN profile), same run, same lab.

This is a benchmark, not a test: it asserts nothing and passes or fails nothing. It prints
numbers to compare and says where DebVisor is behind. It needs root (network namespaces),
`serf` (apt-get install serf) and time: the default run takes about an hour and a half.

    .venv/bin/python -m bench.gossip [--sizes 5,16,32] [--loss-seconds 300] [--sim-sizes 100,1000,2000]
    .venv/bin/python -m bench.gossip --quick      # sizes 5,16; 30 s per loss level; sim 100,1000

Table 1: real processes. For each cluster size N, first N Serf agents (`serf agent
-profile=lan`), then N `debvisor serve` nodes, each system in a fresh `tests.netns.Lab`: one
network namespace per node on one bridge, one node per namespace, every client (serf RPC,
HTTPS to the nodes) run inside a namespace. The two systems never run at the same time, so
they do not share the 2 cores. In order, on the same cluster:

a) Join: the time from the moment the last of the N-1 joiners started its join until every
   node lists all N members alive. A Serf join is `serf join SEED` on every agent at once,
   after all agents are up; its start is the agent's "agent: joining" log line. DebVisor
   joins as a node starts (`serve --join TOKEN`: admission over HTTPS, then gossip). Started
   all at once, N CPython processes would share the machine's cores for ~10 s, and the row
   would time their start-up rather than the join. So the harness holds the gossip port of
   the founder (the seed) closed with an nftables drop while the N-1 joiners start, are
   admitted and settle (together below 0.3 of a core), then opens it: each joiner's dial
   under way sends a new SYN within 50 ms (or its next join retry, every 1 s, goes through),
   as every `serf join` does. A node's join starts when the request that the seed answered
   went out (its "gossip joined" line less the request's age), or when the port opened if
   that request was made before (it waited behind the closed port and could not begin
   earlier). The end is the latest of each node's log line for its last member join (Serf:
   EventMemberJoin; DebVisor: "member joined"), then confirmed over RPC/API (every node
   reports every member alive). The notes also give the time from the opening itself.
e) Idle traffic (measured next, on the settled cluster: 5 s after the join, and for DebVisor
   also once every pair has opened its TLS connection, which its first probe does up to one
   probe cycle after the join (the notes say how many opened meanwhile and in the window),
   and no earlier than 80 s after the joiners' launch, past the one node-facts republish
   that the nodes' sharing one machine's memory causes; see FACTS_SETTLE): bytes and
   packets each host sends per second over `--idle-seconds`, from its veth's tx counters
   (L2 bytes, so Ethernet/IP/UDP/TCP/TLS headers and TCP ACKs count, as on a real wire),
   plus each node's CPU use and resident memory. No API or RPC traffic runs meanwhile (and
   it would go through the namespace's loopback anyway).
d) False deaths under loss: every host drops 5%, then 10%, of the IP packets it sends and of
   those it receives (nftables on the bridge port; a packet between two hosts is lost with
   probability 1-(1-p)^2: 9.75% and 19%) for `--loss-seconds` each. A false death is one
   observer declaring one running member dead (DebVisor "member dead") or failed (Serf
   EventMemberFailed); each (observer, member) verdict counts, and verdicts are counted until
   Serf's longest suspicion timeout for N, plus 2 s, after the loss ends (the same window for
   both). "Suspicions raised" counts accusations: Serf's "Suspect X has failed, no acks
   received" (logged by the prober only) and DebVisor "member suspect" lines whose accuser is
   the logging node itself (so suspicions relayed by gossip are not counted). Before the
   next step the cluster must be all alive again.
b) Crash: SIGKILL of member N-1, then the time until the first other node suspects it, the
   first declares it dead/failed, and all others do (from their logs, then confirmed).
c) Silent node: member N-2 is cut off (the bridge drops every frame to and from it, ARP
   included; the process keeps running), then the time until the first other node suspects
   it and until all the others declare it dead/failed. It runs after b), so with N-1 live
   members, for both systems.

At the end all DebVisor nodes get SIGTERM at once; nodes still running 5 s later are
reported (a node leaves the cluster and exits within about 0.5 s when stopped alone).

Timing comes from log lines, not from polling: Serf's lines are timestamped as they arrive
through a pipe (bench.serf), DebVisor's carry their own "ts" (wall clock, ms), converted to
the monotonic clock of this process. Every ratio is DebVisor/Serf, and in every row lower is
better, so a ratio below 1 means DebVisor did better. One run per cell: the figures vary from
run to run by tens of percent (scheduling on 2 cores, random probe order).

Table 2: the simulator (appliance.cluster.sim), which drives the very `Swim` objects of the
real node on a virtual network (0.5-1 ms latency, each frame lost independently with the
given probability, no retransmission). Cluster of `--sim-sizes` nodes, preconverged, then
after 1 s of virtual time one node changes its metadata: the time until 99.99% of the other
nodes know it (with 100-2000 nodes that is every one of them, so the slowest node decides).
The median of `--sim-repeats` updates from different origins (0.5 s apart) is printed, with
the range; an update not seen everywhere within 60 s of virtual time, or before the cell has
used `--sim-cpu-budget` CPU seconds, counts as "never". The cell also reports how many death
verdicts about running nodes the loss caused. `--sim-lan` adds the same measurement with
memberlist's LAN timings (`GossipTuning.lan()`) in the same simulator, for reference.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import hashlib
import inspect
import math
import os
import re
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, cast

import msgspec

from appliance.cluster.messages import ConfigDigest, ConfigSummary, message_size
from appliance.cluster.replication import ConfigReplicator
from appliance.cluster.sim import NetworkModel, Simulator
from appliance.cluster.swim import GossipTuning
from bench import serf
from tests.clusterlab import GOSSIP_PORT, ClusterNode, bootstrap_admin_token
from tests.netns import Lab, available

LOSS_LEVELS = (5, 10)
QUIET_CORES = 0.3  # the node processes together, before the gate opens
QUIET_TIMEOUT = 60.0
SETTLE_SECONDS = 5.0  # after the join, before idle traffic: the join's broadcasts die out
# DebVisor also waits one probe cycle (n probe rounds: every pair meets once), then until no
# node has opened a gossip connection for CONNECT_QUIET (bounded by CONNECT_TIMEOUT): each
# pair's first probe opens its TLS connection, up to a cycle after the join, and those
# one-time handshakes are part of forming the cluster, not of running it.
CONNECT_QUIET = 3.0
CONNECT_TIMEOUT = 60.0
# And the window starts no earlier than FACTS_SETTLE after the joiners' launch. The bench's
# nodes share one machine's memory, so each sees the others' start-up (31 x 85 MB, 11% of
# 24 GB) as its own free memory moving by over 5%, and republishes its facts at its first
# check a minute after its start: a wave that nodes on their own machines do not have.
FACTS_SETTLE = 80.0
JOIN_TIMEOUT = 90.0
DETECT_TIMEOUT = 60.0
SETTLE_TIMEOUT = 90.0
STOP_TIMEOUT = 5.0  # a DebVisor node should exit this soon after SIGTERM (it leaves in 0.5 s)
POLL = 0.05
SIM_WARMUP = 1.0
SIM_BETWEEN = 0.5  # virtual seconds between two timed updates
SIM_TIMEOUT = 60.0
SIM_LOSSES = (0.0, 0.10, 0.25)
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def deployed_bytecode(workdir: Path) -> None:
    """Let the node processes start from cached bytecode, as they do on an installed node (the
    image's pip compiles every module). A shell with PYTHONDONTWRITEBYTECODE set would have
    each of the N processes compile the checkout's ~100 modules again, on the same 2 cores,
    during the very seconds that the join row times. The cache goes below `workdir`, so the
    checkout is left as it is; the founder fills it, alone, before any joiner starts."""
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    os.environ["PYTHONPYCACHEPREFIX"] = str(workdir / "pycache")


def code_fingerprint() -> str:
    """SHA-256 (12 hex digits) of appliance/**/*.py as it is now: the code a node started now runs."""
    digest = hashlib.sha256()
    root = Path(__file__).resolve().parent.parent / "appliance"
    for path in sorted(root.rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:12]


def foreign_namespaces(lab: Lab) -> int:
    """How many network namespaces on the machine are not this Lab's (other runs competing for the CPUs)."""
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False, timeout=15).stdout
    names = {line.split()[0] for line in out.splitlines() if line.strip()}
    return len(names - set(lab.namespaces))


def startup_timeout(nodes: int) -> float:
    """How long N DebVisor processes started together may take to be up (2 cores, ~1.5 s CPU each)."""
    return 60.0 + 5.0 * nodes


# -- results -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    unit: str
    digits: int


def metrics(loss_seconds: float) -> list[Metric]:
    rows = [
        Metric("join", "a) last join started -> all alive everywhere", "s", 3),
        Metric("kill_suspect", "b) SIGKILL -> first suspicion", "s", 2),
        Metric("kill_first", "b) SIGKILL -> first dead/failed", "s", 2),
        Metric("kill_all", "b) SIGKILL -> dead/failed on all others", "s", 2),
        Metric("silent_suspect", "c) cut off -> first suspicion", "s", 2),
        Metric("silent_all", "c) cut off -> dead/failed on all others", "s", 2),
    ]
    for p in LOSS_LEVELS:
        rows.append(Metric(f"false_{p}", f"d) false deaths, {p}% loss each way, {loss_seconds:g} s", "", 0))
        rows.append(Metric(f"susp_{p}", f"   suspicions raised, {p}% loss", "", 0))
    rows += [
        Metric("idle_bytes", "e) idle traffic sent per node", "B/s", 0),
        Metric("idle_packets", "   idle packets sent per node", "pkt/s", 1),
        Metric("idle_cpu", "   idle CPU per node", "% core", 2),
        Metric("rss", "   resident memory per node (mean)", "MB", 0),
    ]
    return rows


@dataclass
class SystemResult:
    system: str
    nodes: int
    values: dict[str, float] = field(default_factory=dict)
    info: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0
    code: str = ""  # fingerprint of the DebVisor code the nodes ran

    def get(self, key: str) -> float:
        return self.values.get(key, math.nan)


def attempt(result: SystemResult, what: str, step: Callable[[], None]) -> bool:
    """Run one measurement step; a failure is recorded as a problem and the run goes on."""
    try:
        step()
    except Exception as exc:
        result.problems.append(f"{what} failed: {type(exc).__name__}: {str(exc)[-1500:]}")
        print(f"  [{result.system} N={result.nodes}] {what} FAILED: {type(exc).__name__}: {exc}", flush=True)
        return False
    return True


def progress(result: SystemResult, text: str) -> None:
    print(f"  [{result.system} N={result.nodes}] {text}", flush=True)


def wait_for(condition: Callable[[], bool], timeout: float, what: str, interval: float = POLL) -> None:
    """Poll `condition` (exceptions count as not yet) until it holds; TimeoutError after `timeout` s."""
    deadline = time.monotonic() + timeout
    last_error = ""
    while True:
        try:
            if condition():
                return
        except Exception as exc:
            last_error = f" (last error: {type(exc).__name__}: {exc})"
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not reached after {timeout:g} s{last_error}")
        time.sleep(interval)


# -- process accounting (same for both systems) -------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return math.nan


def wait_quiet(pids: Sequence[int], cores: float = QUIET_CORES, timeout: float = QUIET_TIMEOUT) -> float:
    """Wait until the processes `pids` together use less than `cores` of a CPU over a second
    (start-up done), at most `timeout` seconds; the monotonic time then."""
    deadline = time.monotonic() + timeout
    before, at = sum(cpu_seconds(pid) for pid in pids), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(1.0)
        after, now = sum(cpu_seconds(pid) for pid in pids), time.monotonic()
        if (after - before) / (now - at) < cores:
            return now
        before, at = after, now
    return time.monotonic()


def measure_idle(lab: Lab, pids: Sequence[int], seconds: float, result: SystemResult) -> None:
    """Bytes and packets sent per host per second (veth tx counters), CPU % and RSS per process."""
    before = [h.link_stats() for h in lab.hosts]
    cpu_before = [cpu_seconds(pid) for pid in pids]
    start = time.monotonic()
    time.sleep(seconds)
    after = [h.link_stats() for h in lab.hosts]
    cpu_after = [cpu_seconds(pid) for pid in pids]
    elapsed = time.monotonic() - start
    rates = [(b.tx_bytes - a.tx_bytes) / elapsed for a, b in zip(before, after, strict=True)]
    packets = [(b.tx_packets - a.tx_packets) / elapsed for a, b in zip(before, after, strict=True)]
    cpu = [100.0 * (b - a) / elapsed for a, b in zip(cpu_before, cpu_after, strict=True)]
    rss = [rss_mb(pid) for pid in pids]
    result.values["idle_bytes"] = statistics.fmean(rates)
    result.values["idle_packets"] = statistics.fmean(packets)
    result.values["idle_cpu"] = statistics.fmean(cpu)
    result.values["rss"] = statistics.fmean(rss)
    result.info.append(
        f"idle over {elapsed:.0f} s: {min(rates):.0f}..{max(rates):.0f} B/s per host, "
        f"{statistics.fmean(rates) / max(statistics.fmean(packets), 1e-9):.0f} B per packet, "
        f"CPU {min(cpu):.2f}..{max(cpu):.2f}% per process, RSS {min(rss):.0f}..{max(rss):.0f} MB"
    )


# -- Serf ----------------------------------------------------------------------------------------


@dataclass
class TimedSerfAgent(serf.SerfAgent):
    """A `bench.serf.SerfAgent` that also records when its "agent: joining" line arrived."""

    joining: list[float] = field(default_factory=list)

    def _read(self, stream: IO[bytes]) -> None:
        def lines() -> Iterator[bytes]:
            for raw in stream:
                if b"agent: joining:" in raw:
                    self.joining.append(time.monotonic())
                yield raw

        super()._read(cast("IO[bytes]", lines()))  # the parent only iterates over the lines


def start_serf_agents(lab: Lab, timeout: float = 30.0) -> list[TimedSerfAgent]:
    """`bench.serf.start_agents` with `TimedSerfAgent`s: one unjoined LAN-profile agent per host."""
    return serf.start_agents(lab, timeout=timeout, agent_class=TimedSerfAgent)


def serf_first(agent: serf.SerfAgent, kind: str, member: str, since: float) -> float | None:
    for event in agent.snapshot():
        if event.at >= since and event.kind == kind and event.member == member:
            return event.at
    return None


def serf_silent(
    agents: Sequence[serf.SerfAgent], victim: int, observers: Sequence[serf.SerfAgent]
) -> tuple[float, float]:
    """Cut agent `victim` off; seconds until the first observer suspects it and all mark it failed."""
    cut = agents[victim]
    start = time.monotonic()
    cut.host.isolate()
    wait_for(
        lambda: all(serf_first(a, "failed", cut.name, start) is not None for a in observers),
        DETECT_TIMEOUT,
        f"every agent marking {cut.name} failed",
    )
    wait_for(
        lambda: all(a.members().get(cut.name) == "failed" for a in observers),
        DETECT_TIMEOUT,
        f"RPC status failed for {cut.name}",
        interval=0.2,
    )
    failed = [serf_first(a, "failed", cut.name, start) for a in observers]
    suspects = [t for t in (serf_first(a, "suspect", cut.name, start) for a in observers) if t is not None]
    return (min(suspects) - start if suspects else math.nan), max(t for t in failed if t is not None) - start


def run_serf(nodes: int, args: argparse.Namespace) -> SystemResult:
    result = SystemResult("serf", nodes)
    began = time.monotonic()
    with Lab(nodes) as lab:
        result.info.append(f"other network namespaces on the machine at the start: {foreign_namespaces(lab)}")
        agents: list[TimedSerfAgent] = []
        if not attempt(result, "start", lambda: agents.extend(start_serf_agents(lab))):
            result.seconds = time.monotonic() - began
            return result
        progress(result, f"{nodes} agents up in {time.monotonic() - began:.1f} s ({lab.prefix})")

        def join() -> None:
            before = time.monotonic()
            took = serf.join_time(agents, timeout=JOIN_TIMEOUT)
            done = before + took
            starts = [a.joining[0] for a in agents[1:] if a.joining]
            if len(starts) == nodes - 1:
                last_start = max(starts)
            else:
                last_start = before
                result.problems.append("some 'agent: joining' lines were missing: join timed from the launch")
            result.values["join"] = done - last_start
            result.info.append(
                f"join: `serf join` launched on {nodes - 1} agents -> last join started {last_start - before:.3f} s, "
                f"-> all alive {took:.3f} s"
            )
            progress(result, f"join {done - last_start:.3f} s")

        if not attempt(result, "join", join):
            result.seconds = time.monotonic() - began
            return result
        time.sleep(SETTLE_SECONDS)
        if attempt(result, "idle", lambda: measure_idle(lab, [a.proc.pid for a in agents], args.idle_seconds, result)):
            progress(result, f"idle {result.get('idle_bytes'):.0f} B/s per node")
        for percent in LOSS_LEVELS:

            def lossy(percent: int = percent) -> None:
                since = time.monotonic()
                failures = serf.false_failures(
                    lab, agents, loss_percent=percent, seconds=args.loss_seconds, settle_timeout=SETTLE_TIMEOUT
                )
                result.values[f"false_{percent}"] = failures
                result.values[f"susp_{percent}"] = serf.count_events(agents, "suspect", since, time.monotonic())
                progress(
                    result,
                    f"{percent}% loss: {failures} false failed, {result.get(f'susp_{percent}'):.0f} suspicions",
                )

            attempt(result, f"{percent}% loss", lossy)

        def kill() -> None:
            detection = serf.failure_detection(agents, victim=nodes - 1, timeout=DETECT_TIMEOUT)
            result.values["kill_suspect"] = detection.first_suspect
            result.values["kill_first"] = detection.first_failed
            result.values["kill_all"] = detection.all_failed
            progress(
                result, f"SIGKILL: suspect {detection.first_suspect:.2f} s, all failed {detection.all_failed:.2f} s"
            )

        attempt(result, "SIGKILL", kill)

        def silent() -> None:
            observers = agents[: nodes - 2]
            first, everyone = serf_silent(agents, nodes - 2, observers)
            result.values["silent_suspect"] = first
            result.values["silent_all"] = everyone
            progress(result, f"cut off: suspect {first:.2f} s, all failed {everyone:.2f} s")

        attempt(result, "cut off", silent)
    result.seconds = time.monotonic() - began
    return result


# -- DebVisor ------------------------------------------------------------------------------------


_TRACKED = {
    "member joined",
    "member suspect",
    "member dead",
    "member alive",
    "member left",
    "gossip listening",
    "gossip joined",
}
_EXPECTED_WARNINGS = {"member suspect", "member dead"}  # faults are injected on purpose
_BENIGN_TEXT = re.compile(r"^initial admin password written to ")


@dataclass(frozen=True)
class LogEvent:
    at: float  # time.monotonic() of this process when the node wrote the line
    msg: str
    member: str
    detail: str


class NodeLog:
    """Follows one DebVisor node's JSON log: membership events with times, and anything alarming."""

    def __init__(self, node: ClusterNode) -> None:
        self.node = node
        self.events: list[LogEvent] = []
        self.problems: Counter[str] = Counter()
        self.samples: dict[str, str] = {}
        self._offset = 0
        self._partial = b""

    def poll(self) -> None:
        try:
            with self.node.log_path.open("rb") as f:
                f.seek(self._offset)
                data = f.read()
        except FileNotFoundError:
            return
        self._offset += len(data)
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()
        shift = time.time() - time.monotonic()
        for raw in lines:
            self._parse(raw, shift)

    def _parse(self, raw: bytes, shift: float) -> None:
        if not raw.strip():
            return
        try:
            entry = msgspec.json.decode(raw)
        except msgspec.DecodeError:
            entry = None
        if not isinstance(entry, dict):
            text = raw.decode(errors="replace").strip()
            if not _BENIGN_TEXT.match(text):
                self._problem(f"non-JSON output: {text[:120]}", text)
            return
        msg = str(entry.get("msg", ""))
        level = str(entry.get("level", ""))
        if msg in _TRACKED:
            ts = dt.datetime.strptime(str(entry["ts"]), "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.UTC)
            at = ts.timestamp() - shift
            if msg == "gossip joined":
                at -= float(entry.get("request_age") or 0.0)  # when the join request that was answered went out
            self.events.append(LogEvent(at, msg, str(entry.get("member", "")), str(entry.get("detail", ""))))
        if level in ("error", "critical") or "exc" in entry or (level == "warning" and msg not in _EXPECTED_WARNINGS):
            exc = str(entry.get("exc", ""))
            key = f"{level} {entry.get('logger', '')}: {msg}"
            if exc:
                key += f" [{exc.strip().splitlines()[-1][:160]}]"
            self._problem(key, raw.decode(errors="replace")[:2000])

    def _problem(self, key: str, sample: str) -> None:
        self.problems[key] += 1
        self.samples.setdefault(key, sample)

    def first(self, msg: str, member: str, since: float) -> float | None:
        for event in self.events:
            if event.at >= since and event.msg == msg and event.member == member:
                return event.at
        return None

    def count(self, msg: str, members: set[str], since: float, until: float, *, own: bool = False) -> int:
        """How many `msg` lines about `members` in [since, until]; `own`: only those this node accused."""
        accuser = f"by {self.node.name}"
        return sum(
            1
            for e in self.events
            if e.msg == msg and e.member in members and since <= e.at <= until and (not own or e.detail == accuser)
        )


class DebVisorCluster:
    """N `debvisor serve` nodes in a Lab, started the way the benchmark needs, with their logs followed."""

    def __init__(self, lab: Lab, workdir: Path, size: int) -> None:
        self.lab = lab
        workdir.mkdir(parents=True, exist_ok=True)
        self.nodes = [ClusterNode(workdir, lab.host(i), f"n{i}") for i in range(size)]
        self.logs = [NodeLog(n) for n in self.nodes]
        self.admin_token = ""
        self.launched = 0.0  # when the joiners were started (monotonic)

    def poll(self) -> None:
        for log in self.logs:
            log.poll()

    def check_running(self, nodes: Sequence[ClusterNode]) -> None:
        for node in nodes:
            assert node.proc is not None
            if node.proc.poll() is not None:
                raise RuntimeError(f"{node.name} exited {node.proc.returncode}: {node.log_tail()[-1500:]}")

    def start_founder(self) -> None:
        founder = self.nodes[0]
        founder.start()
        founder.wait_ready(timeout=60)
        self.admin_token = bootstrap_admin_token(founder)

    def join_tokens(self, count: int) -> list[str]:
        client = self.nodes[0].client()
        tokens = []
        for _ in range(count):
            response = client.post("/api/v1/cluster/join-tokens", json={})
            response.raise_for_status()
            tokens.append(str(response.json()["token"]))
        return tokens

    def launch_joiners(self) -> float:
        """Start every other node at once with its own join token; the monotonic time of the launch."""
        joiners = self.nodes[1:]
        tokens = self.join_tokens(len(joiners))
        launched = self.launched = time.monotonic()
        for node, token in zip(joiners, tokens, strict=True):
            node.token = self.admin_token
            node.start(join=token)
        return launched

    def listening_at(self, log: NodeLog) -> float | None:
        return next((e.at for e in log.events if e.msg == "gossip listening"), None)

    def wait_listening(self, timeout: float) -> list[float]:
        def all_listening() -> bool:
            self.poll()
            self.check_running(self.nodes)
            return all(self.listening_at(log) is not None for log in self.logs)

        wait_for(all_listening, timeout, "every node's 'gossip listening' line", interval=0.2)
        return [t for t in (self.listening_at(log) for log in self.logs) if t is not None]

    def wait_joined(self, timeout: float) -> list[float]:
        """Wait for every node's "gossip joined" line (the founder's own: at its listening); when
        each node's answered join request went out."""

        def joined_at(log: NodeLog) -> float | None:
            if log.node is self.nodes[0]:
                return self.listening_at(log)
            return next((e.at for e in log.events if e.msg == "gossip joined"), None)

        def all_joined() -> bool:
            self.poll()
            self.check_running(self.nodes)
            return all(joined_at(log) is not None for log in self.logs)

        wait_for(all_joined, timeout, "every node's 'gossip joined' line", interval=0.05)
        return [t for t in (joined_at(log) for log in self.logs) if t is not None]

    def all_joins_logged_at(self) -> float | None:
        """When the last node logged its last first 'member joined' for every other node (None: not yet)."""
        latest = -math.inf
        names = [n.name for n in self.nodes]
        for log in self.logs:
            for name in names:
                if name == log.node.name:
                    continue
                at = log.first("member joined", name, -math.inf)
                if at is None:
                    return None
                latest = max(latest, at)
        return latest

    def views_hold(self, observers: Sequence[ClusterNode], expected: dict[str, str]) -> bool:
        for node in observers:
            view = node.members()
            if any(view.get(name) != state for name, state in expected.items()):
                return False
        return True

    def wait_views(self, observers: Sequence[ClusterNode], expected: dict[str, str], timeout: float) -> None:
        wait_for(lambda: self.views_hold(observers, expected), timeout, f"API views {expected}", interval=0.2)

    def gossip_stats(self, nodes: Sequence[ClusterNode]) -> tuple[list[dict[str, float]], Counter[str]]:
        """From one /metrics scrape per node: each node's `debvisor_gossip_total` counters
        (frames_out, bytes_out, ...), and the messages all of them sent, by wire type
        (`debvisor_gossip_messages_sent_total`)."""
        counter = re.compile(r'^debvisor_gossip_total\{counter="(\w+)"\} (\S+)$', re.MULTILINE)
        sent = re.compile(r'^debvisor_gossip_messages_sent_total\{type="(\w+)"\} (\S+)$', re.MULTILINE)
        counters: list[dict[str, float]] = []
        by_type: Counter[str] = Counter()
        for node in nodes:
            text = node.client().get("/metrics").text
            counters.append({k: float(v) for k, v in counter.findall(text)})
            for tag, value in sent.findall(text):
                by_type[tag] += int(float(value))
        return counters, by_type

    def stop_all(self, result: SystemResult) -> None:
        """SIGTERM every running node at once and time their exits; report those that do not exit."""
        running = [n for n in self.nodes if n.proc is not None and n.proc.poll() is None]
        start = time.monotonic()
        for node in running:
            assert node.proc is not None
            with contextlib.suppress(ProcessLookupError):
                node.proc.send_signal(signal.SIGTERM)
        exits: dict[str, float] = {}
        deadline = start + STOP_TIMEOUT
        for node in running:
            assert node.proc is not None
            with contextlib.suppress(subprocess.TimeoutExpired):
                node.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
                exits[node.name] = time.monotonic() - start
        hung = [n.name for n in running if n.name not in exits]
        slowest = f" (the last after {max(exits.values()):.1f} s)" if exits else ""
        result.info.append(
            f"shutdown: SIGTERM to the {len(running)} running nodes at once: {len(exits)} exited{slowest}, "
            f"{len(hung)} still running after {STOP_TIMEOUT:g} s"
            + (f": {', '.join(hung)} (SIGKILLed by the Lab)" if hung else "")
        )
        if hung:
            result.problems.append(
                f"{len(hung)} of {len(running)} nodes did not exit within {STOP_TIMEOUT:g} s of a simultaneous "
                f"SIGTERM (no 'stopped' log line): {', '.join(hung)}"
            )

    def close_clients(self) -> None:
        for node in self.nodes:
            with contextlib.suppress(Exception):
                node.drop_client()


def debvisor_detection(
    cluster: DebVisorCluster, victim: ClusterNode, observers: Sequence[ClusterNode], fault: Callable[[], object]
) -> tuple[float, float, float]:
    """Apply `fault` to `victim`; seconds to the first suspicion, first death and death on all observers."""
    logs = [log for log in cluster.logs if log.node in observers]
    start = time.monotonic()
    fault()

    def all_dead() -> bool:
        cluster.poll()
        return all(log.first("member dead", victim.name, start) is not None for log in logs)

    wait_for(all_dead, DETECT_TIMEOUT, f"every node logging {victim.name} dead")
    cluster.wait_views(observers, {victim.name: "dead"}, DETECT_TIMEOUT)
    dead = [t for t in (log.first("member dead", victim.name, start) for log in logs) if t is not None]
    suspects = [t for t in (log.first("member suspect", victim.name, start) for log in logs) if t is not None]
    first_suspect = min(suspects) - start if suspects else math.nan
    return first_suspect, min(dead) - start, max(dead) - start


def config_digest_note(node: ClusterNode) -> str:
    """What the configuration map's anti-entropy costs: its entries by kind, the periodic
    summary's size, and the full digest that only a mismatch of summaries leads to.

    Read from the node's database (read-only). Every `sync_interval` a node attaches a
    `ConfigSummary` (a 16-byte hash) to its next membership frame to a random peer.
    """
    try:
        interval = float(inspect.signature(ConfigReplicator).parameters["sync_interval"].default)
        db = node.data_dir / "debvisor.db"
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)) as conn:
            rows = conn.execute("SELECT kind, key, version FROM config ORDER BY kind, key").fetchall()
    except Exception as exc:
        return f"configuration map digest not measured: {type(exc).__name__}: {exc}"
    kinds = Counter(str(r[0]) for r in rows)
    summary = message_size(ConfigSummary(bytes(16), len(rows)))
    full = message_size(ConfigDigest([(str(k), str(key), str(v)) for k, key, v in rows]))
    return (
        f"configuration map on {node.name}: {len(rows)} entries ({', '.join(f'{n} {k}' for k, n in kinds.items())}); "
        f"its summary is {summary} B every {interval:g} s, riding on a membership frame; the full digest "
        f"({full} B) is sent only when two nodes' summaries differ"
    )


def run_debvisor(nodes: int, args: argparse.Namespace, workdir: Path) -> SystemResult:
    result = SystemResult("debvisor", nodes)
    began = time.monotonic()
    with Lab(nodes) as lab:
        cluster = DebVisorCluster(lab, workdir / f"debvisor-{nodes}", nodes)
        result.code = code_fingerprint()
        result.info.append(
            f"appliance/ code {result.code}; other network namespaces on the machine at the start: "
            f"{foreign_namespaces(lab)}"
        )
        try:
            run_debvisor_steps(cluster, nodes, args, result)
        finally:
            cluster.close_clients()
            cluster.stop_all(result)
            cluster.poll()
            for node, log in zip(cluster.nodes, cluster.logs, strict=True):
                for key, count in log.problems.most_common():
                    result.problems.append(f"{node.name} log: {count}x {key}\n      e.g. {log.samples[key][:600]}")
    result.seconds = time.monotonic() - began
    return result


def settle_connections(cluster: DebVisorCluster, result: SystemResult) -> None:
    """Wait a probe cycle, then until no node opens a gossip connection for CONNECT_QUIET (see there)."""
    start = time.monotonic()
    cycle = len(cluster.nodes) * GossipTuning().probe_interval

    def opened() -> float:
        counters, _ = cluster.gossip_stats(cluster.nodes)
        return sum(c.get("connections_opened", 0) for c in counters)

    first = last = opened()
    quiet_since = time.monotonic()
    while time.monotonic() - start < CONNECT_TIMEOUT and (
        time.monotonic() - start < cycle or time.monotonic() - quiet_since < CONNECT_QUIET
    ):
        time.sleep(0.5)
        now_opened = opened()
        if now_opened != last:
            last, quiet_since = now_opened, time.monotonic()
    result.info.append(
        f"before the idle window: {last - first:.0f} more gossip connections opened over "
        f"{time.monotonic() - start:.1f} s after the join had settled ({last:.0f} in all, counted on both sides; "
        "each pair's first probe opens one)"
    )


def run_debvisor_steps(cluster: DebVisorCluster, nodes: int, args: argparse.Namespace, result: SystemResult) -> None:
    names = {n.name for n in cluster.nodes}
    all_alive = {name: "alive" for name in names}

    def form() -> None:
        t = time.monotonic()
        founder = cluster.nodes[0]
        founder.host.close_port(GOSSIP_PORT)  # the gate: see the module docstring, a)
        cluster.start_founder()
        progress(result, f"founder ready in {time.monotonic() - t:.1f} s ({cluster.lab.prefix})")
        launched = cluster.launch_joiners()
        listening = cluster.wait_listening(startup_timeout(nodes))[1:]
        settled = wait_quiet([n.proc.pid for n in cluster.nodes if n.proc is not None])
        opened = time.monotonic()
        founder.host.open_port(GOSSIP_PORT)
        starts = cluster.wait_joined(JOIN_TIMEOUT)[1:]
        last_start = max([*starts, opened])  # a request made behind the closed port began at its opening

        def logged() -> bool:
            cluster.poll()
            cluster.check_running(cluster.nodes)
            return cluster.all_joins_logged_at() is not None

        wait_for(logged, JOIN_TIMEOUT, "every node logging every other node's join")
        cluster.wait_views(cluster.nodes, all_alive, JOIN_TIMEOUT)
        done = cluster.all_joins_logged_at()
        assert done is not None
        result.values["join"] = done - last_start
        suspicions = sum(log.count("member suspect", names, launched, time.monotonic()) for log in cluster.logs)
        deaths = sum(log.count("member dead", names, launched, time.monotonic()) for log in cluster.logs)
        result.info.append(
            f"join: {nodes - 1} joiner processes launched at once, their gossip port on the founder closed -> "
            f"all gossip listening {max(listening) - launched:.1f} s after the launch (start-up + admission), "
            f"quiet after {settled - launched:.1f} s -> port opened -> joins answered, requests sent "
            f"{min(starts) - opened:.3f}..{last_start - opened:.3f} s after the opening -> all alive everywhere "
            f"{done - opened:.3f} s after it; {suspicions} suspicion and {deaths} death lines during formation"
        )
        progress(result, f"join {done - last_start:.3f} s (all alive {done - opened:.3f} s after the gate opened)")
        # What the formation sent, summed over all nodes from their launch: where a join's work
        # goes. The pushpull count includes the join retries queued while the port was closed.
        counters, sent = cluster.gossip_stats(cluster.nodes)
        mix = ", ".join(f"{tag} {n}" for tag, n in sent.most_common())
        frames, payload = (sum(c.get(key, 0) for c in counters) for key in ("frames_out", "bytes_out"))
        result.info.append(
            f"formation, all nodes together until all alive was confirmed: {frames:.0f} frames, "
            f"{payload / 1e6:.2f} MB of frame payload; messages by type: {mix or 'none'}"
        )

    if not attempt(result, "join", form):
        return
    time.sleep(SETTLE_SECONDS)
    settle_connections(cluster, result)
    wait = cluster.launched + FACTS_SETTLE - time.monotonic()
    if wait > 0:
        result.info.append(
            f"idle window held {wait:.0f} s more, to {FACTS_SETTLE:.0f} s after the joiners' launch: "
            "past the node-facts republish that sharing one machine's memory causes (see FACTS_SETTLE)"
        )
        time.sleep(wait)
    pids = [n.proc.pid for n in cluster.nodes if n.proc is not None]

    def idle() -> None:
        (before, types_before), start = cluster.gossip_stats(cluster.nodes), time.monotonic()
        measure_idle(cluster.lab, pids, args.idle_seconds, result)
        (after, types_after), elapsed = cluster.gossip_stats(cluster.nodes), time.monotonic() - start
        types = types_after - types_before
        opened = sum(
            b.get("connections_opened", 0) - a.get("connections_opened", 0) for a, b in zip(before, after, strict=True)
        )
        frames = statistics.fmean(
            b.get("frames_out", 0) - a.get("frames_out", 0) for a, b in zip(before, after, strict=True)
        )
        payload = statistics.fmean(
            b.get("bytes_out", 0) - a.get("bytes_out", 0) for a, b in zip(before, after, strict=True)
        )
        result.info.append(
            f"idle, from the nodes' own counters: {frames / elapsed:.1f} gossip frames/s and {payload / elapsed:.0f} "
            f"B/s of frame payload sent per node ({payload / max(frames, 1):.0f} B per frame before TLS/TCP/IP); "
            f"includes the anti-entropy summaries and push-pulls; {opened:.0f} gossip connections opened in the window "
            "(counted on both sides)"
        )
        per_node = ", ".join(f"{tag} {n / nodes / elapsed:.2f}" for tag, n in types.most_common())
        result.info.append(f"idle messages sent per node per second, by type: {per_node or 'none'}")
        result.info.append(config_digest_note(cluster.nodes[1]))
        progress(result, f"idle {result.get('idle_bytes'):.0f} B/s per node")

    attempt(result, "idle", idle)
    grace = serf.suspicion_timeout_max(nodes) + 2.0
    for percent in LOSS_LEVELS:

        def lossy(percent: int = percent) -> None:
            start = time.monotonic()
            try:
                for host in cluster.lab.hosts:
                    host.set_loss(percent)
                time.sleep(args.loss_seconds)
            finally:
                for host in cluster.lab.hosts:
                    host.set_loss(0)
            time.sleep(grace)
            end = time.monotonic()
            cluster.poll()
            cluster.check_running(cluster.nodes)
            deaths = sum(log.count("member dead", names, start, end) for log in cluster.logs)
            raised = sum(log.count("member suspect", names, start, end, own=True) for log in cluster.logs)
            relayed = sum(log.count("member suspect", names, start, end) for log in cluster.logs)
            result.values[f"false_{percent}"] = deaths
            result.values[f"susp_{percent}"] = raised
            result.info.append(f"{percent}% loss: {relayed} 'member suspect' lines in all, {raised} raised locally")
            progress(result, f"{percent}% loss: {deaths} false deaths, {raised} suspicions raised")
            cluster.wait_views(cluster.nodes, all_alive, SETTLE_TIMEOUT)

        attempt(result, f"{percent}% loss", lossy)

    def kill() -> None:
        victim = cluster.nodes[-1]
        victim.drop_client()
        assert victim.proc is not None
        proc = victim.proc
        first, first_dead, everyone = debvisor_detection(
            cluster, victim, cluster.nodes[:-1], lambda: victim.host.kill_process(proc)
        )
        result.values["kill_suspect"] = first
        result.values["kill_first"] = first_dead
        result.values["kill_all"] = everyone
        progress(result, f"SIGKILL: suspect {first:.2f} s, all dead {everyone:.2f} s")

    attempt(result, "SIGKILL", kill)

    def silent() -> None:
        victim = cluster.nodes[-2]
        victim.drop_client()
        first, _, everyone = debvisor_detection(cluster, victim, cluster.nodes[:-2], victim.host.isolate)
        result.values["silent_suspect"] = first
        result.values["silent_all"] = everyone
        progress(result, f"cut off: suspect {first:.2f} s, all dead {everyone:.2f} s")

    attempt(result, "cut off", silent)
    cluster.check_running(cluster.nodes[:-1])


# -- simulator -----------------------------------------------------------------------------------


@dataclass
class SimCell:
    times: list[float]  # math.inf: not reached within the virtual-time limit or the CPU budget
    cpu: float
    false_deaths: int
    skipped: int  # updates not timed because the cell's CPU budget ran out

    def text(self) -> str:
        if not self.times:
            return "- (CPU budget)"
        ordered = sorted(self.times)
        median = statistics.median(ordered)

        def one(t: float) -> str:
            return f"{t:.2f}" if math.isfinite(t) else "never"

        out = f"{one(median)} ({one(ordered[0])}-{one(ordered[-1])})" if len(ordered) > 1 else one(median)
        return out + (f" [{len(ordered)} of {len(ordered) + self.skipped}]" if self.skipped else "")


def timed_update(sim: Simulator, origin: str, limit: float, cpu_deadline: float) -> float:
    """Like `Simulator.spread_time` (99.99% of the other live nodes), but gives up at `cpu_deadline`."""
    marker = f"{sim.now:.6f}"  # the marker `spread_time` sets
    first = min(limit, 5.0)
    took = sim.spread_time(origin, coverage=0.9999, timeout=first)
    if took is not None:
        return took
    start = sim.now - first
    live = [n for n in sim.live_nodes() if n != origin]
    needed = max(1, int(len(live) * 0.9999 + 0.999999))

    def reached() -> bool:
        count = 0
        for name in live:
            member = sim.nodes[name].members.get(origin)
            if member is not None and member.meta.get("marker") == marker:
                count += 1
        return count >= needed

    while sim.now - start < limit and time.process_time() < cpu_deadline:
        if sim.run_for(1.0, stop=reached, check_every=0.01):
            return sim.now - start
    return math.inf


def sim_cell(size: int, loss: float, repeats: int, config: GossipTuning, cpu_budget: float) -> SimCell:
    cpu = time.process_time()
    deadline = cpu + cpu_budget
    sim = Simulator(size, config=config, network=NetworkModel(loss=loss), seed=size * 1000 + round(loss * 100))
    sim.preconverge()
    sim.run_for(SIM_WARMUP)
    names = list(sim.nodes)
    times: list[float] = []
    for k in range(repeats):
        if time.process_time() >= deadline:
            break
        if k:
            sim.run_for(SIM_BETWEEN)
        times.append(timed_update(sim, names[(k * len(names)) // repeats], SIM_TIMEOUT, deadline))
    return SimCell(times, time.process_time() - cpu, len(sim.false_deaths()), repeats - len(times))


def run_sim(sizes: Sequence[int], repeats: int, lan: bool, cpu_budget: float) -> list[str]:
    profiles = [("debvisor", GossipTuning())] + ([("memberlist LAN timings", GossipTuning.lan())] if lan else [])
    lines = [
        "Table 2 - simulator: seconds until an update reaches 99.99% of the other nodes "
        f"(median of {repeats} updates from different nodes, range in brackets; lower is better)",
        "  frames lost independently with the given probability, latency 0.5-1 ms, no retransmission; 'never': not",
        f"  within {SIM_TIMEOUT:g} s of virtual time (or the cell's {cpu_budget:g} s CPU budget); false deaths: death",
        "  verdicts about running nodes during the cell",
    ]
    header = f"  {'profile':<22} {'nodes':>5} " + " ".join(f"{f'{loss:.0%} loss':>20}" for loss in SIM_LOSSES)
    lines.append(header + f" {'false deaths':>14} {'CPU':>6}")
    for profile, config in profiles:
        for size in sizes:
            cells = []
            for loss in SIM_LOSSES:
                cell = sim_cell(size, loss, repeats, config, cpu_budget)
                cells.append(cell)
                print(
                    f"  [sim {profile} n={size} loss={loss:.0%}] {cell.text()} s, {cell.false_deaths} false deaths, "
                    f"{cell.cpu:.1f} s CPU",
                    flush=True,
                )
            cpu = sum(c.cpu for c in cells)
            deaths = "/".join(str(c.false_deaths) for c in cells)
            lines.append(
                f"  {profile:<22} {size:>5} "
                + " ".join(f"{c.text():>20}" for c in cells)
                + f" {deaths:>14} {cpu:>5.0f}s"
            )
    return lines


# -- report --------------------------------------------------------------------------------------


def fmt(value: float, digits: int) -> str:
    if math.isnan(value):
        return "-"
    return f"{value:.{digits}f}"


def ratio(dv: float, sf: float) -> str:
    if math.isnan(dv) or math.isnan(sf):
        return "-"
    if sf == 0:
        return "= (both 0)" if dv == 0 else "inf (Serf 0)"
    return f"{dv / sf:.2f}"


def behind(dv: float, sf: float, metric: Metric) -> bool:
    if math.isnan(dv) or math.isnan(sf):
        return False
    if metric.digits == 0 and metric.unit == "":  # counts
        return dv > sf
    return dv > sf * 1.10  # within 10% is noise at this sample size


def suspicion_bounds(config: GossipTuning, nodes: int) -> tuple[float, float]:
    """The (shortest, longest) suspicion timeout the core uses with `nodes` live members and `config`."""
    sim = Simulator(nodes, config=config)
    sim.preconverge()
    node = next(iter(sim.nodes.values()))
    low, high = node._suspicion_bounds()
    return float(low), float(high)


def timing_facts(sizes: Sequence[int]) -> list[str]:
    """The timings behind the reasons, read from this checkout's `GossipTuning` (memberlist LAN for Serf)."""
    dv, lan = GossipTuning(), GossipTuning.lan()
    facts = [
        f"probe every {dv.probe_interval:g} s, timeout {dv.probe_timeout:g} s (Serf {lan.probe_interval:g} s, "
        f"{lan.probe_timeout:g} s); gossip every {dv.gossip_interval:g} s to {dv.gossip_nodes} (Serf "
        f"{lan.gossip_interval:g} s to {lan.gossip_nodes}); push-pull every {dv.push_pull_interval:g} s (Serf 30 s)"
    ]
    for n in sizes:
        try:
            a, b = suspicion_bounds(dv, n)
            c, d = suspicion_bounds(lan, n)
        except (AttributeError, TypeError, ValueError):
            continue
        facts.append(f"suspicion timeout at N={n}: DebVisor {a:.2f}..{b:.2f} s, Serf {c:.2f}..{d:.2f} s")
    return facts


REASONS = {
    "join": (
        "every DebVisor frame goes over TCP + TLS 1.3 with client certificates, and a node dials a peer the first "
        "time it has something for it, so a join costs a TLS handshake per pair (ECDSA in CPython's ssl) besides the "
        "gossip rounds, with the N Python processes sharing 2 cores while the N-1 joins land within a second. Serf "
        "joins with one TCP push-pull to the seed and then speaks plain UDP."
    ),
    "kill": (
        "unexpected: DebVisor suspects a peer the moment its TCP connection breaks (the kernel resets it when the "
        "process dies) and its suspicion timeouts are far shorter than Serf's; look at the node logs for delays."
    ),
    "silent": (
        "a silent host gives TCP nothing to notice, so DebVisor relies on probes and indirect probes like Serf; a "
        "write to the silent peer waits for the write deadline, and a node whose probes fail raises its Lifeguard "
        "awareness, which stretches its own probe interval and timeout."
    ),
    "false": (
        "DebVisor's suspicion timeouts are several times shorter than Serf's (see the timings above), so a suspect "
        "has far less time to hear of the suspicion and refute it. Over TCP a lost segment is resent only after the "
        "retransmission timeout (200 ms or more, doubling on each loss), so loss becomes late acks and late "
        "refutations, and every frame queued behind a lost segment on that connection is late too (head-of-line "
        "blocking); Serf's UDP loses single datagrams independently."
    ),
    "susp": (
        "DebVisor probes more often with a shorter timeout (see the timings above), and over TCP a lost segment "
        "(or its ACK) arrives only after a retransmission timeout of at least 200 ms, usually after the probe "
        "timeout, so more probes fail; a broken TLS connection also raises a suspicion at once."
    ),
    "idle_bytes": (
        "DebVisor probes more often than Serf (see the timings above); each frame is a TLS record (5 B header + "
        "16 B tag) in a TCP segment (20 B header + 12 B timestamp option), acknowledged by a separate 66 B TCP ACK "
        "unless the receiver has data to send back, and names its sender and address. The periodic push-pull "
        "(every 30 s, both ways) carries every member's state with its metadata (API address, version, certificate "
        "fingerprint), so it grows with N; the configuration map's and the node state's anti-entropy cost two "
        "16-byte summaries a second riding on probes (Serf has nothing running in their place). Serf's ping and "
        "ack are bare UDP datagrams. See the notes: bytes per packet and the nodes' own frame counters."
    ),
    "idle_packets": "more probes per second, plus a TCP ACK segment for most received frames (see idle traffic).",
    "idle_cpu": (
        "CPython asyncio with TLS on every frame, probing more often, vs Go with plain UDP; each DebVisor node also "
        "runs its API server and the configuration replication."
    ),
    "rss": (
        "a DebVisor node is CPython plus the whole appliance (Litestar API, granian, SQLite, crypto); Serf is one "
        "Go binary."
    ),
}


def group_of(key: str) -> str:
    """The REASONS entry for a metric key: idle_bytes and idle_packets stay apart, kill_* is kill, ..."""
    if key in REASONS:
        return key
    return key.split("_", maxsplit=1)[0]


def report(results: dict[tuple[str, int], SystemResult], sizes: Sequence[int], loss_seconds: float) -> list[str]:
    rows = metrics(loss_seconds)
    width = max(len(m.label) + len(m.unit) + 3 for m in rows)
    lines = [
        "Table 1 - real processes, one per network namespace on one bridge (Serf 0.8.2 -profile=lan vs "
        "debvisor serve); ratio = DebVisor / Serf, LOWER IS BETTER in every row (ratio < 1: DebVisor better)",
        "  a) from the moment the last of the N-1 joiners started its join (Serf: 'agent: joining' after `serf join`;",
        "     DebVisor: its answered join request, or the opening if later; all nodes up behind a closed seed port)",
        "     until every node lists all N alive",
        "  b)/c) from SIGKILL / from cutting the host off; c) runs after b), with N-1 live members",
        f"  d) every host drops p% of packets in and p% out for {loss_seconds:g} s; deaths counted until Serf's max",
        "     suspicion timeout + 2 s later; each (observer, running member) verdict counts",
        "  e) veth tx counters (L2 bytes incl. headers, TCP ACKs, ARP) over the idle window; CPU/RSS from /proc",
    ]
    for size in sizes:
        sf = results.get(("serf", size))
        dv = results.get(("debvisor", size))
        lines.append("")
        lines.append(f"  N={size:<3} {'':<{width - 8}} {'Serf':>10} {'DebVisor':>10} {'DV/Serf':>13}")
        for m in rows:
            a = sf.get(m.key) if sf else math.nan
            b = dv.get(m.key) if dv else math.nan
            label = f"{m.label} ({m.unit})" if m.unit else m.label
            lines.append(f"  {label:<{width}} {fmt(a, m.digits):>10} {fmt(b, m.digits):>10} {ratio(b, a):>13}")
    codes = {r.code for r in results.values() if r.code}
    if len(codes) > 1:
        lines.append("")
        lines.append(
            f"  WARNING: appliance/ changed while this benchmark ran ({len(codes)} versions): the DebVisor rows "
            "above do not all measure the same code; see the fingerprints in the notes."
        )
    lines.append("")
    lines.append("Notes per run:")
    for (system, size), res in sorted(results.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        lines.append(f"  {system} N={size} ({res.seconds:.0f} s):")
        lines += [f"    {line}" for line in res.info]
    lines.append("")
    lines.append(
        "Where DebVisor is behind Serf (ratio > 1.10, or more false deaths/suspicions), and plausible reasons:"
    )
    lines += [f"  timings: {fact}" for fact in timing_facts(sizes)]
    found: dict[str, list[str]] = {}
    for size in sizes:
        sf = results.get(("serf", size))
        dv = results.get(("debvisor", size))
        if sf is None or dv is None:
            continue
        for m in rows:
            if behind(dv.get(m.key), sf.get(m.key), m):
                found.setdefault(group_of(m.key), []).append(
                    f"N={size} {m.label.strip()}: {fmt(dv.get(m.key), m.digits)} vs {fmt(sf.get(m.key), m.digits)}"
                )
    if not found:
        lines.append("  nowhere in this run.")
    for group, cases in found.items():
        lines += [f"  - {case}" for case in cases]
        lines.append(f"    why: {REASONS.get(group, '')}")
    problems = [(k, r) for k, r in sorted(results.items(), key=lambda kv: (kv[0][1], kv[0][0])) if r.problems]
    lines.append("")
    lines.append("Problems seen (failed steps, node log errors/warnings other than injected-fault suspicions/deaths):")
    if not problems:
        lines.append("  none.")
    for (system, size), res in problems:
        lines.append(f"  {system} N={size}:")
        lines += [f"    {p}" for p in res.problems]
    return lines


# -- main ----------------------------------------------------------------------------------------


def int_list(text: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of integers: {text!r}") from exc
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"need positive integers: {text!r}")
    return values


def run_system(system: str, size: int, args: argparse.Namespace, workdir: Path) -> SystemResult:
    """One system at one size; an unexpected failure becomes a reported problem, not a lost benchmark."""
    print(f"{'Serf' if system == 'serf' else 'DebVisor'}, N={size}", flush=True)
    try:
        return run_serf(size, args) if system == "serf" else run_debvisor(size, args, workdir)
    except Exception as exc:
        failed = SystemResult(system, size)
        failed.problems.append(f"run aborted: {type(exc).__name__}: {str(exc)[-1500:]}")
        print(f"  [{system} N={size}] run aborted: {type(exc).__name__}: {exc}", flush=True)
        return failed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int_list, default=[5, 16, 32], help="real cluster sizes (default 5,16,32)")
    parser.add_argument("--loss-seconds", type=float, default=300.0, help="seconds per loss level (default 300)")
    parser.add_argument("--idle-seconds", type=float, default=60.0, help="idle traffic window (default 60)")
    parser.add_argument("--sim-sizes", type=int_list, default=[100, 1000, 2000], help="default 100,1000,2000")
    parser.add_argument("--sim-repeats", type=int, default=3, help="updates timed per simulator cell (default 3)")
    parser.add_argument(
        "--sim-cpu-budget", type=float, default=300.0, help="CPU seconds per simulator cell before giving up"
    )
    parser.add_argument("--sim-lan", action="store_true", help="also simulate memberlist's LAN timings")
    parser.add_argument("--no-sim", action="store_true", help="skip table 2")
    parser.add_argument("--no-real", action="store_true", help="skip table 1")
    parser.add_argument("--systems", default="serf,debvisor", help="which systems table 1 runs (default both)")
    parser.add_argument("--keep", action="store_true", help="keep the DebVisor data dirs and logs")
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: sizes 5,16, 30 s per loss level and idle, sim 100,1000"
    )
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.loss_seconds, args.idle_seconds, args.sim_sizes = [5, 16], 30.0, 30.0, [100, 1000]
    if min(args.sizes) < 3:
        parser.error("--sizes: at least 3 nodes (one is killed, one cut off)")
    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    if set(systems) - {"serf", "debvisor"}:
        parser.error("--systems: serf and/or debvisor")
    # SIGTERM unwinds like Ctrl-C, so every Lab still removes its namespaces, route and processes.
    signal.signal(signal.SIGTERM, signal.default_int_handler)

    began = time.monotonic()
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False, timeout=10,
        cwd=Path(__file__).parent,
    ).stdout.strip()  # fmt: skip
    print(
        f"bench.gossip at commit {commit or '?'}, appliance/ code {code_fingerprint()} (uncommitted changes "
        f"included): sizes {args.sizes}, {args.loss_seconds:g} s per loss level, idle window {args.idle_seconds:g} s, "
        f"sim sizes {args.sim_sizes}; python {sys.version.split()[0]}, {os.cpu_count()} CPUs",
        flush=True,
    )
    output: list[str] = []
    if not args.no_real:
        reason = serf.serf_available() if "serf" in systems else available()
        if reason is not None:
            raise SystemExit(f"cannot run table 1: {reason}")
        workdir = Path(tempfile.mkdtemp(prefix="bench-gossip-"))
        deployed_bytecode(workdir)
        results: dict[tuple[str, int], SystemResult] = {}
        try:
            for size in args.sizes:
                for system in systems:
                    results[(system, size)] = run_system(system, size, args, workdir)
        finally:
            if args.keep:
                print(f"DebVisor data dirs and logs kept in {workdir}", flush=True)
            else:
                shutil.rmtree(workdir, ignore_errors=True)
        output += report(results, args.sizes, args.loss_seconds)
    if not args.no_sim:
        print("Simulator", flush=True)
        output += ["", *run_sim(args.sim_sizes, max(1, args.sim_repeats), args.sim_lan, args.sim_cpu_budget)]
    print("\n" + "\n".join(output), flush=True)
    print(f"\nbench.gossip took {time.monotonic() - began:.0f} s", flush=True)


if __name__ == "__main__":
    main()
