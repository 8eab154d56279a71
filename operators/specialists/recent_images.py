"""The recent-images window: the PDQ hashes of recent posts' images, kept in Redis.

Each post whose images the `banks` producer hashed leaves one entry: the post's id, where it was
read (topic, partition, offset) and its images' hashes. The window is one Redis stream,
`{namespace}:recent-images`, capped near `specialists.banks.recent_window` entries (the oldest
go first). When images are banked, `vlmod bank add` looks the window up for posts seen before
the bank held them and has them decided again (`pipelines.recheck`).

Redis is imported only when a `RecentImages` is built.

>>> entry = RecentImage("p1", "posts", 0, 7, ("ab" * 32,))
>>> RecentImage.from_fields(entry.fields()) == entry
True
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from operators.exceptions import OperatorError, error_text

DEFAULT_WINDOW = 100_000  # entries; about 200 bytes each, so some 20 MB of Redis
READ_CHUNK = 5_000
HASH_HEX = 64  # a PDQ hash, 256 bits


class RecentImagesUnavailable(OperatorError):
    """The window's Redis could not be reached or failed."""


@dataclass(frozen=True)
class RecentImage:
    """One post of the window: its id, where it was read, its images' PDQ hashes (hex)."""

    post_id: str
    topic: str
    partition: int
    offset: int
    hashes: tuple[str, ...]

    def fields(self) -> dict[str, str]:
        """The stream entry's fields."""
        return {
            "post": self.post_id,
            "topic": self.topic,
            "partition": str(self.partition),
            "offset": str(self.offset),
            "hashes": ",".join(self.hashes),
        }

    @classmethod
    def from_fields(cls, fields: Mapping[str, str]) -> RecentImage:
        """The entry a stream entry's fields describe; KeyError or ValueError when malformed."""
        hashes = tuple(h for h in fields["hashes"].split(",") if h)
        if not all(len(h) == HASH_HEX and int(h, 16) >= 0 for h in hashes):
            raise ValueError(f"hashes are {HASH_HEX} hex digits each: {fields['hashes']!r}")
        return cls(
            fields["post"], fields["topic"], int(fields["partition"]), int(fields["offset"]), hashes
        )


class RecentImages:
    """The window in Redis: `add` after posts are decided, `read` when images are banked."""

    def __init__(
        self,
        redis_url: str,
        *,
        window: int = DEFAULT_WINDOW,
        namespace: str = "vlmod",
        timeout_s: float = 2.0,
    ) -> None:
        import redis

        self.window = window
        self.key = f"{namespace}:recent-images"
        self._client: Any = redis.Redis.from_url(
            redis_url,
            decode_responses=True,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
        )

    def add(self, entries: Sequence[RecentImage]) -> None:
        """Append `entries` in one round trip, trimming the window to about its size."""
        if not entries:
            return
        with self._reaching():
            pipe = self._client.pipeline(transaction=False)
            for entry in entries:
                pipe.xadd(self.key, entry.fields(), maxlen=self.window, approximate=True)
            pipe.execute()

    def read(self) -> tuple[list[RecentImage], int]:
        """Every entry, oldest first, and how many entries were malformed (and skipped)."""
        entries: list[RecentImage] = []
        malformed = 0
        start = "-"
        with self._reaching():
            while True:
                chunk = self._client.xrange(self.key, min=start, count=READ_CHUNK)
                for _, fields in chunk:
                    try:
                        entries.append(RecentImage.from_fields(fields))
                    except (KeyError, ValueError):
                        malformed += 1
                if len(chunk) < READ_CHUNK:
                    return entries, malformed
                start = "(" + chunk[-1][0]

    def close(self) -> None:
        """Release the connection pool."""
        self._client.close()

    @contextmanager
    def _reaching(self) -> Iterator[Any]:
        import redis

        try:
            yield
        except redis.RedisError as exc:
            raise RecentImagesUnavailable(
                f"recent-images window in Redis: {error_text(exc)}"
            ) from exc
