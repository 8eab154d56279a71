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

from collections.abc import Mapping
from dataclasses import dataclass

from contracts.stream_window import StreamWindow
from operators.exceptions import OperatorError

DEFAULT_WINDOW = 100_000  # entries; about 200 bytes each, so some 20 MB of Redis
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


class RecentImages(StreamWindow[RecentImage]):
    """The window in Redis: `add` after posts are decided, `read` when images are banked."""

    name = "recent-images"
    entry = RecentImage
    unavailable = RecentImagesUnavailable
    default_window = DEFAULT_WINDOW
    decode_responses = True
