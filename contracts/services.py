"""How a package reports a service it could not reach: the URL with its password masked, and
Redis failures turned into the package's own unavailable error.

Standard library only (redis is imported when a failure is translated), so every layer,
`operators` on a GPU box included, may use it.

    with reaching_redis(BanksUnavailable, "hash banks", url):
        client.hgetall(key)
    # BanksUnavailable: hash banks unavailable: Redis at redis://:***@host:6379/0 failed: ...
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit, urlunsplit

# `<_io.BytesIO object at 0x7f...>` and bare addresses: noise to a reader of an error.
_OBJECT_REPR = re.compile(r"\s*<[^<>]*\bat 0x[0-9a-fA-F]+>|\s*\b0x[0-9a-fA-F]{8,}\b")


def redact_url(url: str) -> str:
    """The URL with any password (and the query string, which may carry one) masked."""
    parts = urlsplit(url)
    userinfo, at, host = parts.netloc.rpartition("@")
    if at:
        user = userinfo.partition(":")[0] if ":" in userinfo else ""
        host = f"{user}:***@{host}" if user else f"***@{host}"
    return urlunsplit(parts._replace(netloc=host, query=""))


def error_text(error: BaseException) -> str:
    """The first line of an error's message without object reprs; the class name if empty."""
    lines = str(error).strip().splitlines()
    text = _OBJECT_REPR.sub("", lines[0]).strip() if lines else ""
    return text or type(error).__name__


@contextmanager
def reaching_redis(unavailable: type[Exception], what: str, url: str) -> Iterator[None]:
    """Redis errors and lost connections inside the block raise `unavailable` with one line:
    `<what> unavailable: Redis at <url, password masked> failed: <the error's first line>`."""
    import redis

    try:
        yield
    except (redis.RedisError, OSError) as exc:
        raise unavailable(
            f"{what} unavailable: Redis at {redact_url(url)} failed: {error_text(exc)}"
        ) from exc
