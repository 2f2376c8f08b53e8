"""argon2 password hashing and login-sheet passwords."""

from __future__ import annotations

import pytest

from labkit.adapters.security.passwords import ALPHABET, hash_password, needs_rehash, new_password, verify_password


def test_hash_and_verify() -> None:
    h = hash_password("Étudiant 2026 !")
    assert h.startswith("$argon2id$") and "Étudiant" not in h
    assert verify_password(h, "Étudiant 2026 !")
    assert not verify_password(h, "étudiant 2026 !")
    assert not verify_password(h, "")
    assert hash_password("same") != hash_password("same")  # salted
    assert not needs_rehash(h)


@pytest.mark.parametrize("stored", [None, "", "not-a-hash", "$argon2id$v=19$m=1,t=1,p=1$broken"])
def test_bad_hashes_never_verify_nor_raise(stored: str | None) -> None:
    assert verify_password(stored, "anything") is False


def test_weak_hash_needs_rehash() -> None:
    from argon2 import PasswordHasher

    weak = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1).hash("pw")
    assert verify_password(weak, "pw") and needs_rehash(weak)
    assert needs_rehash("garbage")


def test_empty_password_refused() -> None:
    with pytest.raises(ValueError, match="empty password"):
        hash_password("")


def test_new_password_is_random_and_unambiguous() -> None:
    pws = {new_password() for _ in range(200)}
    assert len(pws) == 200
    assert all(len(p) == 12 and set(p) <= set(ALPHABET) for p in pws)
    assert not set(ALPHABET) & set("0O1lIi5S2Z8Bo")
    assert len(new_password(20)) == 20
    with pytest.raises(ValueError, match="too short"):
        new_password(6)
