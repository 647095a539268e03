"""netconfig benchmark (issue 6): apply a 50-object configuration from scratch and a 5-object
change, against `ip -batch` running the same operations and ifupdown2's `ifreload -a`, same run.

This is a benchmark, not a test: it asserts nothing. It prints figures, ratios and where
netconfig's time goes. It needs root (network namespaces). Targets: the seed's "apply under
500 ms"; ours "under 150 ms for 50 objects and within 3x of `ip -batch`".

    .venv/bin/python -m bench.netconfig [--runs 20] [--no-ifupdown2] [--profile] [--show]   # about a minute

The configuration (built in `base_config`, only kinds this host's kernel has): 8 NICs (veth
pairs made before timing, pinned by MAC; their peers are up so the NICs get carrier), 4
bridges over 6 of them and 4 VXLANs with unicast peers, MTUs on all 16 links, 12 addresses
(IPv4 and IPv6), 10 static routes (IPv4 and IPv6, via gateways) and 12 VXLAN flooding peers:
16 + 12 + 10 + 12 = 50 objects. The change (`changed_config`) touches 5 objects: one address
added, one removed, one route added, one removed, one VXLAN peer added.

Every repetition gives each tool its own fresh network namespace (so each starts from the
same scratch state: only `lo` and the veth pairs), times "scratch" then "change" in it, and
deletes it; the order of the three tools rotates from one repetition to the next, so
background load falls on all of them alike. One untimed warm-up repetition of netconfig comes
first (the service is a long-running process: imports done, code paths warm), which also
yields the two plans the `ip -batch` rows replay. After every timed step the namespace is
observed through netconfig and compared with the desired configuration ("state ok").

- netconfig: in-process, as the service does it (`netconfig.apply.converge`, inlined to time
  the steps): observe through `KernelAdapter(netns=NS)` what the desired and (for the change)
  the previous configuration manage, `plan`, `apply`. The adapter's netlink socket is opened
  before the clock starts (the service keeps one adapter); its opening, and parsing the YAML
  text (`load.loads`: decode, validate, canonicalise), are printed separately, not counted.
- ip -batch: the same plan as one `ip -n NS -batch FILE` plus one `bridge -n NS -batch FILE`
  (the VXLAN FDB entries), wall clock from before the first process starts to after the
  second exits. The lines are the plan's own `str(action)` minus the leading `ip `/`bridge `,
  with one exception: netconfig prints a bridge creation with `vlan_filtering 0`, which this
  host's kernel (built without VLAN filtering) refuses even as 0; `KernelAdapter` sends the
  attribute only when it is 1, so the batch leaves it out too.
- ifupdown2: `ifreload -a` of an equivalent /etc/network/interfaces (`interfaces_file`),
  from Debian's ifupdown2 package, downloaded with `apt-get download` into .cache/ and
  unpacked with `dpkg-deb -x`, never installed (it conflicts with ifupdown and acts on the
  whole system). It runs as `ip netns exec NS unshare -m --propagation private sh WRAPPER
  python3 .../ifreload -a`: in the private mount namespace, read-only overlays put the
  package's files over /usr/share and /var/lib and this run's interfaces file and
  ifupdown2.conf over /etc, and a writable overlay (upper layer in a temporary directory kept
  for the namespace's lifetime, so the change run sees the scratch run's saved state) covers
  /run. Nothing on the host's file system or in the root namespace changes. Its
  ifupdown2.conf is Debian's with `template_enable=0` (python3-mako is not a dependency) and
  `state_dir` under /run/network. ifupdown2 has no static routes: they are `post-up ip route
  replace ...` lines, which is how its users write them, so a route removed from the file
  stays in the kernel ("state ok" says so). Timed: the whole command, process start and
  Python imports included, as an operator or a hook runs it; the wrapper's own cost (netns
  exec, unshare, four overlay mounts, sh) is printed separately.

Safety (TESTBED.md): the test subnets (10.93/16, 10.92/16, fd00:93::/32, fd00:92::/32) get an
`unreachable` route in the root namespace while the benchmark runs; nothing is sent from the
root namespace. On exit, including Ctrl-C and SIGTERM, every namespace, route and temporary
directory it made is removed, and a child still running is killed with its process group.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import os
import pstats
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

import msgspec

from netconfig.actions import Action, AddPeer, Create, DelPeer
from netconfig.apply import apply
from netconfig.kernel import KernelAdapter
from netconfig.load import dumps, loads
from netconfig.model import Bridge, BridgePort, NetworkConfig, Nic, Route, Vxlan, from_links
from netconfig.observe import blank_unmanaged, observe_managed
from netconfig.plan import plan

GUARDED = ("10.93.0.0/16", "10.92.0.0/16", "fd00:93::/32", "fd00:92::/32")
NICS = 8
BRIDGES = 4
COMMAND_TIMEOUT = 60.0
SETTLE = 0.2  # seconds after deleting a namespace: the kernel tears it down in a worker thread
REPO = Path(__file__).resolve().parent.parent
CACHE = REPO / ".cache" / "ifupdown2"
TOOLS = ("netconfig", "ip -batch", "ifupdown2")
STAGES = ("scratch", "change")


# -- the configuration ----------------------------------------------------------------------


def nic_mac(index: int) -> str:
    return f"02:db:00:00:00:{index:02x}"


def base_config() -> NetworkConfig:
    """The 50-object configuration (see the module docstring), validated and canonical."""
    nics = [
        Nic(
            name="nic0",
            mac=nic_mac(0),
            mtu=9000,
            addresses=("10.93.0.1/24", "fd00:93::1/64"),
            routes=(
                Route(to="10.93.16.0/20", via="10.93.0.254"),
                Route(to="10.93.64.0/20", via="10.93.0.254", metric=100),
                Route(to="fd00:93:100::/48", via="fd00:93::fe"),
            ),
        ),
        Nic(
            name="nic1",
            mac=nic_mac(1),
            mtu=9000,
            addresses=("10.93.1.1/24", "fd00:93:1::1/64"),
            routes=(Route(to="10.93.32.0/20", via="10.93.1.254"), Route(to="fd00:93:200::/48", via="fd00:93:1::fe")),
        ),
        *(Nic(name=f"nic{i}", mac=nic_mac(i), mtu=1450) for i in range(2, NICS)),
    ]
    bridges = []
    vxlans = []
    for b in range(BRIDGES):
        ports = [f"nic{2 + 2 * b}", f"nic{3 + 2 * b}"] if 3 + 2 * b < NICS else []
        routes = [Route(to=f"10.92.{100 + b}.0/24", via=f"10.92.{b}.254")]
        if b == 0:
            routes.append(Route(to="fd00:92:100::/48", via="fd00:92::fe"))
        bridges.append(
            Bridge(
                name=f"br{b}",
                mtu=1450,
                ports=tuple(BridgePort(name=p) for p in [*ports, f"vx{b}"]),
                addresses=(f"10.92.{b}.1/24", f"fd00:92:{b}::1/64"),
                routes=tuple(routes),
            )
        )
        vxlans.append(
            Vxlan(
                name=f"vx{b}",
                vni=1000 + b,
                local="10.93.0.1",
                peers=tuple(f"10.93.0.{2 + p}" for p in range(3)),
                mtu=1450,
            )
        )
    config = NetworkConfig(nics=tuple(nics), bridges=tuple(bridges), vxlans=tuple(vxlans))
    return loads(dumps(config))


def changed_config(base: NetworkConfig) -> NetworkConfig:
    """`base` with 5 objects changed: +address, -address, +route, -route, +VXLAN peer."""
    links = {link.name: link for link in base.links()}
    br1, br2, nic0, nic1, vx0 = (links[n] for n in ("br1", "br2", "nic0", "nic1", "vx0"))
    assert isinstance(vx0, Vxlan)
    links["br1"] = msgspec.structs.replace(br1, addresses=(*br1.addresses, "10.92.1.2/24"))
    links["br2"] = msgspec.structs.replace(br2, addresses=tuple(a for a in br2.addresses if a != "fd00:92:2::1/64"))
    links["nic1"] = msgspec.structs.replace(nic1, routes=(*nic1.routes, Route(to="10.93.80.0/20", via="10.93.1.254")))
    links["nic0"] = msgspec.structs.replace(nic0, routes=tuple(r for r in nic0.routes if r.to != "10.93.64.0/20"))
    links["vx0"] = msgspec.structs.replace(vx0, peers=(*vx0.peers, "10.93.0.9"))
    return loads(dumps(from_links(list(links.values()))))


def object_counts(config: NetworkConfig) -> dict[str, int]:
    links = config.links()
    return {
        "links": len(links),
        "addresses": sum(len(link.addresses) for link in links),
        "routes": sum(len(link.routes) for link in links),
        "peers": sum(len(v.peers) for v in config.vxlans),
    }


def interfaces_file(config: NetworkConfig) -> str:
    """`config` as ifupdown2's /etc/network/interfaces (routes as `post-up ip route replace`)."""
    stanzas = []
    for link in config.links():
        lines = [f"auto {link.name}", f"iface {link.name}"]
        if isinstance(link, Bridge):
            lines += [f"    bridge-ports {' '.join(p.name for p in link.ports)}", "    bridge-stp off"]
        if isinstance(link, Vxlan):
            lines += [f"    vxlan-id {link.vni}", f"    vxlan-port {link.port}", "    vxlan-learning no"]
            if link.local is not None:
                lines.append(f"    vxlan-local-tunnelip {link.local}")
            lines += [f"    vxlan-remoteip {peer}" for peer in link.peers]
        if link.mtu is not None:
            lines.append(f"    mtu {link.mtu}")
        lines += [f"    address {address}" for address in link.addresses]
        for route in link.routes:
            via = f" via {route.via}" if route.via else ""
            metric = f" metric {route.metric}" if route.metric is not None else ""
            lines.append(f"    post-up ip route replace {route.to}{via}{metric} dev {link.name} proto static")
        stanzas.append("\n".join(lines))
    return "\n\n".join(stanzas) + "\n"


def batch_files(actions: Sequence[Action]) -> tuple[str, str]:
    """(`ip -batch` text, `bridge -batch` text) doing `actions`, from their own printed form."""
    ip_lines: list[str] = []
    bridge_lines: list[str] = []
    for action in actions:
        line = str(action)
        if isinstance(action, Create) and isinstance(action.link, Bridge) and not action.link.vlan_filtering:
            line = line.replace(" vlan_filtering 0", "")  # see the module docstring
        if isinstance(action, AddPeer | DelPeer):
            bridge_lines.append(line.removeprefix("bridge "))
        else:
            ip_lines.append(line.removeprefix("ip "))
    return "".join(f"{x}\n" for x in ip_lines), "".join(f"{x}\n" for x in bridge_lines)


# -- processes and namespaces ---------------------------------------------------------------


def run(argv: list[str], *, input_text: str | None = None) -> str:
    """Run an untimed administrative command; its stdout; RuntimeError with stderr on failure."""
    result = subprocess.run(
        argv, input=input_text, capture_output=True, text=True, timeout=COMMAND_TIMEOUT, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({result.returncode}): {result.stderr.strip()}")
    return result.stdout


def quiet(argv: list[str]) -> None:
    """Run a cleanup command, ignoring failure (the thing may already be gone)."""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        subprocess.run(argv, capture_output=True, timeout=COMMAND_TIMEOUT, check=False)


def timed(argv: list[str]) -> tuple[float, int, str]:
    """Run `argv` in its own process group; (wall seconds, exit code, stderr). The group is
    killed if anything (a timeout, Ctrl-C) interrupts the wait."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )
    try:
        _, err = proc.communicate(timeout=COMMAND_TIMEOUT)
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise
    return time.perf_counter() - start, proc.returncode, err.decode(errors="replace")


class Lab:
    """Guard routes in the root namespace and scratch namespaces; `close()` removes them all."""

    def __init__(self) -> None:
        self.prefix = f"nb{secrets.token_hex(3)}"
        self.count = 0
        self.live: list[str] = []
        self.routes: list[list[str]] = []

    def guard(self) -> None:
        for subnet in GUARDED:
            family = "-6" if ":" in subnet else "-4"
            for _attempt in range(5):
                route = [family, "route", "add", "unreachable", subnet, "metric", str(1000 + secrets.randbelow(60000))]
                if subprocess.run(["ip", *route], capture_output=True, check=False).returncode == 0:
                    self.routes.append(route)
                    break
            else:
                raise RuntimeError(f"cannot add an unreachable route for {subnet}")

    def scratch(self) -> str:
        """A new namespace with `lo` up and the NICs as veth pairs (NIC down, peer up)."""
        self.count += 1
        name = f"{self.prefix}-{self.count}"
        run(["ip", "netns", "add", name])
        self.live.append(name)
        lines = ["link set lo up"]
        for i in range(NICS):
            lines.append(f"link add nic{i} address {nic_mac(i)} type veth peer name pnic{i}")
            lines.append(f"link set pnic{i} up")
        run(["ip", "-n", name, "-batch", "-"], input_text="\n".join(lines) + "\n")
        return name

    def delete(self, name: str) -> None:
        if name in self.live:
            quiet(["ip", "netns", "del", name])
            self.live.remove(name)
            time.sleep(SETTLE)

    def close(self) -> None:
        for name in list(self.live):
            quiet(["ip", "netns", "del", name])
        self.live.clear()
        for route in self.routes:
            quiet(["ip", route[0], "route", "del", *route[3:]])
        self.routes.clear()


def other_namespaces(lab: Lab) -> int:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False).stdout
    return sum(1 for line in out.splitlines() if line.strip() and not line.startswith(lab.prefix))


def state_check(netns: str, desired: NetworkConfig, previous: NetworkConfig | None = None) -> str:
    """Return "ok" if the namespace holds exactly `desired` (as netconfig observes it), else what differs."""
    with KernelAdapter(netns) as adapter:
        observed = blank_unmanaged(observe_managed(adapter, desired, previous), desired)
    if observed == desired:
        return "ok"
    got = {link.name: link for link in observed.links()}
    differ = []
    for want in desired.links():
        have = got.get(want.name)
        if have is None:
            differ.append(f"{want.name} missing")
            continue
        for name in want.__struct_fields__:
            wanted, found = getattr(want, name), getattr(have, name)
            if wanted == found:
                continue
            if isinstance(wanted, tuple) and isinstance(found, tuple):
                extra = ", ".join(_item(x) for x in found if x not in wanted)
                missing = ", ".join(_item(x) for x in wanted if x not in found)
                differ.append(
                    f"{want.name}.{name}"
                    + (f" extra {extra}" if extra else "")
                    + (f" missing {missing}" if missing else "")
                )
            else:
                differ.append(f"{want.name}.{name} {found!r} (want {wanted!r})")
    return "; ".join(differ) or "differs"


def _item(value: object) -> str:
    if isinstance(value, Route):
        return value.to + (f" via {value.via}" if value.via else "") + f" metric {value.metric}"
    return str(value)


# -- the three tools -------------------------------------------------------------------------


@dataclass
class Sample:
    """One timed step: total seconds, netconfig's breakdown, and whether the state came out right."""

    seconds: float
    parts: dict[str, float] = field(default_factory=dict)
    state: str = "ok"
    error: str = ""


def converge_timed(adapter: KernelAdapter, desired: NetworkConfig, previous: NetworkConfig | None) -> Sample:
    """`netconfig.apply.converge`, step by step with a clock between the steps."""
    t0 = time.perf_counter()
    observed = observe_managed(adapter, desired, previous)
    t1 = time.perf_counter()
    actions = plan(desired, observed)
    t2 = time.perf_counter()
    apply(actions, adapter)
    t3 = time.perf_counter()
    return Sample(t3 - t0, {"observe": t1 - t0, "plan": t2 - t1, "apply": t3 - t2, "actions": len(actions)})


def run_netconfig(lab: Lab, base: NetworkConfig, change: NetworkConfig) -> tuple[dict[str, Sample], float]:
    """Scratch then change in a fresh namespace; the samples and the socket-opening time."""
    netns = lab.scratch()
    try:
        with KernelAdapter(netns) as adapter:
            t0 = time.perf_counter()
            adapter.links()  # opens the socket; the service keeps its adapter open
            opened = time.perf_counter() - t0
            scratch = converge_timed(adapter, base, None)
            scratch.state = state_check(netns, base)
            changed = converge_timed(adapter, change, base)
            changed.state = state_check(netns, change, base)
        return {"scratch": scratch, "change": changed}, opened
    finally:
        lab.delete(netns)


def plans(lab: Lab, base: NetworkConfig, change: NetworkConfig) -> tuple[list[Action], list[Action]]:
    """The scratch and change plans, computed and applied in a throwaway namespace (untimed)."""
    netns = lab.scratch()
    try:
        with KernelAdapter(netns) as adapter:
            first = plan(base, observe_managed(adapter, base))
            apply(first, adapter)
            second = plan(change, observe_managed(adapter, change, base))
            return first, second
    finally:
        lab.delete(netns)


def run_ip_batch(lab: Lab, files: dict[str, tuple[Path, Path]], configs: dict[str, NetworkConfig]) -> dict[str, Sample]:
    netns = lab.scratch()
    try:
        result = {}
        for stage in STAGES:
            ip_file, bridge_file = files[stage]
            start = time.perf_counter()
            _, rc1, err1 = timed(["ip", "-n", netns, "-batch", str(ip_file)])
            _, rc2, err2 = timed(["bridge", "-n", netns, "-batch", str(bridge_file)])
            sample = Sample(time.perf_counter() - start)
            if rc1 or rc2:
                sample.error = (err1 + err2).strip()
            sample.state = state_check(netns, configs[stage], configs["scratch"] if stage == "change" else None)
            result[stage] = sample
        return result
    finally:
        lab.delete(netns)


WRAPPER = """\
set -e
mount -t overlay overlay -o "lowerdir=$DV_ETC:/etc,upperdir=$DV_RUN/etc-upper,workdir=$DV_RUN/etc-work" /etc
mount -t overlay overlay -o "lowerdir=$DV_PKG/usr/share:/usr/share" /usr/share
mount -t overlay overlay -o "lowerdir=$DV_PKG/var/lib:/var/lib" /var/lib
mount -t overlay overlay -o "lowerdir=/run,upperdir=$DV_RUN/upper,workdir=$DV_RUN/work" /run
mkdir -p /run/network
exec "$@"
"""


class Ifupdown2:
    """Debian's ifupdown2 unpacked (never installed), run inside a namespace behind overlays."""

    def __init__(self, cache: Path, tmp: Path) -> None:
        self.cache = cache
        self.tmp = tmp
        self.package = cache / "root"
        self.version = ""
        self.wrapper = tmp / "wrapper.sh"
        self.entry = tmp / "ifreload"  # argv[0] must end in "ifreload"; it resolves to the package's

    def prepare(self) -> str | None:
        """Download and unpack the package if needed; None when ready, else why it cannot run."""
        if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
            return "needs apt-get and dpkg-deb"
        debs = sorted(self.cache.glob("ifupdown2_*.deb"))
        if not debs:
            self.cache.mkdir(parents=True, exist_ok=True)
            got = subprocess.run(
                ["apt-get", "download", "ifupdown2"], cwd=self.cache, capture_output=True, text=True, check=False
            )
            debs = sorted(self.cache.glob("ifupdown2_*.deb"))
            if not debs:
                return f"apt-get download ifupdown2 failed: {got.stderr.strip()[-300:]}"
        if not (self.package / "usr/share/ifupdown2/__main__.py").exists():
            shutil.rmtree(self.package, ignore_errors=True)
            run(["dpkg-deb", "-x", str(debs[-1]), str(self.package)])
        self.version = run(["dpkg-deb", "-f", str(debs[-1]), "Version"]).strip()
        if shutil.which("python3", path="/usr/bin") is None:
            return "needs /usr/bin/python3"
        self.wrapper.write_text(WRAPPER)
        self.entry.symlink_to("/usr/share/ifupdown2/__main__.py")
        return None

    def _etc(self, run_dir: Path, interfaces: str) -> Path:
        etc = run_dir / "etc"
        conf = etc / "network" / "ifupdown2"
        conf.mkdir(parents=True, exist_ok=True)
        shutil.copy(self.package / "etc/network/ifupdown2/addons.conf", conf / "addons.conf")
        text = (self.package / "etc/network/ifupdown2/ifupdown2.conf").read_text()
        lines = []
        for line in text.splitlines():
            if line.startswith("template_enable="):
                lines.append("template_enable=0")
            elif line.startswith("state_dir="):
                lines.append("state_dir=/run/network/state/")
            else:
                lines.append(line)
        (conf / "ifupdown2.conf").write_text("\n".join(lines) + "\n")
        (etc / "network" / "interfaces").write_text(interfaces)
        return etc

    def command(self, netns: str, run_dir: Path, argv: list[str]) -> list[str]:
        return ["env", f"DV_ETC={run_dir / 'etc'}", f"DV_PKG={self.package}", f"DV_RUN={run_dir / 'run'}",
                "ip", "netns", "exec", netns, "unshare", "-m", "--propagation", "private",
                "sh", str(self.wrapper), *argv]  # fmt: skip

    def run(self, lab: Lab, configs: dict[str, NetworkConfig]) -> tuple[dict[str, Sample], float]:
        """Scratch then change in a fresh namespace; the samples and the wrapper's own time."""
        netns = lab.scratch()
        run_dir = Path(tempfile.mkdtemp(prefix="ifupdown2-", dir=self.tmp))
        try:
            for sub in ("run/upper", "run/work", "run/etc-upper", "run/etc-work"):
                (run_dir / sub).mkdir(parents=True)
            result = {}
            self._etc(run_dir, "")
            overhead, _, _ = timed(self.command(netns, run_dir, ["true"]))
            for stage in STAGES:
                self._etc(run_dir, interfaces_file(configs[stage]))
                seconds, rc, err = timed(self.command(netns, run_dir, ["/usr/bin/python3", str(self.entry), "-a"]))
                sample = Sample(seconds)
                if rc:
                    sample.error = f"exit {rc}: {err.strip()[-300:]}"
                sample.state = state_check(netns, configs[stage], configs["scratch"] if stage == "change" else None)
                result[stage] = sample
            return result, overhead
        finally:
            lab.delete(netns)
            shutil.rmtree(run_dir, ignore_errors=True)


# -- report ---------------------------------------------------------------------------------


def ms(seconds: float) -> str:
    return f"{seconds * 1000:8.1f}"


def summary(values: Sequence[float]) -> tuple[float, float, float]:
    return statistics.median(values), min(values), max(values)


def profile_netconfig(lab: Lab, base: NetworkConfig, change: NetworkConfig) -> None:
    """cProfile of one netconfig scratch + change, top functions by cumulative and own time."""
    profiler = cProfile.Profile()
    netns = lab.scratch()
    try:
        with KernelAdapter(netns) as adapter:
            adapter.links()
            profiler.enable()
            converge_timed(adapter, base, None)
            converge_timed(adapter, change, base)
            profiler.disable()
    finally:
        lab.delete(netns)
    for key in ("cumulative", "tottime"):
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats(key).print_stats(25)
        print(f"\n-- cProfile, netconfig scratch + change, by {key} --")
        print("\n".join(out.getvalue().splitlines()[4:]))


def main() -> int:  # noqa: PLR0912 - one flat script
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20, help="timed repetitions per tool (default: %(default)s)")
    parser.add_argument("--no-ifupdown2", action="store_true", help="leave out the ifupdown2 rows")
    parser.add_argument("--profile", action="store_true", help="also print a cProfile of netconfig's apply")
    parser.add_argument("--show", action="store_true", help="print the plans, batch files and interfaces file")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench.netconfig needs root (network namespaces)", file=sys.stderr)
        return 1

    main_pid = os.getpid()

    def terminate(signum: int, frame: FrameType | None) -> None:
        # pyroute2 forks a child to open a socket in a named namespace and stops it with
        # SIGTERM (and Ctrl-C reaches it too); raising there would unwind *this* stack in the
        # child and run our cleanup from it, deleting the namespaces under the parent.
        if os.getpid() != main_pid:
            os._exit(128 + signum)
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise SystemExit(128 + signum)

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, terminate)

    base = base_config()
    change = changed_config(base)
    configs = {"scratch": base, "change": change}
    yaml_text = dumps(base).decode()
    t0 = time.perf_counter()
    loads(yaml_text)
    load_seconds = time.perf_counter() - t0

    lab = Lab()
    samples: dict[tuple[str, str], list[Sample]] = {(t, s): [] for t in TOOLS for s in STAGES}
    opens: list[float] = []
    overheads: list[float] = []
    ifupdown2_reason: str | None = "left out (--no-ifupdown2)" if args.no_ifupdown2 else None
    with tempfile.TemporaryDirectory(prefix="bench-netconfig-") as tmpname:
        tmp = Path(tmpname)
        ifupdown2 = Ifupdown2(CACHE, tmp)
        try:
            lab.guard()
            if ifupdown2_reason is None:
                ifupdown2_reason = ifupdown2.prepare()
            crowd = other_namespaces(lab)
            scratch_plan, change_plan = plans(lab, base, change)
            files: dict[str, tuple[Path, Path]] = {}
            lines: dict[str, tuple[int, int]] = {}
            for stage, actions in (("scratch", scratch_plan), ("change", change_plan)):
                ip_text, bridge_text = batch_files(actions)
                lines[stage] = (ip_text.count("\n"), bridge_text.count("\n"))
                files[stage] = (tmp / f"{stage}.ip", tmp / f"{stage}.bridge")
                files[stage][0].write_text(ip_text)
                files[stage][1].write_text(bridge_text)
                if args.show:
                    print(f"-- {stage}: ip -batch --\n{ip_text}-- {stage}: bridge -batch --\n{bridge_text}")
                    print(f"-- {stage}: interfaces --\n{interfaces_file(configs[stage])}")
            run_netconfig(lab, base, change)  # warm-up, untimed
            tools: list[tuple[str, Callable[[], dict[str, Sample]]]] = []

            def netconfig_run() -> dict[str, Sample]:
                result, opened = run_netconfig(lab, base, change)
                opens.append(opened)
                return result

            def ifupdown2_run() -> dict[str, Sample]:
                result, overhead = ifupdown2.run(lab, configs)
                overheads.append(overhead)
                return result

            tools.append(("netconfig", netconfig_run))
            tools.append(("ip -batch", lambda: run_ip_batch(lab, files, configs)))
            if ifupdown2_reason is None:
                tools.append(("ifupdown2", ifupdown2_run))
            started = time.monotonic()
            for repetition in range(args.runs):
                shift = repetition % len(tools)
                for name, function in tools[shift:] + tools[:shift]:
                    for stage, sample in function().items():
                        samples[(name, stage)].append(sample)
                print(f"run {repetition + 1}/{args.runs} done ({time.monotonic() - started:.0f} s)", file=sys.stderr)
            if args.profile:
                profile_netconfig(lab, base, change)
        finally:
            lab.close()

    counts = object_counts(base)
    print(
        f"\nnetconfig apply, {sum(counts.values())} objects ({counts['links']} links: {NICS} NICs (veth), "
        f"{BRIDGES} bridges, {BRIDGES} VXLANs; {counts['addresses']} addresses; {counts['routes']} routes; "
        f"{counts['peers']} VXLAN peers), then a 5-object change"
    )
    print(
        f"{args.runs} runs per row after 1 warm-up; {os.cpu_count()} CPUs, load average "
        f"{os.getloadavg()[0]:.2f} at the end; {crowd} other network namespaces on the machine at the start"
    )
    print(
        f"plans: scratch {len(scratch_plan)} actions ({lines['scratch'][0]} ip + {lines['scratch'][1]} bridge batch "
        f"lines), change {len(change_plan)} actions ({lines['change'][0]} + {lines['change'][1]})\n"
    )
    print(f"{'stage':<8} {'tool':<34} {'p50 ms':>8} {'min ms':>8} {'max ms':>8}  state")
    labels = {
        "netconfig": "netconfig (observe+plan+apply)",
        "ip -batch": "ip -batch + bridge -batch",
        "ifupdown2": "ifupdown2 ifreload -a",
    }
    p50: dict[tuple[str, str], float] = {}
    for stage in STAGES:
        for tool in TOOLS:
            rows = samples[(tool, stage)]
            if not rows:
                print(f"{stage:<8} {labels[tool]:<34} {'not measured':>26}  {ifupdown2_reason}")
                continue
            mid, low, high = summary([s.seconds for s in rows])
            p50[(tool, stage)] = mid
            states = sorted({s.state for s in rows})
            errors = sorted({s.error for s in rows if s.error})
            note = "ok" if states == ["ok"] else " | ".join(states)
            if errors:
                note += " | errors: " + " | ".join(errors)
            print(f"{stage:<8} {labels[tool]:<34} {ms(mid)} {ms(low)} {ms(high)}  {note}")
    print()
    for stage in STAGES:
        ours = p50[("netconfig", stage)]
        ratios = [f"netconfig/ip-batch {ours / p50[('ip -batch', stage)]:.2f}x"]
        if ("ifupdown2", stage) in p50:
            ratios.append(f"netconfig/ifreload {ours / p50[('ifupdown2', stage)]:.2f}x")
        print(f"ratios (p50) {stage:<7}: " + ", ".join(ratios))
    print("\nnetconfig breakdown, p50 [min-max] ms:")
    for stage in STAGES:
        rows = samples[("netconfig", stage)]
        parts = []
        for part in ("observe", "plan", "apply"):
            mid, low, high = summary([s.parts[part] for s in rows])
            parts.append(f"{part} {mid * 1000:.1f} [{low * 1000:.1f}-{high * 1000:.1f}]")
        count = int(rows[0].parts["actions"])
        apply_mid = statistics.median(s.parts["apply"] for s in rows)
        print(f"  {stage:<7}: " + ", ".join(parts) + f"; {count} actions, {apply_mid / count * 1000:.2f} ms each")
    mid, low, high = summary(opens)
    print(f"  not counted: opening the adapter's netlink socket in the namespace {mid * 1000:.1f} ms [{low * 1000:.1f}-"
          f"{high * 1000:.1f}]; loads() of the {len(yaml_text)}-byte YAML {load_seconds * 1000:.1f} ms")  # fmt: skip
    if overheads:
        mid, low, high = summary(overheads)
        print(f"  ifupdown2 wrapper alone (netns exec, unshare, 4 overlay mounts, sh): {mid * 1000:.1f} ms "
              f"[{low * 1000:.1f}-{high * 1000:.1f}], included in its rows; ifupdown2 {ifupdown2.version}")  # fmt: skip
    scratch = p50[("netconfig", "scratch")]
    print("\ntargets:")
    print(f"  seed: apply under 500 ms: {'met' if scratch < 0.5 else 'MISSED'} ({scratch * 1000:.1f} ms)")
    print(f"  ours: 50 objects under 150 ms: {'met' if scratch < 0.15 else 'MISSED'} ({scratch * 1000:.1f} ms)")
    for stage in STAGES:
        ratio = p50[("netconfig", stage)] / p50[("ip -batch", stage)]
        print(f"  ours: {stage} within 3x of ip -batch: {'met' if ratio <= 3 else 'MISSED'} ({ratio:.2f}x)")
    return 0


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except KeyboardInterrupt:
        print("interrupted (namespaces, routes and temporary files removed)", file=sys.stderr)
        raise SystemExit(130) from None
