"""What a test needs from the machine: a skip on a laptop, a failure in CI.

`require(condition, reason)` is how a test states what it needs. On a laptop a missing
component is a skip with the reason; with DEBVISOR_REQUIRE_INTEGRATION=1 (as `.ci/run` sets)
it is a failure, so CI cannot pass by skipping. The helpers below are the common checks:
a program on PATH, root, a kernel feature.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

REQUIRE_INTEGRATION_VARIABLE = "DEBVISOR_REQUIRE_INTEGRATION"


def integration_required() -> bool:
    """True when a missing component must fail the test rather than skip it."""
    return os.environ.get(REQUIRE_INTEGRATION_VARIABLE) == "1"


def require(condition: bool, reason: str) -> None:
    """Skip (locally) or fail (in CI) the calling test unless `condition` holds."""
    if condition:
        return
    if integration_required():
        pytest.fail(f"required component missing: {reason}", pytrace=False)
    pytest.skip(reason)


def require_available(problem: str | None) -> None:
    """`problem` is what an availability probe said (`tests.netns.available()`, ...): None when
    the component can run here, else why it cannot."""
    require(problem is None, problem or "")


def require_tool(*names: str) -> None:
    """Each of `names` is a program on PATH (Debian packages: see .ci/packages)."""
    for name in names:
        require(shutil.which(name) is not None, f"{name} is missing (see .ci/packages)")


def require_root() -> None:
    """The test runs as root (namespaces, mounts, containers)."""
    require(os.geteuid() == 0, "needs root")


def _filesystem(name: str) -> Callable[[], bool]:
    def present() -> bool:
        try:
            return any(line.split()[-1] == name for line in Path("/proc/filesystems").read_text().splitlines())
        except OSError:
            return False

    return present


# Features a test may name, and how to see them without changing anything.
KERNEL_FEATURES: dict[str, Callable[[], bool]] = {
    "netns": lambda: Path("/proc/self/ns/net").exists(),
    "tun": lambda: Path("/dev/net/tun").exists(),
    "kvm": lambda: Path("/dev/kvm").exists(),
    "loop": lambda: Path("/dev/loop-control").exists(),
    "cgroup2": lambda: Path("/sys/fs/cgroup/cgroup.controllers").exists(),
    "overlay": _filesystem("overlay"),
}


def kernel_has(feature: str) -> bool:
    """Whether the running kernel offers `feature`: a name in KERNEL_FEATURES, else a loaded module."""
    check = KERNEL_FEATURES.get(feature)
    if check is not None:
        return check()
    return Path("/sys/module", feature).exists()


def require_kernel(*features: str) -> None:
    """The running kernel offers each of `features` (see `kernel_has`)."""
    for feature in features:
        require(kernel_has(feature), f"the kernel lacks {feature}")
