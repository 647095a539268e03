"""The test kit: one way to wait, to state what a test needs, and to run real components.

- `wait`: `wait_until` / `wait_until_async`, the only poll loops the suite uses.
- `need`: `require(...)` and friends, a skip on a laptop, a failure under
  DEBVISOR_REQUIRE_INTEGRATION=1.
- `procs`: what /proc says about processes, and the one routine that stops a child.
- `daemon`: a long-running child with its log, stopped by deadline, its log attached to a
  failed test's report.
- `clock`: the fake clock unit tests move by hand.
- `cache`: the per-machine cache of built things and the lock one builder holds.
- `nspawn`: a cached Debian root booted with systemd as PID 1 under systemd-nspawn.
- `libvirtd`: a private libvirtd (and virtlogd) in its own mount namespace.

Modules are imported by name (`from tests.kit.wait import wait_until`); this package imports
nothing itself, so a unit test that needs only the clock does not load subprocess helpers.
"""
