"""The operator docs agree with the code and with themselves.

Docs drift silently: a heading is renamed and a link elsewhere points nowhere, a flag is added
to `debvisor serve` and the flag table never hears of it, a permission moves between roles
and the role matrix keeps promising the old one. Each check here reads the Markdown as an
operator would and compares it with the code (or with the other pages).
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from appliance.auth.permissions import ROLE_PERMISSIONS, Permission, Role
from appliance.cli import _build_parser

ROOT = Path(__file__).resolve().parents[3]
DOCS = ROOT / "docs"
PAGES = [*sorted(DOCS.glob("*.md")), ROOT / "README.md"]

_FENCE = re.compile(r"^\s*(```|~~~)")
_LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
_CODE_SPAN = re.compile(r"`[^`]*`")


def prose(text: str) -> list[str]:
    """The page's lines outside fenced and indented code blocks, inline code blanked out."""
    lines: list[str] = []
    fenced = False
    for line in text.splitlines():
        if _FENCE.match(line):
            fenced = not fenced
            continue
        if fenced or (line.startswith("    ") and not line.lstrip().startswith(("-", "|", "*"))):
            continue
        lines.append(_CODE_SPAN.sub("", line))
    return lines


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = _CODE_SPAN.sub(lambda m: m.group(0).strip("`"), heading.strip()).lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading's anchor on the page (a repeated heading gets -1, -2, ... as on GitHub)."""
    seen: dict[str, int] = {}
    found: set[str] = set()
    fenced = False
    for line in path.read_text().splitlines():
        if _FENCE.match(line):
            fenced = not fenced
            continue
        heading = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if fenced or heading is None:
            continue
        base = slug(heading.group(1))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def broken_links(page: Path, root: Path = ROOT) -> list[str]:
    problems: list[str] = []
    for line in prose(page.read_text()):
        for target in _LINK.findall(line):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto:: not ours to check
                continue
            file_part, _, anchor = target.partition("#")
            linked = (page.parent / file_part).resolve() if file_part else page
            if not linked.exists():
                problems.append(f"{page.name}: {target}: no such file")
            elif not linked.is_relative_to(root):
                problems.append(f"{page.name}: {target}: outside the repository")
            elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
                problems.append(f"{page.name}: {target}: no heading #{anchor} in {linked.name}")
    return problems


def test_slug_matches_githubs_rule() -> None:
    assert slug("Enrolment: how a booted machine gets into the cluster") == (
        "enrolment-how-a-booted-machine-gets-into-the-cluster"
    )
    assert slug("2. Prepare the data partition") == "2-prepare-the-data-partition"
    assert slug("States, and naming an unknown machine") == "states-and-naming-an-unknown-machine"
    assert slug("Kernel tests in a QEMU guest (`tests/guest.py`)") == "kernel-tests-in-a-qemu-guest-testsguestpy"


def test_the_link_check_sees_a_broken_anchor(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text("# A\n\n## Real heading\n")
    page = tmp_path / "b.md"
    page.write_text("[ok](a.md#real-heading) [bad](a.md#no-such) [gone](c.md) `[code](x.md)`\n")
    assert broken_links(page, tmp_path) == [
        "b.md: a.md#no-such: no heading #no-such in a.md",
        "b.md: c.md: no such file",
    ]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_relative_link_and_anchor_resolves(page: Path) -> None:
    assert broken_links(page) == []


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_docs_stand_on_their_own(page: Path) -> None:
    """No design document from outside the repository, no TLS checks switched off, and no
    recipe that keeps whatever the API answered (a refusal included) as a token."""
    text = page.read_text()
    assert not re.search(r"\b(DESIGN|CONVENTIONS|TESTBED)\.md\b|/work/shared", text)
    assert not re.search(r"curl\b[^\n]*\s(-k|--insecure)\b", text)
    assert "jq -r .token" not in text


def _table_rows(text: str, header: str) -> list[list[str]]:
    """The cells of each row of the table whose header line starts with `header`."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.replace(" ", "").startswith(header.replace(" ", "")))
    rows: list[list[str]] = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return rows


def documented_role_matrix() -> dict[Permission, set[Role]]:
    """docs/security.md's permission table: each permission and the roles marked as holding it."""
    rows = _table_rows((DOCS / "security.md").read_text(), "| permission | admin | operator | viewer | developer |")
    roles = [Role.ADMIN, Role.OPERATOR, Role.VIEWER, Role.DEVELOPER]
    matrix: dict[Permission, set[Role]] = {}
    for cells in rows:
        permission = Permission(cells[0].strip("`"))
        marks = cells[1:5]
        assert all(mark in ("yes", "") for mark in marks), f"a mark is neither yes nor empty: {cells}"
        matrix[permission] = {role for role, mark in zip(roles, marks, strict=True) if mark == "yes"}
    return matrix


def test_the_role_matrix_is_the_codes_table() -> None:
    documented = documented_role_matrix()
    actual = {p: {r for r in Role if p in ROLE_PERMISSIONS[r]} for p in Permission}
    assert documented == actual


def test_the_role_matrix_says_who_may_create_join_tokens() -> None:
    """Creating join tokens is `cluster:manage`, admins only: a joined node can act as any user."""
    rows = _table_rows((DOCS / "security.md").read_text(), "| permission | admin | operator | viewer | developer |")
    (join_row,) = [cells for cells in rows if "join token" in cells[-1]]
    assert join_row[0] == f"`{Permission.CLUSTER_MANAGE}`"
    holders = {r for r in Role if Permission.CLUSTER_MANAGE in ROLE_PERMISSIONS[r]}
    assert holders == {Role.ADMIN}
    assert join_row[1:5] == ["yes", "", "", ""]


def _serve_parser() -> argparse.ArgumentParser:
    subparsers = next(a for a in _build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    parser = subparsers.choices["serve"]
    assert isinstance(parser, argparse.ArgumentParser)
    return parser


def _flag_table() -> dict[str, list[str]]:
    """docs/operating.md's flag table, by the flag each row starts with."""
    rows: dict[str, list[str]] = {}
    for cells in _table_rows((DOCS / "operating.md").read_text(), "| flag | default | meaning |"):
        flag = re.match(r"`(--[a-z-]+)", cells[0])
        assert flag is not None, f"a row of the flag table names no flag: {cells}"
        rows[flag.group(1)] = cells
    return rows


def test_every_serve_flag_is_in_the_flag_table() -> None:
    documented = set(_flag_table())
    flags = {
        option
        for action in _serve_parser()._actions
        for option in action.option_strings
        if option.startswith("--") and option != "--help"
    }
    assert flags - documented == set(), "flags of `debvisor serve` missing from docs/operating.md"
    assert documented - flags == set(), "docs/operating.md lists flags `debvisor serve` does not have"


def test_the_flag_tables_choices_and_defaults_are_the_parsers() -> None:
    rows = _flag_table()
    for action in _serve_parser()._actions:
        option = action.option_strings[-1] if action.option_strings else ""
        if option not in rows:
            continue
        _, default, meaning = rows[option]
        for choice in action.choices or ():
            assert f"`{choice}`" in meaning or f"`{choice}`" in default, (option, choice)
        if isinstance(action.default, (int, float)) and not isinstance(action.default, bool):
            assert default == f"`{action.default:g}`", option
        elif isinstance(action.default, str):
            assert default == f"`{action.default}`", option


def test_the_data_dir_table_is_one_table_and_names_what_the_node_writes() -> None:
    rows = _table_rows((DOCS / "operating.md").read_text(), "| path | what | mode |")
    paths = " ".join(cells[0] for cells in rows)
    for name in ("debvisor.db", "lock", "pki/", "initial-admin-password", "netconfig/", "pxe/", "enrolment"):
        assert f"`{name}" in paths or name in paths, f"{name} missing from the data-dir table"
