"""API credentials: agents' tokens (stored only as SHA-256 hashes) and the admin key.

Tokens are long random strings (:func:`new_token`), so a plain SHA-256 is
enough to keep a stolen database from yielding them, and lets the hash be
compared without a slow key-derivation function on every request. Every
comparison is constant-time (``hmac.compare_digest``).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

__all__ = ["TOKEN_PREFIX", "hash_token", "key_matches", "new_token", "token_matches"]

#: Stored hashes look like ``sha256$<64 hex digits>``, so the scheme can change later.
TOKEN_PREFIX = "sha256$"


def new_token() -> str:
    """A new agent API token (256 random bits, URL-safe): show it once, store :func:`hash_token` of it."""
    return secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """What ``agents.api_token_hash`` holds for ``token``."""
    return TOKEN_PREFIX + hashlib.sha256(token.encode("utf-8")).hexdigest()


def token_matches(token: str | None, stored_hash: str | None) -> bool:
    """True if ``token`` is the one whose hash is stored; False for a missing token or hash."""
    if not token or not stored_hash:
        hmac.compare_digest(b"x" * 71, b"y" * 71)  # the same work either way
        return False
    return hmac.compare_digest(hash_token(token).encode("utf-8"), stored_hash.encode("utf-8"))


def key_matches(given: str | None, key: str) -> bool:
    """True if ``given`` is the configured admin ``key``; an unset key never matches."""
    if not key or not given:
        return False
    # Hash both first: compare_digest then compares equal lengths whatever was sent.
    return hmac.compare_digest(hashlib.sha256(given.encode("utf-8")).digest(),
                               hashlib.sha256(key.encode("utf-8")).digest())
