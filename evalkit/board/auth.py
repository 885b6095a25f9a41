"""Board users: random tokens stored hashed, and the roles that order what a token may do.

A loopback-only board trusts whoever can reach it (their own machine); any other bind requires a token on
every request, as ``Authorization: Bearer TOKEN`` or the cookie that ``/login`` sets. Tokens are 32 random
bytes, so a plain SHA-256 is enough to store them (no password to slow-hash).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from sqlalchemy import select

from evalkit.errors import EvalkitError
from evalkit.store.engine import open_store
from evalkit.store.schema import BoardToken

ROLES = ("viewer", "voter", "operator")  # each may do what the ones before it may
TOKEN_COOKIE = "evalkit_token"


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def add_user(user: str, role: str, store: str | None = None) -> str:
    """Create (or replace) ``user``'s token; returns the token, which is not stored anywhere."""
    if role not in ROLES:
        raise EvalkitError(f"role {role!r}: use one of {', '.join(ROLES)}")
    if not user or len(user) > 200:
        raise EvalkitError("the user name must be 1..200 characters")
    token = secrets.token_urlsafe(32)
    factory, _ = open_store(store)
    with factory.begin() as session:
        existing = session.scalars(select(BoardToken).where(BoardToken.user == user)).first()
        if existing is not None:
            session.delete(existing)
            session.flush()
        session.add(BoardToken(user=user, role=role, token_sha256=digest(token)))
    return token


def users(store: str | None = None) -> list[BoardToken]:
    factory, _ = open_store(store)
    with factory() as session:
        return list(session.scalars(select(BoardToken).order_by(BoardToken.user)))


def revoke(user: str, store: str | None = None) -> None:
    factory, _ = open_store(store)
    with factory.begin() as session:
        found = session.scalars(select(BoardToken).where(BoardToken.user == user)).first()
        if found is None:
            raise EvalkitError(f"no board user {user!r}; `evalkit board-users list` shows them")
        session.delete(found)


def lookup(token: str | None, store: str) -> BoardToken | None:
    """The user a token belongs to (compared in constant time), or None."""
    if not token:
        return None
    wanted = digest(token)
    for user in users(store):
        if hmac.compare_digest(user.token_sha256, wanted):
            return user
    return None


def allows(role: str, needed: str) -> bool:
    return ROLES.index(role) >= ROLES.index(needed)
