"""DebVisor's per-node service, the appliance.

One process per node owns the machine's networking, units, storage and VMs and speaks for the
whole cluster. `appliance.app.create_app` is where it is assembled; `appliance.cli` is the
`debvisor` command.
"""


def __getattr__(name: str) -> str:
    """`__version__`, looked up on first use (PEP 562).

    Lazily, because importlib.metadata costs ~30 ms of imports (email, zipfile, csv, ...) that
    every `import appliance.<module>` would pay, among them appliance.bootnet, which runs at
    boot before the network comes up and must start fast.
    """
    if name != "__version__":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version  # noqa: PLC0415 - lazy on purpose, see above

    try:
        value = version("debvisor")
    except PackageNotFoundError:  # running from a source tree that was never installed
        value = "0.0.0+source"
    globals()["__version__"] = value
    return value
