"""The per-user list of nodes the CLI talks to ("remotes"), and pinning a node's CA.

A laptop has no cluster CA file. `debvisor remote add NAME URL --ca-fingerprint FP` fetches
the CA from the node's public `GET /api/v1/cluster/ca` over an unverified connection, keeps it
only if its SHA-256 fingerprint is FP, and stores it with the URL in
`$XDG_CONFIG_HOME/debvisor/remotes.json` (default `~/.config/debvisor/`). `debvisor login`
adds the API token there, so URL, CA and credential are given once. The file holds a
credential: it is written atomically with mode 0600 in a 0700 directory, and a file others
can read is refused, as ssh refuses a readable key.
"""

from __future__ import annotations

import os
import re
import ssl
import stat
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

import msgspec
from cryptography import x509

from appliance.identity import pki

CONFIG_FILE = "remotes.json"
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


class RemoteError(Exception):
    """Bad input or a config file that cannot be used; the message is one line."""


class Remote(msgspec.Struct, kw_only=True):
    url: str
    ca_pem: str
    ca_fingerprint: str
    user: str | None = None
    token: str | None = None  # the CLI's API token, after `debvisor login`
    token_id: str | None = None


class RemotesConfig(msgspec.Struct, kw_only=True):
    current: str | None = None
    remotes: dict[str, Remote] = msgspec.field(default_factory=dict)


def config_dir(environ: dict[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    base = env.get("XDG_CONFIG_HOME") or str(Path(env.get("HOME") or Path.home()) / ".config")
    return Path(base) / "debvisor"


def normalize_fingerprint(text: str) -> str:
    """Lowercase hex without separators; accepts `openssl x509 -fingerprint -sha256`'s form too."""
    value = text.strip().lower()
    for prefix in ("sha256 fingerprint=", "sha256:", "sha256="):
        value = value.removeprefix(prefix)
    value = value.replace(":", "").replace(" ", "")
    if not _HEX64.match(value):
        raise RemoteError("a CA fingerprint is the SHA-256 of the CA certificate: 64 hex digits (colons allowed)")
    return value


def normalize_url(url: str) -> str:
    """https://HOST[:PORT] without a trailing slash or path; anything else is refused."""
    parts = urlsplit(url.strip())
    if parts.scheme != "https" or not parts.hostname:
        raise RemoteError(f"not a node URL: {url!r} (expected https://NODE:8443)")
    if parts.path.strip("/") or parts.query or parts.fragment:
        raise RemoteError(f"give the node's URL without a path: https://{parts.netloc}")
    return f"https://{parts.netloc}"


def validate_name(name: str) -> str:
    if not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$", name):
        raise RemoteError(f"bad remote name {name!r}: letters, digits, '.', '_' and '-', at most 63")
    return name


def ca_fingerprint(ca_pem: str) -> str:
    try:
        return pki.fingerprint(x509.load_pem_x509_certificate(ca_pem.encode()))
    except ValueError as exc:
        raise RemoteError(f"not a PEM certificate: {exc}") from exc


def check_pinned(ca_pem: str, expected: str) -> str:
    """`ca_pem` if its fingerprint is `expected` (normalized); else RemoteError naming both."""
    actual = ca_fingerprint(ca_pem)
    if actual != expected:
        raise RemoteError(
            f"the node's CA fingerprint {actual} is not the expected {expected}: "
            "not trusting it and sending nothing (another cluster, or someone in between)"
        )
    return ca_pem


def fetch_ca(url: str) -> str:
    """The CA PEM a node presents at its public `GET /api/v1/cluster/ca`, trusted for nothing yet.

    The connection is not verified (there is nothing to verify it with) and carries no
    credential; callers must compare the fingerprint before using the answer.
    """
    import httpx  # noqa: PLC0415 - kept off `debvisor serve`'s start-up path

    blind = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    blind.check_hostname = False
    blind.verify_mode = ssl.CERT_NONE
    try:
        with httpx.Client(base_url=url, verify=blind, timeout=15) as client:
            response = client.get("/api/v1/cluster/ca")
    except httpx.HTTPError as exc:
        raise RemoteError(f"cannot reach {url}: {exc}") from exc
    if response.status_code != 200:
        raise RemoteError(f"{url} answered {response.status_code} for its CA; is it a DebVisor node?")
    try:
        return str(msgspec.json.decode(response.content)["ca_pem"])
    except (msgspec.DecodeError, KeyError, TypeError) as exc:
        raise RemoteError(f"{url} did not answer with a CA; is it a DebVisor node?") from exc


def context_for(ca_pem: str) -> ssl.SSLContext:
    context = ssl.create_default_context(cadata=ca_pem)
    context.check_hostname = False  # a node is pinned by the cluster CA, not by a DNS name
    return context


def load(directory: Path) -> RemotesConfig:
    path = directory / CONFIG_FILE
    try:
        info = path.stat()
    except FileNotFoundError:
        return RemotesConfig()
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise RemoteError(f"{path} is readable by others and holds credentials: chmod 600 {path}")
    try:
        return msgspec.json.decode(path.read_bytes(), type=RemotesConfig)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise RemoteError(f"{path} is damaged ({exc}); fix or remove it") from exc


def save(directory: Path, config: RemotesConfig) -> None:
    """Replace the config atomically: a crash leaves the old file or the new one, never half."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    fd, temporary = tempfile.mkstemp(dir=directory, prefix=f".{CONFIG_FILE}.")  # mkstemp: 0600
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(msgspec.json.format(msgspec.json.encode(config)) + b"\n")
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, directory / CONFIG_FILE)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
