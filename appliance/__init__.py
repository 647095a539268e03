"""DebVisor's per-node service, the appliance.

One process per node owns the machine's networking, units, storage and VMs and speaks for the
whole cluster. `appliance.app.create_app` is where it is assembled; `appliance.cli` is the
`debvisor` command.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("debvisor")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+source"
