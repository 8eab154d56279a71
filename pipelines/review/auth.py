"""Who may use the review console: argon2 passwords, signed sessions, CSRF, login throttling.

Make a password hash for a reviewer's config entry (prompts; the password never hits the shell
history), or a monitoring token and the sha256 the config keeps:

    python -m pipelines.review.auth
    python -m pipelines.review.auth --token
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from itsdangerous import BadSignature, URLSafeSerializer

from contracts.errors import ModerationError

if TYPE_CHECKING:
    from pipelines.review.settings import ReviewConfig

Clock = Callable[[], float]
SESSION_COOKIE = "vlmod_review"
_SALT = "vlmod-review-session-v1"


class AccessRefused(ModerationError):
    """A request the console refuses; the console turns each kind into its own status."""


class LoginRequired(AccessRefused):
    """No valid session: the browser goes to /login (HTML) or gets 401 (API)."""


class CsrfRefused(AccessRefused):
    """A POST without the session's CSRF token (403)."""


class QueueForbidden(AccessRefused):
    """The reviewer may not work this queue (403)."""


class LoginThrottled(AccessRefused):
    """Too many failed logins for this name from this address (429)."""


@cache
def _hasher() -> PasswordHasher:
    return PasswordHasher()  # argon2id with the library's current recommended cost


def hash_password(password: str) -> str:
    """An argon2id hash of `password` for a reviewer's `password_argon2`."""
    if not password:
        raise ValueError("the password is empty")
    return _hasher().hash(password)


@cache
def _decoy_hash() -> str:
    # Unknown names are checked against this, so timing does not tell which names exist.
    return hash_password(secrets.token_urlsafe(16))


def verify_password(encoded: str | None, password: str) -> bool:
    """True when `password` matches the argon2 hash; a missing hash costs the same and fails."""
    try:
        return _hasher().verify(encoded or _decoy_hash(), password) and encoded is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def hash_token(token: str) -> str:
    """The sha256 hex the config keeps for a bearer token (tokens are random, so sha256 does)."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_csrf_token() -> str:
    """A fresh random CSRF token."""
    return secrets.token_urlsafe(32)


def csrf_matches(expected: str, submitted: str | None) -> bool:
    """Constant-time comparison of the session's token with the one a form sent."""
    return bool(submitted) and hmac.compare_digest(expected.encode(), (submitted or "").encode())


@dataclass(frozen=True)
class Session:
    """What the signed cookie holds; `reviewer` is None before login (it still carries CSRF)."""

    reviewer: str | None
    csrf: str
    issued_at: float


class SessionSigner:
    """Signs sessions into cookie values and reads them back; tampered or old ones read as None."""

    def __init__(self, secret: str, *, max_age_s: float, clock: Clock = time.time) -> None:
        self._serializer = URLSafeSerializer(secret, salt=_SALT)
        self.max_age_s = max_age_s
        self._clock = clock

    def issue(self, reviewer: str | None) -> tuple[Session, str]:
        """A new session with a fresh CSRF token, and its cookie value."""
        session = Session(reviewer, new_csrf_token(), self._clock())
        payload = {"r": session.reviewer, "c": session.csrf, "t": session.issued_at}
        return session, self._serializer.dumps(payload)

    def read(self, cookie: str | None) -> Session | None:
        """The session in `cookie`, or None when absent, tampered with, malformed or expired."""
        if not cookie:
            return None
        try:
            payload = self._serializer.loads(cookie)
        except BadSignature:
            return None
        session = _session_from(payload)
        if session is None or not 0 <= self._clock() - session.issued_at <= self.max_age_s:
            return None
        return session


def _session_from(payload: object) -> Session | None:
    if not isinstance(payload, dict):
        return None
    reviewer, csrf, issued = payload.get("r"), payload.get("c"), payload.get("t")
    if not (reviewer is None or isinstance(reviewer, str)) or not isinstance(csrf, str):
        return None
    return Session(reviewer, csrf, float(issued)) if isinstance(issued, int | float) else None


class LoginLimiter:
    """Counts failed logins per (name, address) in a sliding window; thread-safe, in memory."""

    def __init__(self, max_failures: int, window_s: float, clock: Clock = time.time) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self._clock = clock
        self._failures: dict[tuple[str, str], deque[float]] = {}
        self._lock = threading.Lock()

    def check(self, name: str, address: str) -> None:
        """Raise LoginThrottled when this name and address have used up their attempts."""
        with self._lock:
            recent = self._recent((name, address))
        if len(recent) >= self.max_failures:
            wait = max(1, int(recent[0] + self.window_s - self._clock()) + 1)
            raise LoginThrottled(f"too many failed logins; try again in {wait} s")

    def failed(self, name: str, address: str) -> None:
        """Record a failed attempt."""
        with self._lock:
            self._recent((name, address)).append(self._clock())
            if len(self._failures) > 10_000:  # a spray of names must not grow memory forever
                self._forget_quiet()

    def succeeded(self, name: str, address: str) -> None:
        """Forget the failures of a name and address that just logged in."""
        with self._lock:
            self._failures.pop((name, address), None)

    def _recent(self, key: tuple[str, str]) -> deque[float]:
        times = self._failures.setdefault(key, deque())
        while times and times[0] <= self._clock() - self.window_s:
            times.popleft()
        return times

    def _forget_quiet(self) -> None:
        for key in [key for key in self._failures if not self._recent(key)]:
            del self._failures[key]


class Gate:
    """The config's reviewers, tokens and queue grants, asked one question at a time."""

    def __init__(self, config: ReviewConfig) -> None:
        self.config = config
        self._token_names = {t.sha256: name for name, t in config.tokens.items()}

    def login_ok(self, name: str, password: str) -> bool:
        """True when `name` is a reviewer and `password` is theirs."""
        reviewer = self.config.reviewers.get(name)
        return verify_password(reviewer.password_argon2 if reviewer else None, password)

    def reviewer_of(self, session: Session | None) -> str:
        """The logged-in reviewer of `session`, or LoginRequired (also for removed reviewers)."""
        if session is None or session.reviewer not in self.config.reviewers:
            raise LoginRequired("log in first")
        return session.reviewer

    def check_queue(self, reviewer: str, queue: str) -> None:
        """Raise QueueForbidden unless `reviewer` may work `queue`."""
        if queue not in self.config.queues_of(reviewer):
            raise QueueForbidden(f"{reviewer} may not work queue {queue!r}")

    def token_name(self, authorization: str | None) -> str | None:
        """The name of the bearer token in an Authorization header, or None."""
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            return None
        wanted = hash_token(token.strip())
        for digest, name in self._token_names.items():
            if hmac.compare_digest(digest, wanted):
                return name
        return None


def main(argv: list[str]) -> int:
    """Prompt for a password and print its argon2id hash; `--token` makes a bearer token."""
    if "--token" in argv:
        token = secrets.token_urlsafe(32)
        print(f"token (give to the client): {token}\nsha256 (for the config): {hash_token(token)}")
        return 0
    import getpass

    password = getpass.getpass("password: ")
    if password != getpass.getpass("again: "):
        print("the passwords differ", file=sys.stderr)
        return 1
    print(hash_password(password))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
