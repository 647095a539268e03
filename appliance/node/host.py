"""Read facts about the machine this node runs on: CPU, memory, disk, kernel, addresses.

`LinuxHost` is the only code here that reads /proc and netlink; the node service takes any
object with the `HostProbe` shape, so its logic is tested with plain values. Its /proc reads
are relative to a root directory, so that the enlistment inventory (`appliance.node.inventory`,
which reuses them) is tested against a fake tree.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Protocol

from appliance.node.types import Cpu, Disk, InterfaceAddress, Memory, Scope

_SCOPES: dict[int, Scope] = {0: "global", 200: "site", 253: "link", 254: "host"}


class HostProbe(Protocol):
    """What the node service needs to know about the host."""

    def cpu(self) -> Cpu: ...
    def kernel(self) -> str: ...
    def memory(self) -> Memory: ...
    def disk(self, path: Path) -> Disk: ...
    async def addresses(self) -> list[InterfaceAddress]: ...


class LinuxHost:
    """`HostProbe` for Linux: /proc for CPU and memory, statvfs for disk, netlink for addresses."""

    def __init__(self, root: Path = Path("/")) -> None:
        self.root = root  # where /proc is found (a fake tree in tests)

    def cpu(self) -> Cpu:
        model = ""
        processors = 0
        try:
            for line in (self.root / "proc/cpuinfo").read_text().splitlines():
                if line.startswith("model name") and not model:
                    model = line.partition(":")[2].strip()
                elif line.startswith("processor"):
                    processors += 1
        except OSError:
            pass
        return Cpu(count=processors or os.cpu_count() or 1, model=model or platform.processor() or "unknown")

    def kernel(self) -> str:
        return platform.release()

    def memory(self) -> Memory:
        fields: dict[str, int] = {}
        for line in (self.root / "proc/meminfo").read_text().splitlines():
            key, _, rest = line.partition(":")
            parts = rest.split()
            if parts:
                fields[key] = int(parts[0]) * 1024
        return Memory(total_bytes=fields.get("MemTotal", 0), available_bytes=fields.get("MemAvailable", 0))

    def disk(self, path: Path) -> Disk:
        st = os.statvfs(path)
        return Disk(path=str(path), total_bytes=st.f_blocks * st.f_frsize, free_bytes=st.f_bavail * st.f_frsize)

    async def addresses(self) -> list[InterfaceAddress]:
        from pyroute2 import AsyncIPRoute  # noqa: PLC0415 - netlink is only needed by this adapter

        result: list[InterfaceAddress] = []
        async with AsyncIPRoute() as ipr:
            names = {link["index"]: link.get("IFLA_IFNAME") async for link in await ipr.get_links()}
            async for msg in await ipr.get_addr():
                address = msg.get("IFA_ADDRESS")
                if address is None:
                    continue
                result.append(
                    InterfaceAddress(
                        interface=str(names.get(msg["index"], msg["index"])),
                        family="inet6" if msg["family"] == 10 else "inet",
                        address=str(address),
                        prefix_len=int(msg["prefixlen"]),
                        scope=_SCOPES.get(int(msg["scope"]), "other"),
                    )
                )
        return result
