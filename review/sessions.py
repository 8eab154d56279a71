"""Logged-in review sessions, kept in Redis: made at login, ended at logout or when unused.

The cookie only names a session (a random 256-bit token, signed); Redis holds who it belongs to,
its CSRF token and when it was made and last used, under the token's sha256, so a copy of Redis
gives no working cookie. A session ends at logout (deleted), after `idle_s` unused, after
`max_age_s` in all, and when its reviewer leaves the config (`revoke_all_but`, at start). Time
comes from the injected clock; Redis' own expiry only collects what the clock already ended.

Keys, under the hash tag `{namespace}` as the task store's:

    session:<sha256>        HASH  reviewer, csrf, issued, seen
    sessions-of:<reviewer>  SET   the sha256 of each of the reviewer's sessions
    session-reviewers       SET   reviewers with sessions
"""

from __future__ import annotations

import contextlib
import hashlib
import secrets
import time
from collections.abc import Callable, Collection
from typing import Any

from review.auth import Session, new_csrf_token
from review.tasks import reaching_redis, redis_client

TOUCH_EVERY_S = 5.0  # a page view writes "last seen" at most this often


class SessionStore:
    """Server-side sessions in Redis: create at login, read per request, revoke at logout."""

    def __init__(
        self,
        redis_url: str,
        *,
        namespace: str,
        max_age_s: float,
        idle_s: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.max_age_s, self.idle_s = max_age_s, idle_s
        self._namespace, self._url = namespace, redis_url
        self._clock = clock
        self._client = redis_client(redis_url)

    def create(self, reviewer: str) -> Session:
        """A new session for `reviewer` with a fresh token and CSRF token."""
        token, now = secrets.token_urlsafe(32), self._clock()
        session = Session(reviewer, new_csrf_token(), now, token)
        digest = _digest(token)
        fields = {"reviewer": reviewer, "csrf": session.csrf, "issued": repr(now)}
        fields["seen"] = repr(now)
        with self._reaching():
            pipe = self._client.pipeline(transaction=True)
            pipe.hset(self._key(f"session:{digest}"), mapping=fields)
            pipe.expire(self._key(f"session:{digest}"), self._ttl(now, now))
            pipe.sadd(self._key(f"sessions-of:{reviewer}"), digest)
            pipe.sadd(self._key("session-reviewers"), reviewer)
            pipe.execute()
        return session

    def read(self, token: str) -> Session | None:
        """The live session `token` names, or None (unknown, revoked, idle or too old)."""
        key, now = self._key(f"session:{_digest(token)}"), self._clock()
        with self._reaching():
            fields = self._client.hgetall(key)
        session, seen = _session_of(fields, token)
        if session is None:
            return None
        if now - session.issued_at > self.max_age_s or now - seen > self.idle_s:
            self.revoke(token)
            return None
        if now - seen >= TOUCH_EVERY_S:
            self._touch(key, session.issued_at, now)
        return session

    def revoke(self, token: str) -> None:
        """End the session `token` names; an unknown one is already ended."""
        digest = _digest(token)
        with self._reaching():
            reviewer = self._client.hget(self._key(f"session:{digest}"), "reviewer")
            pipe = self._client.pipeline(transaction=True)
            pipe.delete(self._key(f"session:{digest}"))
            if reviewer is not None:
                pipe.srem(self._key(f"sessions-of:{reviewer}"), digest)
            pipe.execute()

    def revoke_all_but(self, reviewers: Collection[str]) -> list[str]:
        """End every session of a reviewer not in `reviewers`; the names whose sessions ended."""
        with self._reaching():
            known = self._client.smembers(self._key("session-reviewers"))
            gone = sorted(set(known) - set(reviewers))
            for reviewer in gone:
                self._revoke_reviewer(reviewer)
        return gone

    def _revoke_reviewer(self, reviewer: str) -> None:
        digests = self._client.smembers(self._key(f"sessions-of:{reviewer}"))
        pipe = self._client.pipeline(transaction=True)
        for digest in digests:
            pipe.delete(self._key(f"session:{digest}"))
        pipe.delete(self._key(f"sessions-of:{reviewer}"))
        pipe.srem(self._key("session-reviewers"), reviewer)
        pipe.execute()

    def _touch(self, key: str, issued: float, now: float) -> None:
        with self._reaching():
            pipe = self._client.pipeline(transaction=True)
            pipe.hset(key, "seen", repr(now))
            pipe.expire(key, self._ttl(issued, now))
            pipe.execute()

    def _ttl(self, issued: float, now: float) -> int:
        """Seconds until the session could no longer be valid, at least one."""
        return max(1, int(min(issued + self.max_age_s, now + self.idle_s) - now) + 1)

    def _key(self, name: str) -> str:
        return f"{{{self._namespace}}}:{name}"

    def _reaching(self) -> contextlib.AbstractContextManager[None]:
        return reaching_redis("review sessions", self._url)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _session_of(fields: dict[str, Any], token: str) -> tuple[Session | None, float]:
    try:
        issued, seen = float(fields["issued"]), float(fields["seen"])
        return Session(str(fields["reviewer"]), str(fields["csrf"]), issued, token), seen
    except (KeyError, ValueError):
        return None, 0.0
