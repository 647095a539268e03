"""A PXE-booted machine enrols with its boot server node before it joins the cluster.

Its boot script put `debvisor.enrol=dve_...` on the kernel command line (`pxe.credential`): a
single-use credential for its MAC, the cluster CA's fingerprint and the boot server node's API
address. Before a fresh node joins (`appliance.bootstrap`), it fetches the server's CA and
accepts it only if the fingerprint matches, as the join client does, then, over TLS verified
against that CA: presents the credential with its MAC and DMI serial, gets a poll secret, and
polls until an operator (or their policy) approves it. The approval's answer carries the join
token and the name to join under; the node then joins as with `--join`, at the token's seed:
the certificate authority that made it, which is the boot server only if that node is an
authority. An approved machine whose server cannot get a token yet (no authority alive) is
told why and keeps polling. A refusal, an expiry or a server of another cluster ends it with
a one-line reason (EnrolError), which the node prints as it stops. Nothing secret is logged.
"""

from __future__ import annotations

import http.client
import logging
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import msgspec

from appliance.cluster.join import decode_token
from appliance.cluster.join_client import JoinError, fetch_ca, https_request, pinned_context, problem_detail
from appliance.console import notify_systemd
from appliance.datadir import ENROLMENT_NAME, write_new_file
from appliance.errors import StartupError
from appliance.settings import ServeSettings
from pxe.credential import EnrolCredential, decode

log = logging.getLogger(__name__)

TIMEOUT = 10.0
PATIENCE = 600.0  # how long the server may stay unreachable while the machine waits
DMI_SERIAL = Path("/sys/class/dmi/id/product_serial")
REMIND_SECONDS = 300.0  # how often the console is reminded that the machine waits


class EnrolError(Exception):
    """Enrolment failed; the message says why in one line."""


@dataclass(frozen=True)
class Enrolled:
    """What approval gave the machine: the name to join under and its join token."""

    name: str
    join_token: str


class _Answer(msgspec.Struct):
    state: str
    poll_seconds: float = 3.0
    poll_secret: str | None = None
    name: str | None = None
    join_token: str | None = None
    waiting: str | None = None  # approved, no token yet (no certificate authority answers): keep polling


def read_serial(path: Path = DMI_SERIAL) -> str | None:
    """The machine's DMI serial if readable and meaningful."""
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return text if text and text.isprintable() and len(text) <= 128 else None


def _context(server: str, fingerprint: str) -> ssl.SSLContext:
    """A TLS context that trusts only the server's CA, accepted if it has the credential's fingerprint."""
    try:
        return pinned_context(fetch_ca(server, fingerprint))
    except JoinError as exc:
        raise EnrolError(str(exc)) from exc


def _post(server: str, path: str, body: object, context: ssl.SSLContext) -> tuple[int, bytes]:
    return https_request(server, "POST", path, context, msgspec.json.encode(body))


def enrol(
    text: str,
    *,
    mac: str | None,
    serial: str | None,
    resume: Path | None = None,
    notify: Callable[[str], object] = notify_systemd,
    patience: float = PATIENCE,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> Enrolled:
    """Present the credential `text` and wait for approval; EnrolError says why it failed.

    `resume` keeps the poll secret (0600) while the machine waits, so a restarted service
    resumes waiting instead of presenting its spent credential again; it goes once the wait ends.
    On a data disk it outlives a reboot too: the machine, booted again with a new credential,
    first polls with the kept secret, and presents the new credential only if that wait is over
    (the server forgot, refused or expired it).
    """
    try:
        credential = decode(text)
    except ValueError as exc:
        raise EnrolError(f"debvisor.enrol: {exc}") from exc
    mac = mac or credential.mac
    server = credential.servers[0]
    link = _Link(server, _reach(credential, server, patience, sleep, clock), patience, sleep, clock)
    saved = _resumed(resume, mac)
    earlier_boot = saved is not None and saved.credential_id != credential.id
    if saved is None:
        poll_secret = _present(link, credential, mac, serial, resume)
    else:
        poll_secret = saved.poll_secret
        log.info("enrolment: machine %s resumes waiting for approval%s", mac, " (of its earlier boot)" * earlier_boot)
    log.warning(
        "enrolment: machine %s waits for approval on its boot server %s "
        "(approve it with `debvisor pxe approve NODE %s`, or its PXE settings' approval policy)",
        mac,
        server,
        mac,
    )
    reminded = clock()
    waiting: str | None = None
    while True:
        # Under systemd (Type=notify) the start would time out while an operator decides.
        notify(f"EXTEND_TIMEOUT_USEC={int((patience + 120) * 1e6)}\nSTATUS=waiting for approval of {mac} on {server}")
        status, payload = link.post("/api/v1/pxe/enrol/poll", {"mac": mac, "poll_secret": poll_secret})
        if status != 200 and earlier_boot:
            log.info("enrolment: the wait of machine %s's earlier boot is over (%s)", mac, problem_detail(payload))
            earlier_boot = False
            poll_secret = _present(link, credential, mac, serial, resume)
            continue
        earlier_boot = False
        if status != 200:
            _forget(resume)
            raise EnrolError(f"enrolment of machine {mac} ended: {problem_detail(payload)}")
        answer = msgspec.json.decode(payload, type=_Answer)
        if answer.join_token is not None and answer.name is not None:
            _forget(resume)
            log.info(
                "enrolment: machine %s was approved to join as %s, at %s", mac, answer.name, _seeds(answer.join_token)
            )
            return Enrolled(answer.name, answer.join_token)
        if answer.waiting is not None and answer.waiting != waiting:
            log.warning("enrolment: machine %s is approved; %s", mac, answer.waiting)
            notify(f"STATUS=approved, {answer.waiting}")
        waiting = answer.waiting
        if clock() - reminded > REMIND_SECONDS:
            log.warning("enrolment: machine %s still waits (%s)", mac, waiting or f"for approval on {server}")
            reminded = clock()
        sleep(max(0.5, min(answer.poll_seconds, 60.0)))


@dataclass(frozen=True)
class _Link:
    """The boot server as the machine reaches it: its address, the pinned TLS context, retries."""

    server: str
    context: ssl.SSLContext
    patience: float
    sleep: Callable[[float], None]
    clock: Callable[[], float]

    def post(self, path: str, body: object) -> tuple[int, bytes]:
        return _retrying(lambda: _post(self.server, path, body, self.context), self.patience, self.sleep, self.clock)


def _present(link: _Link, credential: EnrolCredential, mac: str, serial: str | None, resume: Path | None) -> str:
    """Enrol with the credential; the poll secret, kept in `resume` while the machine waits."""
    request = {"id": credential.id, "secret": credential.secret, "mac": mac, "serial": serial}
    status, payload = link.post("/api/v1/pxe/enrol", request)
    if status != 200:
        raise EnrolError(f"boot server {link.server} refused to enrol machine {mac}: {problem_detail(payload)}")
    answer = msgspec.json.decode(payload, type=_Answer)
    if answer.poll_secret is None:
        raise EnrolError(f"boot server {link.server} answered without a poll secret")
    if resume is not None:
        _forget(resume)  # a wait of an earlier boot
        write_new_file(resume, msgspec.json.encode(_Resume(credential.id, mac, answer.poll_secret)), mode=0o600)
    return answer.poll_secret


def _seeds(join_token: str) -> str:
    """Where the token says to join (its seeds: not secret), for the journal."""
    try:
        return ", ".join(decode_token(join_token).seeds)
    except ValueError:
        return "its seed (the join reports a damaged token)"


class _Resume(msgspec.Struct, frozen=True):
    credential_id: str
    mac: str
    poll_secret: str


def _resumed(path: Path | None, mac: str) -> _Resume | None:
    """The wait this machine started before a restart or a reboot (a data disk keeps it), if any."""
    if path is None:
        return None
    try:
        saved = msgspec.json.decode(path.read_bytes(), type=_Resume)
    except (OSError, msgspec.DecodeError):
        return None
    return saved if saved.mac == mac else None


def _forget(path: Path | None) -> None:
    if path is not None:
        path.unlink(missing_ok=True)


def _reach(
    credential: EnrolCredential,
    server: str,
    patience: float,
    sleep: Callable[[float], None],
    clock: Callable[[], float],
) -> ssl.SSLContext:
    """The pinned context for the server, retried while it cannot be reached."""
    deadline, delay = clock() + patience, 1.0
    while True:
        try:
            return _context(server, credential.ca_fingerprint)
        except (OSError, ssl.SSLError, http.client.HTTPException) as exc:
            if clock() + delay > deadline:
                raise EnrolError(f"boot server {server} cannot be reached: {exc}") from exc
            sleep(delay)
            delay = min(delay * 2, 8.0)


def _retrying(
    call: Callable[[], tuple[int, bytes]], patience: float, sleep: Callable[[float], None], clock: Callable[[], float]
) -> tuple[int, bytes]:
    """`call` retried on transport errors, 429 and 5xx for up to `patience` seconds."""
    deadline, delay = clock() + patience, 1.0
    while True:
        try:
            status, payload = call()
        except (OSError, ssl.SSLError, http.client.HTTPException) as exc:
            status, payload = 0, str(exc).encode()
        if status not in {0, 429} and status < 500:
            return status, payload
        if clock() + delay > deadline:
            if status == 0:
                raise EnrolError(f"the boot server cannot be reached: {payload.decode(errors='replace')}")
            return status, payload
        sleep(delay)
        delay = min(delay * 2, 8.0)


def enrol_before_join(settings: ServeSettings) -> ServeSettings:
    """The settings a fresh node joins with: unchanged without `debvisor.enrol=` (or with a join
    token given), else with the join token and name its approved enrolment got (StartupError if none)."""
    if settings.enrol is None or settings.join:
        return settings
    # Inside the data dir: under systemd's ProtectSystem=strict it is the one place the service
    # may write, and a fresh data dir may hold this file (DataDir.is_fresh).
    settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    resume = settings.data_dir / ENROLMENT_NAME
    try:
        enrolled = enrol(settings.enrol, mac=settings.boot_mac, serial=read_serial(), resume=resume)
    except EnrolError as exc:
        raise StartupError(f"cannot enrol with the PXE boot server: {exc}") from exc
    return replace(settings, join=enrolled.join_token, default_name=enrolled.name)
