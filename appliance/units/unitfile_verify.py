"""`systemd-analyze verify` of a unit as it will be, before anything is written.

The new file is written into a private directory under the managed root's `/run`, that
directory goes first on systemd's unit search path (`SYSTEMD_UNIT_PATH=DIR:`), and the unit
is verified by name: systemd parses the new file together with every other unit and drop-in
exactly where it will find them after the write (a staged drop-in hides the installed one of
the same name), while nothing under `/etc` has changed. How it is run depends on the root
(`Verifier._command`); docs/unit-files.md says why. Its answer is the list of problems
systemd reported, with the staged paths renamed to the real ones.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import shutil
from pathlib import Path

STAGE_DIR = "run/debvisor/verify"  # staged copies for verify, relative to the managed root
VERIFY_SECONDS = 30.0


class VerifyUnavailable(RuntimeError):
    """Verification cannot run here (a tool is missing, or it did not finish in time)."""


class Verifier:
    """`systemd-analyze verify` of a unit with staged files, inside the managed root."""

    def __init__(self, tool: str = "systemd-analyze", timeout: float = VERIFY_SECONDS) -> None:
        self.tool = tool
        self.timeout = timeout

    def _command(self, root: Path, unit: str, inside: str, stage: Path) -> tuple[list[str], str]:
        """The verify command for `root`, and how it prints the staged directory.

        `/`: plain. A directory: `--root`. A process's root (`/proc/PID/root`, a container
        managed from outside): inside that process's mount and PID namespaces (nsenter), with
        the machine's own systemd-analyze, because `--root` through that magic link finds the
        unit but silently reads none of its drop-ins (systemd 252)."""
        options = ["verify", "--man=no", "--no-pager", unit]
        process = re.fullmatch(r"/proc/(\d+)/root/?", str(root))
        if process is not None:
            nsenter = shutil.which("nsenter")
            if nsenter is None:
                raise VerifyUnavailable("nsenter is not installed on this node: unit files cannot be verified")
            target = ["--target", process[1], "--mount", "--pid", "--"]
            return [nsenter, *target, self.tool, *options], inside
        executable = shutil.which(self.tool)
        if executable is None:
            raise VerifyUnavailable(f"{self.tool} is not installed on this node: unit files cannot be verified")
        if root == Path("/"):
            return [executable, *options], inside
        return [executable, f"--root={root}", *options], str(stage)

    async def verify(self, root: Path, unit: str, staged: dict[str, str], shown: dict[str, str]) -> list[str]:
        """Problems systemd finds with `unit` when the files `staged` (path relative to a unit
        directory -> content) take precedence; [] when it passes. `shown` maps each staged
        relative path to the path to name in messages."""
        inside = f"/{STAGE_DIR}/{secrets.token_hex(6)}"
        stage = root / inside.lstrip("/")
        argv, printed = self._command(root, unit, inside, stage)
        try:
            for relative, content in staged.items():
                target = stage / relative
                target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                target.write_text(content, encoding="utf-8")
            env = {
                "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
                "LANG": "C.UTF-8",
                "SYSTEMD_PAGER": "",
                "SYSTEMD_LOG_COLOR": "0",
                # The staged directory first; the trailing colon appends the default search path.
                "SYSTEMD_UNIT_PATH": f"{inside}:",
            }
            process = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                env=env,
            )
            try:
                output, _ = await asyncio.wait_for(process.communicate(), self.timeout)
            except TimeoutError:
                process.kill()
                await process.wait()
                raise VerifyUnavailable(f"systemd-analyze verify took longer than {self.timeout:g} s") from None
        finally:
            shutil.rmtree(stage, ignore_errors=True)
        staged_prefix = printed
        lines = [line.strip() for line in output.decode("utf-8", "replace").splitlines() if line.strip()]
        ours = [line for line in lines if line.startswith(staged_prefix)]
        if process.returncode == 0:
            # Passed, but systemd would ignore part of our file (an unknown key, a value it
            # cannot parse: its messages say "ignoring"): refused too. Advice such as
            # "Special user nobody configured, this is not safe!" passes.
            problems = [line for line in ours if "ignoring" in line.lower()]
        else:
            problems = ours + [x for x in lines if x not in ours and unit in x] or lines
        return [_rename(line, staged_prefix, shown) for line in problems[:20]]


def _rename(line: str, staged_prefix: str, shown: dict[str, str]) -> str:
    for relative, path in shown.items():
        line = line.replace(f"{staged_prefix}/{relative}", path)
    return line
