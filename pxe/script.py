"""Render iPXE scripts: what a PXE-booting machine loads, and with which kernel command line.

A machine's first HTTP request cannot name it (the URL comes from DHCP, and iPXE does not
expand settings there), so `/pxe/boot.ipxe` without a MAC answers `chain_script`, which asks
again with `?mac=${netX/mac}`; the answer to that is `boot_script` for the machine: Debian's
kernel and live-boot initramfs from this node over HTTP, the squashfs fetched by live-boot
(`fetch=`), and the machine's `debvisor.*` settings (see appliance/bootparams.py), and when a node serves it,
`debvisor.enrol=dve_...`: a single-use enrolment credential for this MAC (`pxe.credential`),
never a join token, since anyone on the boot network can fetch this script. Every machine
also gets `debvisor.enlist=<this server>/pxe/enlist`, where the booted appliance reports its
hardware, and `BOOTIF=01-<mac>` (pxelinux's convention, which live-boot also reads to pick the
interface) so that it knows which of its NICs booted.

Values go into a script that iPXE parses and expands, so anything that could break out of a
kernel argument or start an iPXE expansion (whitespace, quotes, `$`, `\\`, `#`) is refused.
Deliberately left out: storing per-machine settings and serving the files (`pxe.http`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from pxe.addresses import SettingsError, validate_node_name

DEFAULT_CONSOLE = ("console=tty0", "console=ttyS0,115200n8")
# The port the machine booted from, as pxelinux's IPAPPEND 2 names it (iPXE expands the MAC):
# live-boot then fetches the squashfs over that port only, and the image puts a static
# debvisor.ip= on it (appliance/bootnet.py).
BOOTIF = "BOOTIF=01-${netX/mac:hexhyp}"
_SAFE_ARG = re.compile(r"^[A-Za-z0-9._:/=+,@%~_-]+$")  # one kernel argument, nothing iPXE expands
_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
_SAFE_BASE = re.compile(r"^http://[A-Za-z0-9.:\[\]-]+(/[A-Za-z0-9._/-]*)?$")


class ScriptError(ValueError):
    """A per-machine value or the base URL would not be a single safe kernel argument."""


@dataclass(frozen=True)
class MachineParams:
    """A machine's boot settings: its node name, its enrolment credential, more kernel arguments, its MAC."""

    name: str | None = None
    enrol: str | None = None  # dve_...: minted for this script (pxe.enrol_service)
    extra: tuple[str, ...] = field(default=())
    mac: str | None = None  # normalized (aa:bb:cc:dd:ee:ff); None: not known


def _arg(text: str, what: str) -> str:
    if not _SAFE_ARG.match(text) or len(text) > 4096:
        raise ScriptError(f"{what}: {text[:40]!r} is not one plain kernel argument (no spaces, quotes, $ or #)")
    return text


def _base(base_url: str) -> str:
    base = base_url.rstrip("/")
    if not _SAFE_BASE.match(base):
        raise ScriptError(f"base URL {base_url!r} must be a plain http://HOST:PORT[/PATH]")
    return base


def cmdline(base_url: str, params: MachineParams, console: tuple[str, ...] = DEFAULT_CONSOLE) -> list[str]:
    """The kernel command line for a machine, as arguments."""
    base = _base(base_url)
    args = ["initrd=initrd.img", "boot=live", f"fetch={base}/filesystem.squashfs"]
    args += [_arg(c, "console") for c in console]
    if params.name is not None:
        try:
            validate_node_name(params.name)
        except SettingsError as exc:
            raise ScriptError(f"name: {exc}") from exc
        args.append(f"debvisor.name={params.name}")
    if params.enrol is not None:
        args.append(f"debvisor.enrol={_arg(params.enrol, 'enrolment credential')}")
    args.append(f"debvisor.enlist={base}/enlist")
    if params.mac is not None:
        if not _MAC.match(params.mac):
            raise ScriptError(f"mac: {params.mac[:20]!r} is not a normalized MAC address")
        args.append(f"BOOTIF=01-{params.mac.replace(':', '-')}")
    else:
        args.append(BOOTIF)  # iPXE fills in the booting port's MAC
    for extra in params.extra:
        if extra.startswith(("debvisor.join=", "debvisor.enrol=")):
            # Anyone on the boot network can read this script: a join token here is the cluster's key.
            raise ScriptError(
                f"extra argument {extra.split('=')[0]}= is refused: machines enrol and get their join token over TLS"
            )
        args.append(_arg(extra, "extra argument"))
    return args


def chain_script(base_url: str) -> str:
    """The first script: ask again, naming the booting interface's MAC."""
    return f"#!ipxe\nchain {_base(base_url)}/boot.ipxe?mac=${{netX/mac}}\n"


def retry_script(base_url: str, mac: str) -> str:
    """A script for a machine this server is too busy to serve now: wait, then ask again."""
    if not _MAC.match(mac):
        raise ScriptError(f"mac: {mac[:20]!r} is not a normalized MAC address")
    base = _base(base_url)
    wait = "echo DebVisor: the boot server is busy, retrying in 30 s\nsleep 30"
    return f"#!ipxe\n{wait}\nchain {base}/boot.ipxe?mac={mac}\n"


def boot_script(base_url: str, params: MachineParams, console: tuple[str, ...] = DEFAULT_CONSOLE) -> str:
    """The script for one machine: kernel and initramfs over HTTP, then boot."""
    base = _base(base_url)
    args = " ".join(cmdline(base, params, console))
    return f"#!ipxe\nkernel {base}/vmlinuz {args}\ninitrd {base}/initrd.img\nboot\n"
