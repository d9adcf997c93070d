"""Password hashing: Argon2id, with older hashes upgraded at the next sign-in."""
from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from werkzeug.security import check_password_hash

_hasher = PasswordHasher()  # argon2id with the library's current recommended parameters

# A fixed hash to verify against when the email is unknown, so that a failed
# sign-in takes the same time whether or not the account exists.
_DUMMY_HASH = _hasher.hash("tenantatlas-timing-equalizer")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(stored_hash: str | None, password: str) -> tuple[bool, bool]:
    """Return (matches, needs_rehash).

    Accepts current Argon2id hashes, Argon2 hashes with older parameters, and
    Werkzeug pbkdf2/scrypt hashes from earlier imports; the latter two report
    needs_rehash so the caller stores a fresh Argon2id hash.
    """
    if stored_hash is None:
        try:
            _hasher.verify(_DUMMY_HASH, password)
        except VerificationError:
            pass
        return False, False
    if stored_hash.startswith("$argon2"):
        try:
            _hasher.verify(stored_hash, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False, False
        return True, _hasher.check_needs_rehash(stored_hash)
    if stored_hash.startswith(("pbkdf2:", "scrypt:")):
        try:
            return check_password_hash(stored_hash, password), True
        except ValueError:
            return False, False
    return False, False
