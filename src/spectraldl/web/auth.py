"""Users, passwords and login sessions.

Passwords are hashed with Argon2id (argon2-cffi). A login creates a random
session token: the browser keeps it in an HttpOnly, SameSite cookie, the
database only its SHA-256, next to the session's CSRF token, which every form
and every API write must echo back. Sessions live in the database, so a
restarted server keeps everyone logged in; a session in use is renewed (sliding
expiry, bounded by `SESSION_MAX_LIFETIME`); expired ones are deleted at the
next login. Repeated failed logins are throttled (`LoginThrottle`): refused for
a (name, address) pair or an address, slowed for a name, so passwords cannot
be guessed at the rate the server answers and nobody can lock anyone out.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
import secrets
import threading
import time
from collections import deque
from datetime import datetime, timedelta
from typing import NamedTuple

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from spectraldl.web.models import LoginSession, User, utcnow

SESSION_LIFETIME = timedelta(days=14)
"""How long a login lasts unused: each use renews it (`renew_session`), up to the maximum."""

SESSION_MAX_LIFETIME = timedelta(days=60)
"""How long a login lasts at most, however often it is used: then the password is asked again."""

SESSION_RENEW_STEP = timedelta(hours=1)
"""A renewal is written only when it moves the expiry this far: not one write per request."""

USER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
MIN_PASSWORD_LENGTH = 8

_hasher = PasswordHasher()
_dummy_hash: list[str] = []


def _dummy() -> str:
    """A hash to verify against for unknown names, so that they take as long as wrong passwords."""
    if not _dummy_hash:
        _dummy_hash.append(_hasher.hash(secrets.token_hex(16)))
    return _dummy_hash[0]


def address_key(address: str) -> str:
    """The throttle's key of a client address: IPv6 addresses by their /64 network (one
    host gets a whole /64), anything else as given."""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.IPv6Network(f"{parsed}/64", strict=False))
    return str(parsed)


class Admission(NamedTuple):
    """The throttle's answer to a login attempt: refused for ``wait_s`` seconds (> 0) because
    of ``refused`` (``"pair"``: this name from this address; ``"address"``: any name from
    it), or let through after ``delay_s`` seconds."""

    wait_s: float = 0.0
    delay_s: float = 0.0
    refused: str = ""


class LoginThrottle:
    """Counts failed logins in a sliding window per (user name, address) pair, per address
    and per user name.

    * ``pair_limit`` failures of one name from one address: that pair is refused until
      the oldest of them leaves the window;
    * ``address_limit`` failures from one address, whatever the names: the address is
      refused (one client spraying many names);
    * ``name_limit`` failures of one name, from any addresses: attempts for the name are
      slowed by ``slow_s`` seconds, never refused, so nobody can lock an account
      by guessing its password: its owner logs in from an address that has not failed.

    An attempt counts as a failure from the moment it is let through (`attempt`) until
    it succeeds (`succeeded`), so concurrent guesses cannot all slip past the limits
    while their passwords are being checked. Kept in the server's memory (one process
    per server); keys whose failures have left the window are forgotten.
    """

    def __init__(
        self,
        pair_limit: int = 10,
        address_limit: int = 50,
        name_limit: int = 10,
        slow_s: float = 1.0,
        window_s: float = 900.0,
    ) -> None:
        self.pair_limit = pair_limit
        self.address_limit = address_limit
        self.name_limit = name_limit
        self.slow_s = slow_s
        self.window_s = window_s
        self._failures: dict[str, deque[float]] = {}
        self._sweep_at = 1024
        self._lock = threading.Lock()

    @staticmethod
    def _keys(name: str, address: str) -> tuple[str, str, str]:
        name, address = name.lower(), address_key(address)
        return f"pair:{name}\0{address}", f"addr:{address}", f"user:{name}"

    def _recent(self, key: str, now: float) -> deque[float]:
        times = self._failures.get(key, deque())
        while times and times[0] <= now - self.window_s:
            times.popleft()
        if not times:
            self._failures.pop(key, None)
        return times

    def _sweep(self, now: float) -> None:
        """Forget keys without recent failures once the table has doubled (amortised O(1))."""
        if len(self._failures) < self._sweep_at:
            return
        for key in list(self._failures):
            self._recent(key, now)
        self._sweep_at = max(1024, 2 * len(self._failures))

    def attempt(self, name: str, address: str) -> Admission:
        """Whether ``name`` may try to log in from ``address`` now; a let-through attempt is
        counted as a failure until `succeeded` is called for it (a refused one is not)."""
        now = time.monotonic()
        pair, addr, user = self._keys(name, address)
        with self._lock:
            self._sweep(now)
            waits = [
                (times[0] + self.window_s - now, why)
                for key, limit, why in (
                    (pair, self.pair_limit, "pair"),
                    (addr, self.address_limit, "address"),
                )
                if len(times := self._recent(key, now)) >= limit
            ]
            if waits:
                wait_s, why = max(waits)
                return Admission(wait_s=wait_s, refused=why)
            slowed = len(self._recent(user, now)) >= self.name_limit
            for key in (pair, addr, user):
                self._failures.setdefault(key, deque()).append(now)
        return Admission(delay_s=self.slow_s if slowed else 0.0)

    def succeeded(self, name: str, address: str) -> None:
        """A counted attempt logged in: forget the pair's failures, uncount it elsewhere."""
        pair, addr, user = self._keys(name, address)
        with self._lock:
            self._failures.pop(pair, None)
            for key in (addr, user):
                times = self._failures.get(key)
                if times:
                    times.pop()
                if times is not None and not times:
                    del self._failures[key]


class UserError(ValueError):
    """A user name or password that cannot be accepted, with the reason."""


def hash_password(password: str) -> str:
    """The Argon2id hash of ``password`` (with its own random salt)."""
    return _hasher.hash(password)


def check_user_name(name: str) -> str:
    """Return ``name`` if it is a valid user name (letters, digits, ``._@-``; 1-64 chars)."""
    if not USER_NAME.match(name):
        raise UserError(
            f"invalid user name {name!r}: use 1-64 letters, digits, '.', '_', '@' or '-', "
            "starting with a letter or digit"
        )
    return name


def check_password(password: str) -> str:
    """Return ``password`` if it is long enough."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise UserError(f"the password must have at least {MIN_PASSWORD_LENGTH} characters")
    return password


def add_user(session: Session, name: str, password: str, *, admin: bool = False) -> User:
    """Create a user (the caller commits). Raises `UserError` for a taken or invalid name."""
    check_user_name(name)
    check_password(password)
    if session.scalar(select(User.id).where(User.name == name)) is not None:
        raise UserError(f"a user named {name!r} already exists")
    user = User(name=name, password_hash=hash_password(password), is_admin=admin, is_active=True)
    session.add(user)
    session.flush()
    return user


def set_password(session: Session, user: User, password: str) -> None:
    """Replace a user's password and end all their sessions (the caller commits)."""
    check_password(password)
    user.password_hash = hash_password(password)
    end_user_sessions(session, user)


def set_active(session: Session, user: User, active: bool) -> None:
    """Activate or deactivate a user; deactivation ends all their sessions (the caller
    commits), so reactivating them later does not revive old logins."""
    user.is_active = active
    if not active:
        end_user_sessions(session, user)


def end_user_sessions(session: Session, user: User) -> None:
    """Delete every login session of ``user`` (the caller commits)."""
    session.execute(delete(LoginSession).where(LoginSession.user_id == user.id))


def authenticate(session: Session, name: str, password: str) -> User | None:
    """The active user with this name and password, else None (in constant-ish time)."""
    user = session.scalar(select(User).where(User.name == name))
    stored = user.password_hash if user is not None else _dummy()
    try:
        _hasher.verify(stored, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return None
    if user is None or not user.is_active:
        return None
    if _hasher.check_needs_rehash(stored):
        user.password_hash = hash_password(password)
    return user


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def start_session(session: Session, user: User) -> tuple[str, LoginSession]:
    """Create a login session (deleting expired ones); returns the cookie token and the row."""
    token = secrets.token_urlsafe(32)
    now = utcnow()
    session.execute(delete(LoginSession).where(LoginSession.expires_at <= now))
    row = LoginSession(
        token_hash=_token_hash(token),
        user_id=user.id,
        csrf_token=secrets.token_urlsafe(32),
        created_at=now,
        expires_at=now + SESSION_LIFETIME,
    )
    session.add(row)
    session.flush()
    return token, row


def find_session(session: Session, token: str | None) -> tuple[User, LoginSession] | None:
    """The user and session of a cookie token, if it is valid, unexpired and the user active."""
    if not token or len(token) > 256:
        return None
    row = session.get(LoginSession, _token_hash(token))
    if row is None or row.expires_at <= utcnow():
        return None
    user = session.get(User, row.user_id)
    if user is None or not user.is_active:
        return None
    return user, row


def renewed_expiry(row: LoginSession, now: datetime) -> datetime | None:
    """The expiry a use at ``now`` gives a login (`SESSION_LIFETIME` on, never past
    `SESSION_MAX_LIFETIME` after the login), or None while that moves it less than
    `SESSION_RENEW_STEP`."""
    target = min(now + SESSION_LIFETIME, row.created_at + SESSION_MAX_LIFETIME)
    return target if target - row.expires_at >= SESSION_RENEW_STEP else None


def renew_session(session: Session, row: LoginSession) -> bool:
    """Slide a used login's expiry forward (the caller commits); whether there was anything
    to write. A login ended meanwhile (logout, password change) stays ended: only a row
    that still exists unexpired is updated."""
    now = utcnow()
    expiry = renewed_expiry(row, now)
    if expiry is None:
        return False
    session.execute(
        update(LoginSession)
        .where(LoginSession.token_hash == row.token_hash, LoginSession.expires_at > now)
        .values(expires_at=expiry)
    )
    return True


def end_session(session: Session, token: str | None) -> None:
    """Delete the session of a cookie token (logout); the caller commits."""
    if token:
        session.execute(delete(LoginSession).where(LoginSession.token_hash == _token_hash(token)))


def tokens_match(expected: str, given: str | None) -> bool:
    """Constant-time comparison of CSRF tokens."""
    return bool(given) and hmac.compare_digest(expected.encode(), str(given).encode())
