"""The recent-embeddings window: the post embeddings heads scored lately, kept in Redis.

Each post a head scored leaves one entry: its id, where it was read (topic, partition, offset),
the model that embedded it and the embedding (float32 bytes). The window is one Redis stream,
`{namespace}:recent-embeddings`, capped near `specialists.heads.recent_window` entries. When a
version of a head is promoted (or rolled back to), `vlmod heads promote --config` finds the
window's posts whose flag under the head's threshold changes with it (`heads.recheck`) and has
them decided again.

Redis is imported only when a `RecentEmbeddings` is built.

>>> entry = RecentEmbedding("p1", "posts", 0, 7, "m", (0.5, -1.0))
>>> RecentEmbedding.from_fields(entry.fields()) == entry
True
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from heads.exceptions import HeadError

DEFAULT_WINDOW = 20_000  # entries; at 576 dims some 46 MB of Redis
READ_CHUNK = 2_000


class RecentEmbeddingsUnavailable(HeadError):
    """The window's Redis could not be reached or failed."""


@dataclass(frozen=True)
class RecentEmbedding:
    """One post of the window: id, where it was read, the embedding and its model."""

    post_id: str
    topic: str
    partition: int
    offset: int
    model: str
    vector: tuple[float, ...]

    def fields(self) -> dict[str, bytes]:
        """The stream entry's fields."""
        return {
            "post": self.post_id.encode(),
            "topic": self.topic.encode(),
            "partition": str(self.partition).encode(),
            "offset": str(self.offset).encode(),
            "model": self.model.encode(),
            "vec": struct.pack(f"<{len(self.vector)}f", *self.vector),
        }

    @classmethod
    def from_fields(cls, fields: Mapping[bytes | str, bytes]) -> RecentEmbedding:
        """The entry of a stream entry's fields; KeyError or ValueError when malformed."""
        raw = {key.decode() if isinstance(key, bytes) else key: v for key, v in fields.items()}
        vec = raw["vec"]
        if not vec or len(vec) % 4:
            raise ValueError(f"an embedding of {len(vec)} bytes is not float32s")
        vector = struct.unpack(f"<{len(vec) // 4}f", vec)
        if not all(math.isfinite(x) for x in vector):
            raise ValueError("an embedding that is not finite")
        text = {key: raw[key].decode() for key in ("post", "topic", "partition", "offset", "model")}
        return cls(
            text["post"],
            text["topic"],
            int(text["partition"]),
            int(text["offset"]),
            text["model"],
            tuple(vector),
        )


class RecentEmbeddings:
    """The window in Redis: `add` after posts are decided, `read` when a head is promoted."""

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
        self.key = f"{namespace}:recent-embeddings"
        self._client: Any = redis.Redis.from_url(
            redis_url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
        )

    def add(self, entries: Sequence[RecentEmbedding]) -> None:
        """Append `entries` in one round trip, trimming the window to about its size."""
        if not entries:
            return
        with self._reaching():
            pipe = self._client.pipeline(transaction=False)
            for entry in entries:
                pipe.xadd(self.key, entry.fields(), maxlen=self.window, approximate=True)
            pipe.execute()

    def read(self) -> tuple[list[RecentEmbedding], int]:
        """Every entry, oldest first, and how many were malformed (and skipped)."""
        entries: list[RecentEmbedding] = []
        malformed = 0
        start: bytes | str = "-"
        with self._reaching():
            while True:
                chunk = self._client.xrange(self.key, min=start, count=READ_CHUNK)
                for _, fields in chunk:
                    try:
                        entries.append(RecentEmbedding.from_fields(fields))
                    except (KeyError, ValueError, UnicodeDecodeError, struct.error):
                        malformed += 1
                if len(chunk) < READ_CHUNK:
                    return entries, malformed
                start = b"(" + chunk[-1][0]

    def close(self) -> None:
        """Release the connection pool."""
        self._client.close()

    @contextmanager
    def _reaching(self) -> Iterator[None]:
        import redis

        try:
            yield
        except redis.RedisError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise RecentEmbeddingsUnavailable(
                f"recent-embeddings window in Redis: {first}"
            ) from exc
