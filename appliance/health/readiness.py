"""Readiness of the node's subsystems, reported by `/readyz`.

Each subsystem (database, identity, api, and later gossip, network, ...) registers itself as
not ready at assembly time and flips to ready when it can serve; the node is ready only when
all its critical checks are (a check registered with `critical=False` reports a degraded part
without holding the node back). Load balancers and the PXE/boot tests poll this.
"""

from __future__ import annotations

import msgspec


class Check(msgspec.Struct, frozen=True):
    ready: bool
    detail: str = ""


class ReadinessReport(msgspec.Struct, frozen=True):
    ready: bool
    checks: dict[str, Check]


class Readiness:
    """The current state of every registered subsystem."""

    def __init__(self) -> None:
        self._checks: dict[str, Check] = {}
        self._degraded: set[str] = set()  # reported, but never hold readiness back

    def register(self, name: str, detail: str = "starting", *, critical: bool = True) -> None:
        self._checks[name] = Check(False, detail)
        if not critical:
            self._degraded.add(name)

    def set(self, name: str, ready: bool, detail: str = "") -> None:
        if name not in self._checks:
            raise KeyError(f"readiness check {name!r} was never registered")
        self._checks[name] = Check(ready, detail)

    def report(self) -> ReadinessReport:
        checks = dict(self._checks)
        return ReadinessReport(
            ready=bool(checks) and all(c.ready for n, c in checks.items() if n not in self._degraded), checks=checks
        )
