"""Password hashing for portal and bastion logins (argon2id, memory-hard).

A thin wrapper over argon2-cffi's :class:`PasswordHasher` so callers never handle its
exceptions: a wrong password, a corrupt hash and an empty hash all simply do not verify.
:func:`new_password` makes the passwords printed on candidates' login sheets: random,
readable aloud and typed from paper without confusing ``l``/``1``/``I`` or ``O``/``0``.
"""

from __future__ import annotations

import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

__all__ = ["ALPHABET", "hash_password", "needs_rehash", "new_password", "verify_password"]

# argon2-cffi's defaults follow RFC 9106's second recommended profile (64 MiB, 3 passes).
_HASHER = PasswordHasher()

# No 0/O/o, 1/l/I/i, 5/S/s, 2/Z/z, 8/B: a password on paper is typed exactly once, under stress.
ALPHABET = "abcdefghjkmnpqrtuvwxyACDEFGHJKLMNPQRTUVWXY34679"


def hash_password(password: str) -> str:
    """The argon2id hash (PHC string, salt included) to store instead of ``password``."""
    if not password:
        raise ValueError("an empty password cannot be hashed; choose a password")
    return _HASHER.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """True only when ``password`` matches ``password_hash``; never raises on bad input."""
    if not password_hash or not password:
        return False
    try:
        return _HASHER.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    """True when the hash was made with weaker parameters than today's: rehash at next login."""
    try:
        return _HASHER.check_needs_rehash(password_hash)
    except (InvalidHashError, ValueError):
        return True


def new_password(n: int = 12) -> str:
    """A random password of ``n`` unambiguous characters (about 5.5 bits each: 12 -> 66 bits)."""
    if n < 8:
        raise ValueError(f"a password of {n} characters is too short to be safe; use at least 8")
    return "".join(secrets.choice(ALPHABET) for _ in range(n))
