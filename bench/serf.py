"""HashiCorp Serf as the yardstick for our gossip: run real Serf agents in a `tests.netns.Lab`.

One `serf agent` runs in each host namespace, bound to the host's address on port 7946 with
its RPC on the namespace's own loopback (127.0.0.1:7373 everywhere). The helpers measure what
the gossip benchmark compares:

- `join_time`: from starting `serf join` on every agent (all towards one seed) until every
  agent has every member alive;
- `failure_detection`: from SIGKILL of one agent until the first other agent suspects it,
  until the first reports it failed, and until all report it failed;
- `false_failures`: how many "failed" verdicts the agents reach about live members while
  every host drops a given share of its packets;
- `bytes_per_node_per_second`: what a node sends, read from its veth's tx counter (L2 bytes,
  Ethernet headers and ARP included).

Timing comes from the agents' own log lines (`-log-level=info`), timestamped by a reader
thread the moment they arrive: polling `serf members` would cost a Go process start per agent
per poll (about 12 ms of CPU each on this 2-core machine, which would slow the very agents being
measured) and could miss a failed-then-alive flap between polls. Every result is then
confirmed through the RPC (`serf members -format=json` inside the namespace) before it is
returned. Serf only has the member states alive, leaving, left and failed; "suspect" comes from
memberlist's log line "Suspect X has failed, no acks received".

    .venv/bin/python -m bench.serf [--nodes 5] [--idle-seconds 10] [--loss 20] [--loss-seconds 20]
"""

from __future__ import annotations

import argparse
import json
import math
import re
import shutil
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import IO, Any, NamedTuple, TypeVar

from tests.netns import Host, Lab, available

SERF = "serf"
GOSSIP_PORT = 7946
RPC_ADDR = "127.0.0.1:7373"  # each namespace has its own loopback, so every agent can use it

_EVENTS = [
    (re.compile(r"serf: EventMemberJoin: (\S+)"), "join"),
    (re.compile(r"serf: EventMemberFailed: (\S+)"), "failed"),
    (re.compile(r"serf: EventMemberLeave: (\S+)"), "leave"),
    (re.compile(r"memberlist: Suspect (\S+) has failed"), "suspect"),
]


class Event(NamedTuple):
    at: float  # time.monotonic() when the log line arrived
    kind: str  # join | failed | leave | suspect
    member: str


@dataclass
class SerfAgent:
    """One running `serf agent` in a Lab host, with the member events parsed from its log."""

    host: Host
    name: str
    proc: subprocess.Popen[bytes]
    events: list[Event] = field(default_factory=list)
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=40))
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _reader: threading.Thread | None = None

    @property
    def address(self) -> str:
        return f"{self.host.address}:{GOSSIP_PORT}"

    def _read(self, stream: IO[bytes]) -> None:
        try:
            for raw in stream:
                now = time.monotonic()
                line = raw.decode(errors="replace").rstrip()
                with self._lock:
                    self.tail.append(line)
                    for pattern, kind in _EVENTS:
                        match = pattern.search(line)
                        if match:
                            self.events.append(Event(now, kind, match.group(1)))
                            break
        except (OSError, ValueError):
            pass  # the Lab closed the pipe during cleanup

    def snapshot(self) -> list[Event]:
        """A copy of the events seen so far."""
        with self._lock:
            return list(self.events)

    def members(self, timeout: float = 5.0) -> dict[str, str]:
        """Member name -> status ("alive", "leaving", "left", "failed") as this agent reports over RPC."""
        result = self.host.run([SERF, "members", f"-rpc-addr={RPC_ADDR}", "-format=json"], timeout=timeout)
        if result.returncode != 0:
            raise RuntimeError(f"serf members on {self.name} failed: {result.stderr.strip()}")
        return {m["name"]: m["status"] for m in json.loads(result.stdout)["members"]}

    def log_tail(self) -> str:
        with self._lock:
            return "\n".join(self.tail)


def serf_available() -> str | None:
    """None if Serf benchmarks can run here (harness usable and `serf` installed), else why not."""
    reason = available()
    if reason is not None:
        return reason
    if shutil.which(SERF) is None:
        return "`serf` is not installed (apt-get install serf)"
    return None


A = TypeVar("A", bound="SerfAgent")


def start_agents(
    lab: Lab, *, extra_args: Sequence[str] = (), timeout: float = 10.0, agent_class: type[A] | None = None
) -> list[A]:
    """Start one unjoined agent per Lab host (LAN profile) and wait until each answers on its RPC.

    `agent_class` lets a caller use its own SerfAgent subclass (the benchmark's records timings).
    """
    factory: Any = agent_class or SerfAgent
    agents: list[A] = []
    for host in lab.hosts:
        argv = [
            SERF, "agent", f"-node={host.name}", f"-bind={host.address}:{GOSSIP_PORT}",
            f"-rpc-addr={RPC_ADDR}", "-profile=lan", "-log-level=info", *extra_args,
        ]  # fmt: skip
        proc: subprocess.Popen[bytes] = host.popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        agent = factory(host=host, name=host.name, proc=proc)
        assert proc.stdout is not None
        agent._reader = threading.Thread(target=agent._read, args=(proc.stdout,), daemon=True)
        agent._reader.start()
        agents.append(agent)
    deadline = time.monotonic() + timeout
    for agent in agents:
        while True:
            if agent.proc.poll() is not None:
                raise RuntimeError(f"serf agent {agent.name} exited {agent.proc.returncode}:\n{agent.log_tail()}")
            probe = agent.host.run([SERF, "members", f"-rpc-addr={RPC_ADDR}"], timeout=5.0)
            if probe.returncode == 0:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"serf agent {agent.name} RPC not up after {timeout} s:\n{agent.log_tail()}")
            time.sleep(0.05)
    return agents


def _wait(condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not reached after {timeout} s")
        time.sleep(interval)


def _first(agent: SerfAgent, kind: str, member: str, since: float) -> float | None:
    for event in agent.snapshot():
        if event.at >= since and event.kind == kind and event.member == member:
            return event.at
    return None


def wait_all_alive(agents: Sequence[SerfAgent], *, timeout: float = 30.0) -> float:
    """Poll every agent's RPC until each reports all `agents` alive; seconds waited."""
    start = time.monotonic()
    names = {a.name for a in agents}

    def converged() -> bool:
        for agent in agents:
            view = agent.members()
            if any(view.get(name) != "alive" for name in names):
                return False
        return True

    _wait(converged, timeout, "all members alive on all agents", interval=0.2)
    return time.monotonic() - start


def join_time(agents: Sequence[SerfAgent], *, seed: int = 0, timeout: float = 30.0) -> float:
    """Seconds from starting `serf join SEED` on every other agent until every agent has all members alive.

    The joins start together (one `serf join` process per namespace). Each agent's time is its
    last member-join log event; the result is the slowest agent's, confirmed over RPC.
    """
    target = agents[seed]
    start = time.monotonic()
    joins = [
        a.host.popen([SERF, "join", f"-rpc-addr={RPC_ADDR}", target.address], stdout=subprocess.DEVNULL)
        for a in agents
        if a is not target
    ]
    names = [a.name for a in agents]

    def complete_at() -> float | None:
        for proc in joins:
            if proc.poll() not in (None, 0):
                raise RuntimeError(f"serf join exited {proc.returncode}")
        latest = start
        for agent in agents:
            for name in names:
                if name == agent.name:
                    continue
                at = _first(agent, "join", name, start)
                if at is None:
                    return None
                latest = max(latest, at)
        return latest

    _wait(lambda: complete_at() is not None, timeout, "every agent seeing every member join")
    for proc in joins:
        if proc.wait(timeout=timeout) != 0:
            raise RuntimeError(f"serf join exited {proc.returncode}")
    wait_all_alive(agents, timeout=timeout)
    done = complete_at()
    assert done is not None
    return done - start


class Detection(NamedTuple):
    """Seconds from SIGKILL of an agent until others noticed (math.nan where nobody logged it)."""

    first_suspect: float  # first agent's memberlist "Suspect ... has failed" line
    first_failed: float  # first agent's EventMemberFailed
    all_failed: float  # last agent's EventMemberFailed, i.e. every other agent says "failed"


def failure_detection(agents: Sequence[SerfAgent], victim: int, *, timeout: float = 60.0) -> Detection:
    """SIGKILL agent `victim` and time until the other agents suspect it and mark it failed (RPC-confirmed).

    Call it on a settled cluster: a suspicion of the victim still pending from an earlier
    disturbance would fire early and be counted (`false_failures` waits that out itself).
    """
    dead = agents[victim]
    others = [a for a in agents if a is not dead]
    start = time.monotonic()
    dead.host.kill_process(dead.proc, signal.SIGKILL)

    def failed_times() -> list[float | None]:
        return [_first(a, "failed", dead.name, start) for a in others]

    _wait(lambda: all(t is not None for t in failed_times()), timeout, f"every agent marking {dead.name} failed")
    _wait(
        lambda: all(a.members().get(dead.name) == "failed" for a in others),
        timeout,
        f"RPC status failed for {dead.name}",
        interval=0.2,
    )
    failed = [t for t in failed_times() if t is not None]
    suspects = [t for t in (_first(a, "suspect", dead.name, start) for a in others) if t is not None]
    return Detection(
        first_suspect=(min(suspects) - start) if suspects else math.nan,
        first_failed=min(failed) - start,
        all_failed=max(failed) - start,
    )


def count_events(agents: Sequence[SerfAgent], kind: str, since: float, until: float) -> int:
    """How many `kind` events ("failed", "suspect", "join", "leave") all agents logged in [since, until]."""
    return sum(1 for a in agents for e in a.snapshot() if e.kind == kind and since <= e.at <= until)


def suspicion_timeout_max(nodes: int) -> float:
    """Longest time a LAN-profile Serf agent keeps a member suspect before declaring it failed.

    memberlist (Lifeguard) starts a suspicion timer of SuspicionMult (4) x max(1, log10 n) x
    ProbeInterval (1 s) and, when it expects confirmations (n >= 4), stretches it up to
    SuspicionMaxTimeoutMult (6) times that until other members confirm: 24 s for 4..10 nodes.
    """
    minimum = 4.0 * max(1.0, math.log10(max(1, nodes))) * 1.0
    return minimum if nodes - 2 < 2 else 6.0 * minimum


def false_failures(
    lab: Lab,
    agents: Sequence[SerfAgent],
    *,
    loss_percent: int,
    seconds: float,
    grace: float | None = None,
    settle_timeout: float = 60.0,
) -> int:
    """Failed verdicts about live members while every host drops `loss_percent`% of its packets each way.

    Loss applies for `seconds`; verdicts are counted until `grace` seconds after it is removed,
    by default `suspicion_timeout_max` + 2 s: a suspicion raised just before the loss ends can
    still turn into a "failed" that long afterwards (and would otherwise land in whatever is
    measured next). Each (observer, member) verdict counts once per occurrence, so one member
    failed by four observers counts four. Afterwards it waits (up to `settle_timeout`) until
    every live agent reports every live agent alive. A packet between two hosts crosses two
    filters (sender's port, receiver's port): per-packet loss is 1 - (1 - p)^2.
    """
    if grace is None:
        grace = suspicion_timeout_max(len(agents)) + 2.0
    live = [a for a in agents if a.proc.poll() is None]
    start = time.monotonic()
    try:
        for host in lab.hosts:
            host.set_loss(loss_percent)
        time.sleep(seconds)
    finally:
        for host in lab.hosts:
            host.set_loss(0)
    time.sleep(grace)
    end = time.monotonic()
    names = {a.name for a in live}
    failures = sum(
        1 for a in live for e in a.snapshot() if e.kind == "failed" and e.member in names and start <= e.at <= end
    )
    wait_all_alive(live, timeout=settle_timeout)
    return failures


def tx_bytes_per_second(lab: Lab, seconds: float) -> list[float]:
    """Bytes each host sent per second over `seconds` (its veth tx counter: L2 bytes, ARP included)."""
    before = [h.link_stats().tx_bytes for h in lab.hosts]
    start = time.monotonic()
    time.sleep(seconds)
    after = [h.link_stats().tx_bytes for h in lab.hosts]
    elapsed = time.monotonic() - start
    return [(b - a) / elapsed for a, b in zip(before, after, strict=True)]


def bytes_per_node_per_second(lab: Lab, seconds: float) -> float:
    """Mean over hosts of `tx_bytes_per_second` (Serf LAN also does a TCP push-pull every 30 s)."""
    rates = tx_bytes_per_second(lab, seconds)
    return sum(rates) / len(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=5)
    parser.add_argument("--idle-seconds", type=float, default=10.0, help="window for bytes/s (0 to skip)")
    parser.add_argument("--loss", type=int, default=20, help="percent per direction per host (0 to skip)")
    parser.add_argument("--loss-seconds", type=float, default=20.0)
    args = parser.parse_args()
    # SIGTERM unwinds like Ctrl-C, so the Lab still removes its namespaces, route and agents.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    reason = serf_available()
    if reason is not None:
        raise SystemExit(f"cannot run: {reason}")
    with Lab(args.nodes) as lab:
        agents = start_agents(lab, agent_class=SerfAgent)
        print(f"serf {args.nodes} agents, LAN profile, bridge in namespaces ({lab.prefix})", flush=True)
        print(f"join: all members alive on all agents after {join_time(agents):.3f} s", flush=True)
        if args.idle_seconds > 0:
            rates = tx_bytes_per_second(lab, args.idle_seconds)
            print(
                f"idle traffic over {args.idle_seconds:.0f} s: {sum(rates) / len(rates):.0f} B/s per node sent "
                f"(min {min(rates):.0f}, max {max(rates):.0f})",
                flush=True,
            )
        if args.loss > 0:
            since = time.monotonic()
            failures = false_failures(lab, agents, loss_percent=args.loss, seconds=args.loss_seconds)
            suspicions = count_events(agents, "suspect", since, time.monotonic())
            print(
                f"{args.loss}% loss each way on every host for {args.loss_seconds:.0f} s: "
                f"{failures} false failed verdicts, {suspicions} suspicions"
            )
        detection = failure_detection(agents, victim=len(agents) - 1)
        print(
            f"SIGKILL of {agents[-1].name}: first suspect {detection.first_suspect:.2f} s, "
            f"first failed {detection.first_failed:.2f} s, all failed {detection.all_failed:.2f} s",
            flush=True,
        )


if __name__ == "__main__":
    main()
