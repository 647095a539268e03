"""The password hashing parameters and the constant dummy hash used for unknown users."""

from __future__ import annotations

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
