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
from collections.abc import Mapping
from dataclasses import dataclass

from contracts.stream_window import StreamWindow
from heads.exceptions import HeadError

DEFAULT_WINDOW = 20_000  # entries; at 576 dims some 46 MB of Redis


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


class RecentEmbeddings(StreamWindow[RecentEmbedding]):
    """The window in Redis: `add` after posts are decided, `read` when a head is promoted."""

    name = "recent-embeddings"
    entry = RecentEmbedding
    unavailable = RecentEmbeddingsUnavailable
    default_window = DEFAULT_WINDOW
    read_chunk = 2_000  # some 2.3 KB an entry at 576 dims
