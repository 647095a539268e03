"""What a unit file must be before systemd is asked about it, and how a change to one is shown.

Pure text checks, no systemd: the syntax (`check_content`: size, UTF-8, no NUL, comments,
sections of the unit's type, `Key=value` lines), the programs of the command settings
(`missing_programs`, resolved inside the managed root, since `systemd-analyze verify` checks
only the first command of each list), and the unified diff a change is audited with, secrets
redacted (`redacted`: the values of Environment= and of credentials). A secret anywhere else
(a command line, a file the unit reads) is not recognised; docs/unit-files.md says so.
"""

from __future__ import annotations

import difflib
import os
import re
from pathlib import Path

MAX_BYTES = 64 * 1024
SECTIONS = {"service": ("Unit", "Service", "Install"), "timer": ("Unit", "Timer", "Install")}
EXEC_KEYS = ("ExecCondition", "ExecStartPre", "ExecStart", "ExecStartPost", "ExecReload", "ExecStop", "ExecStopPost")
REDACTED_KEYS = ("Environment", "SetCredential", "SetCredentialEncrypted")
REDACTED = "<redacted>"

_SECTION = re.compile(r"\[([A-Za-z][A-Za-z0-9-]*)\]")
_KEY = re.compile(r"([A-Za-z0-9_-]+)\s*=")
_ENV_VALUE = re.compile(r"""([A-Za-z_][A-Za-z0-9_]*)=("[^"]*"|'[^']*'|\S*)""")


def check_content(text: str, kind: str) -> list[tuple[str, str]]:
    """Problems of unit-file `text` for a unit of type `kind`, as ($.content, 'line N: ...')."""
    problems: list[tuple[str, str]] = []
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError:
        return [("$.content", "not valid UTF-8 (a lone surrogate)")]
    if size > MAX_BYTES:
        return [("$.content", f"{size} bytes: a unit file is at most {MAX_BYTES}")]
    if "\x00" in text:
        return [("$.content", "contains a NUL character")]
    allowed = SECTIONS[kind]
    section: str | None = None
    continued = False
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if continued:  # a value continued from the line before (trailing backslash)
            continued = line.endswith("\\")
            continue
        if not line or line[0] in "#;":
            continue
        header = _SECTION.fullmatch(line)
        if header is not None:
            section = header[1]
            if section not in allowed and not section.startswith("X-"):
                problems.append(
                    ("$.content", f"line {number}: section [{section}] is not one of a {kind}'s: {', '.join(allowed)}")
                )
            continue
        if line.startswith("["):
            problems.append(("$.content", f"line {number}: a section header is [Name]"))
            continue
        if _KEY.match(line) is None:
            problems.append(("$.content", f"line {number}: expected Key=value, a [Section] or a comment"))
            continue
        if section is None:
            problems.append(("$.content", f"line {number}: a setting before any [Section]"))
        continued = line.endswith("\\")
        if len(problems) >= 20:
            break
    return problems


def missing_programs(text: str, root: Path) -> list[tuple[str, str]]:
    """Exec*= programs named by an absolute path that are not executable files under `root`.

    `systemd-analyze verify` checks only the first command of each Exec*= list, so a drop-in
    that adds an ExecStartPre= or a second ExecStart= to a oneshot would pass it unchecked."""
    problems: list[tuple[str, str]] = []
    for number, raw in enumerate(text.splitlines(), 1):
        match = _KEY.match(raw.strip())
        if match is None or match[1] not in EXEC_KEYS:
            continue
        command = raw.strip()[match.end() :].strip().lstrip("@-:+!")
        program = command.split(maxsplit=1)[0] if command else ""
        if not program.startswith("/") or "$" in program or "%" in program:
            continue  # a reset, a name searched in PATH, or one systemd expands at run time
        found = inside_root(root, program)
        if found is None or not found.is_file() or not os.access(found, os.X_OK):
            problems.append(("$.content", f"line {number}: {match[1]}: {program} is not an executable file"))
    return problems


def inside_root(root: Path, path: str) -> Path | None:
    """`path` resolved as the managed machine sees it: absolute symbolic links lead back into
    `root`, never to this machine's files (None after too many links)."""
    current = root
    parts = [p for p in path.split("/") if p not in ("", ".")]
    hops = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            current = current.parent if current != root else root
            continue
        candidate = current / part
        if candidate.is_symlink():
            hops += 1
            if hops > 40:
                return None
            target = os.readlink(candidate)
            if target.startswith("/"):
                current = root
            parts = [p for p in target.split("/") if p not in ("", ".")] + parts
            continue
        current = candidate
    return current


def redacted(text: str) -> str:
    """`text` with the values of Environment= and credential settings replaced by <redacted>
    (variable names and credential ids kept, so a diff still says what changed)."""
    lines: list[str] = []
    hiding = False
    for raw in text.splitlines():
        if hiding:  # continuation of a redacted value
            hiding = raw.rstrip().endswith("\\")
            lines.append(REDACTED)
            continue
        match = _KEY.match(raw.strip())
        key = match[1] if match else None
        if key in REDACTED_KEYS:
            head, _, value = raw.partition("=")
            if key == "Environment":
                value = _ENV_VALUE.sub(lambda m: f"{m[1]}={REDACTED}", value)
            else:
                ident, colon, _secret = value.partition(":")
                value = f"{ident}{colon}{REDACTED}" if colon else REDACTED
            hiding = raw.rstrip().endswith("\\")
            lines.append(f"{head}={value}")
        else:
            lines.append(raw)
    return "\n".join(lines) + ("\n" if text.endswith("\n") else "")


def unified_diff(path: str, before: str | None, after: str | None) -> str:
    """The unified diff of a file from `before` to `after` (None: absent), secrets redacted."""
    old = redacted(before).splitlines(keepends=True) if before is not None else []
    new = redacted(after).splitlines(keepends=True) if after is not None else []
    lines = difflib.unified_diff(
        old,
        new,
        fromfile="/dev/null" if before is None else f"a{path}",
        tofile="/dev/null" if after is None else f"b{path}",
        n=1,
    )
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)
