"""The enrolment credential a PXE boot script hands a machine: short-lived, single use, one MAC.

A boot script travels over plain HTTP to anyone who asks for a MAC, so it must not carry
anything that opens the cluster. Instead of a join token it carries `debvisor.enrol=dve_...`:
a credential id and secret, the MAC it was minted for, the SHA-256 fingerprint of the cluster
CA and the API addresses of the boot server node. The booted machine presents it once, over
TLS pinned to that fingerprint, and then waits for an operator (or their policy) to approve it
(`pxe.enrol_service`); someone who sniffed it can at most enrol a machine that waits too.

This module is the format only (pure, no I/O), shared by the boot server and the machine.
"""

from __future__ import annotations

import re

import msgspec

from pxe import token_codec

PREFIX = "dve_"
MAX_LENGTH = 2048  # a credential is a few hundred characters; anything longer is a mistake
_FINGERPRINT = re.compile(r"^[0-9a-f]{64}$")
_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")


class EnrolCredential(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What `debvisor.enrol=` carries."""

    id: str
    secret: str
    mac: str  # normalized aa:bb:cc:dd:ee:ff: the only machine that may present it
    ca_fingerprint: str
    servers: list[str]  # HOST:PORT of the boot server node's API


def encode(credential: EnrolCredential) -> str:
    """The kernel-argument form: dve_ + unpadded base64url JSON (nothing iPXE or the kernel splits)."""
    return token_codec.encode(PREFIX, credential)


def decode(text: str) -> EnrolCredential:
    """Parse a credential; ValueError with a one-line reason if it is not one."""
    credential = token_codec.decode(
        text,
        PREFIX,
        EnrolCredential,
        name="enrolment credential",
        damaged="was the kernel command line cut?",
        max_length=MAX_LENGTH,
    )
    if not _FINGERPRINT.match(credential.ca_fingerprint) or not _MAC.match(credential.mac) or not credential.servers:
        raise ValueError("the enrolment credential is damaged (no server, MAC or CA fingerprint)")
    return credential
