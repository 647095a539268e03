"""The layers hold: what a lower package or module may not import, checked on the source.

`pxe/` is the boot-server library: it runs alone (`python -m pxe serve`) and the appliance
builds on it (appliance/pxe/ wires it into the node), so nothing in it imports `appliance`.
The store's clock (appliance/store/hlc.py) and the forwarder (appliance/api/forward.py) sit
below the cluster domain that uses them, so they import nothing from `appliance.cluster`.
Imports are read with `ast`, so an import inside a function counts too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def imported(path: Path) -> set[str]:
    """Every module `path` imports (absolute names; relative imports resolved in its package)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                names.add(f"{base}.{node.module}" if node.module else base)
            elif node.module is not None:
                names.add(node.module)
    return names


def offending(paths: list[Path], forbidden: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for path in paths:
        bad = sorted(n for n in imported(path) if n == forbidden or n.startswith(f"{forbidden}."))
        if bad:
            found[str(path.relative_to(ROOT))] = bad
    return found


def test_pxe_imports_nothing_from_the_appliance() -> None:
    files = sorted((ROOT / "pxe").rglob("*.py"))
    assert len(files) > 10  # the library is there
    assert offending(files, "appliance") == {}


@pytest.mark.parametrize(
    ("module", "forbidden"),
    [
        ("appliance/store/hlc.py", "appliance.cluster"),
        ("appliance/store/config.py", "appliance.cluster"),
        ("appliance/api/forward.py", "appliance.cluster"),
        ("appliance/api/upstream.py", "appliance.cluster"),
        ("appliance/api/pernode.py", "appliance.cluster"),
        ("appliance/node/facts.py", "appliance.cluster"),
    ],
)
def test_lower_modules_do_not_import_the_cluster_domain(module: str, forbidden: str) -> None:
    assert offending([ROOT / module], forbidden) == {}


def test_the_check_sees_imports_inside_functions() -> None:
    sample = ROOT / "pxe" / "listener.py"  # imports granian inside a function
    assert "granian.server.embed" in imported(sample)
