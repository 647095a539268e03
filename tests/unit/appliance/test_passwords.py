"""The password hashing parameters, the constant dummy hash used for unknown users, and the bound
on concurrent hashes."""

from __future__ import annotations

import asyncio
import threading

import pytest

from appliance.auth import passwords
from appliance.auth.passwords import DUMMY_HASH, hash_password, needs_rehash, verify_password


def test_dummy_hash_carries_the_current_parameters() -> None:
    # An unknown user's login is verified against DUMMY_HASH to take as long as a real one:
    # that only holds while it was made with the parameters new hashes get.
    assert not needs_rehash(DUMMY_HASH)
    assert DUMMY_HASH.split("$")[3] == hash_password("x").split("$")[3]


def test_dummy_hash_matches_no_likely_password() -> None:
    for guess in ("", "admin", "password", "debvisor"):
        assert not verify_password(DUMMY_HASH, guess)


def test_verify_round_trip_and_damaged_hash() -> None:
    stored = hash_password("correct horse")
    assert verify_password(stored, "correct horse")
    assert not verify_password(stored, "wrong")
    assert not verify_password("not-a-hash", "anything")


def test_concurrent_logins_hash_at_most_two_at_once_and_all_finish(monkeypatch: pytest.MonkeyPatch) -> None:
    # A burst of logins queues for the hashing slots instead of each taking a 19 MiB buffer at once.
    running = peak = 0
    lock = threading.Lock()
    real = passwords._HASHER

    class Counting:
        def verify(self, stored: str, password: str) -> bool:
            nonlocal running, peak
            with lock:
                running += 1
                peak = max(peak, running)
            try:
                return real.verify(stored, password)
            finally:
                with lock:
                    running -= 1

    stored = hash_password("correct horse")
    monkeypatch.setattr(passwords, "_HASHER", Counting())

    async def burst() -> list[bool]:
        return await asyncio.gather(*(passwords.verify_password_async(stored, "correct horse") for _ in range(12)))

    assert asyncio.run(burst()) == [True] * 12
    assert peak == passwords.MAX_CONCURRENT_HASHES
