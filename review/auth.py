"""Who may use the review console: argon2 passwords, signed cookies, CSRF, login throttling.

A logged-in cookie only names a server-side session (`review.sessions`); the cookie
before login carries the login form's CSRF token and grants nothing. Make a password hash for a
reviewer's config entry (prompts; the password never hits the shell history), a monitoring token
and the sha256 the config keeps, or a session secret:

    python -m review.auth
    python -m review.auth --token
    python -m review.auth --secret
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
import sys
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from itsdangerous import BadSignature, URLSafeSerializer

from contracts.errors import ModerationError

if TYPE_CHECKING:
    from review.settings import ReviewConfig

Clock = Callable[[], float]
SESSION_COOKIE = "vlmod_review"
_SALT = "vlmod-review-session-v2"  # v1 cookies held the reviewer themselves: all refused
MAX_NAME_CHARS = 64  # the longest reviewer name the config accepts
MAX_PASSWORD_CHARS = 1024  # longer is no password anyone types; never hashed


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


class LoginBusy(AccessRefused):
    """Every password check is taken and none came free in time (503)."""


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
    if len(password) > MAX_PASSWORD_CHARS:  # refused unhashed: its length is no secret
        return False
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
    """A request's session: `reviewer` and `token` are None before login (CSRF still holds)."""

    reviewer: str | None
    csrf: str
    issued_at: float
    token: str | None = None  # the server-side session's id, which the cookie names


@dataclass(frozen=True)
class SignedCookie:
    """A cookie whose signature held: a logged-in session's token, or the pre-login session."""

    token: str | None = None
    anonymous: Session | None = None


class SessionSigner:
    """Signs cookie values and reads them back; tampered, malformed or old ones read as None."""

    def __init__(self, secret: str, *, max_age_s: float, clock: Clock = time.time) -> None:
        self._serializer = URLSafeSerializer(secret, salt=_SALT)
        self.max_age_s = max_age_s
        self._clock = clock

    def anonymous(self) -> tuple[Session, str]:
        """A pre-login session with a fresh CSRF token, and its cookie value."""
        session = Session(None, new_csrf_token(), self._clock())
        return session, self._serializer.dumps({"c": session.csrf, "t": session.issued_at})

    def cookie_for(self, token: str) -> str:
        """The cookie value naming the server-side session `token`."""
        return self._serializer.dumps({"s": token})

    def read(self, cookie: str | None) -> SignedCookie | None:
        """What `cookie` holds, or None when absent, tampered with, malformed or expired."""
        if not cookie or len(cookie) > 4096:
            return None
        try:
            payload = self._serializer.loads(cookie)
        except BadSignature:
            return None
        if not isinstance(payload, dict):
            return None
        if isinstance(payload.get("s"), str):
            return SignedCookie(token=payload["s"])
        session = _anonymous_from(payload)
        if session is None or not 0 <= self._clock() - session.issued_at <= self.max_age_s:
            return None
        return SignedCookie(anonymous=session)


def _anonymous_from(payload: dict[str, object]) -> Session | None:
    csrf, issued = payload.get("c"), payload.get("t")
    if not isinstance(csrf, str) or not isinstance(issued, int | float):
        return None
    return Session(None, csrf, float(issued))


class LoginLimiter:
    """Counts failed logins per (name, address) and per address in a sliding window.

    Thread-safe and bounded: names are kept as short digests, at most `max_entries` keys are
    remembered (the least recently failed go first), and a key whose window has passed is
    forgotten whenever the limiter is touched.
    """

    def __init__(
        self,
        max_failures: int,
        window_s: float,
        clock: Clock = time.time,
        *,
        max_per_address: int | None = None,
        max_entries: int = 10_000,
    ) -> None:
        self.max_failures = max_failures
        self.max_per_address = max_per_address or max_failures * 6
        self.window_s = window_s
        self.max_entries = max_entries
        self._clock = clock
        self._failures: OrderedDict[tuple[str, str], deque[float]] = OrderedDict()
        self._lock = threading.RLock()  # attempt() checks under its own hold

    def check(self, name: str, address: str) -> None:
        """Raise LoginThrottled when this name and address, or the address, used up its tries."""
        now = self._clock()
        with self._lock:
            self._forget_old(now)
            pair = list(self._failures.get(_pair(name, address), ()))
            spray = list(self._failures.get(("", address), ()))
        self._refuse_past(pair, spray, now)

    def _refuse_past(self, pair: list[float], spray: list[float], now: float) -> None:
        for times, limit in ((pair, self.max_failures), (spray, self.max_per_address)):
            recent = [at for at in times if at > now - self.window_s]
            if len(recent) >= limit:
                wait = max(1, int(recent[-limit] + self.window_s - now) + 1)
                raise LoginThrottled(f"too many failed logins; try again in {wait} s")

    def attempt(self, name: str, address: str) -> None:
        """Check, then count this attempt as failed until `succeeded` says otherwise.

        Counting before the password check means a burst of concurrent attempts is limited
        as it arrives, not only once its checks have failed.
        """
        with self._lock:
            self.check(name, address)
            self._record(name, address)

    def failed(self, name: str, address: str) -> None:
        """Record a failed attempt."""
        with self._lock:
            self._record(name, address)

    def _record(self, name: str, address: str) -> None:
        now = self._clock()
        longest = max(self.max_failures, self.max_per_address)
        for key in (_pair(name, address), ("", address)):
            times = self._failures.pop(key, None) or deque(maxlen=longest)
            times.append(now)
            self._failures[key] = times  # now the most recently failed
        while len(self._failures) > self.max_entries:
            self._failures.popitem(last=False)

    def succeeded(self, name: str, address: str) -> None:
        """Forget the failures of a name and address that just logged in, and this attempt."""
        with self._lock:
            self._failures.pop(_pair(name, address), None)
            spray = self._failures.get(("", address))
            if spray:
                spray.pop()

    def __len__(self) -> int:
        return len(self._failures)

    def _forget_old(self, now: float) -> None:
        # Entries are kept in order of their last failure: the stale ones are at the front.
        while self._failures:
            key, times = next(iter(self._failures.items()))
            if times and times[-1] > now - self.window_s:
                return
            del self._failures[key]


def _pair(name: str, address: str) -> tuple[str, str]:
    # A digest keeps each entry small whatever the name; "" is the per-address key's name.
    return hashlib.blake2b(name.encode(), digest_size=12).hexdigest(), address


def client_address(peer: str | None, forwarded_for: str | None, trusted: Sequence[str]) -> str:
    """The client's address: the peer's, or behind trusted proxies the nearest untrusted hop.

    X-Forwarded-For is read only when the peer itself is a trusted proxy, from the right (each
    proxy appends what it saw), so a client cannot name itself by sending the header.
    """
    networks = [ipaddress.ip_network(proxy, strict=False) for proxy in trusted]
    address = peer or "unknown"
    if not _within(address, networks) or not forwarded_for:
        return address
    for hop in reversed([part.strip() for part in forwarded_for.split(",")][-16:]):
        if not _within(hop, networks):
            return hop if _is_address(hop) else address
    return address


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _within(address: str, networks: Sequence[Network]) -> bool:
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(parsed in network for network in networks)


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


class Gate:
    """The config's reviewers, tokens and queue grants, asked one question at a time."""

    def __init__(self, config: ReviewConfig) -> None:
        self.config = config
        self._token_names = {t.sha256: name for name, t in config.tokens.items()}

    def login_ok(self, name: str, password: str) -> bool:
        """True when `name` is a reviewer and `password` is theirs."""
        if len(name) > MAX_NAME_CHARS:
            return False
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
    """Prompt for a password and print its argon2id hash; `--token`, `--secret` make those."""
    if "--secret" in argv:
        print(secrets.token_urlsafe(48))
        return 0
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
