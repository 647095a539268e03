"""Unpadded URL-safe base64: how signed node-to-node headers carry bytes (claims, signatures,
certificates) in HTTP header values."""

from __future__ import annotations

import base64


def encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def decode(text: str) -> bytes:
    """The bytes of `text`; ValueError (binascii.Error) if it is not base64."""
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
