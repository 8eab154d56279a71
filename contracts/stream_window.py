"""A window of recent entries in one Redis stream, capped near a size (the oldest go first).

The recent-images window (`operators.specialists.recent_images`) and the recent-embeddings
window (`heads.recent`) are two of these with their own entry types: an entry gives its stream
fields with `fields()` and is read back with `from_fields`; a malformed entry is counted and
skipped. Redis is imported only when a window is built; a failure of Redis raises the
window's own unavailable error, naming it and the URL with its password masked.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from contracts.services import reaching_redis

MALFORMED = (KeyError, ValueError, UnicodeDecodeError)


class StreamEntry(Protocol):
    """What a window holds: an entry that gives its stream fields and is read back from them
    (KeyError, ValueError or UnicodeDecodeError when they are malformed)."""

    def fields(self) -> Mapping[str, Any]:
        """The stream entry's fields."""
        ...

    @classmethod
    def from_fields(cls, fields: Any) -> Any:
        """The entry the fields describe."""
        ...


E = TypeVar("E", bound=StreamEntry)


class StreamWindow(Generic[E]):
    """`add` entries after posts are decided; `read` them all back, oldest first.

    A window is a subclass that names its stream and its entries: `name` (the stream is
    `{namespace}:{name}`), `entry` (the entry type), `unavailable` (the error a Redis failure
    raises), `default_window` (entries kept), and `decode_responses` and `read_chunk` (entries
    a round trip: it bounds the memory of one reply).
    """

    name: ClassVar[str]
    entry: ClassVar[type[StreamEntry]]
    unavailable: ClassVar[type[Exception]]
    default_window: ClassVar[int]
    decode_responses: ClassVar[bool] = False
    read_chunk: ClassVar[int] = 5_000

    def __init__(
        self,
        redis_url: str,
        *,
        window: int | None = None,
        namespace: str = "vlmod",
        timeout_s: float = 2.0,
    ) -> None:
        import redis

        self.window = self.default_window if window is None else window
        self.key, self.url = f"{namespace}:{self.name}", redis_url
        self._client: Any = redis.Redis.from_url(
            redis_url,
            decode_responses=self.decode_responses,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
        )

    def add(self, entries: Sequence[E]) -> None:
        """Append `entries` in one round trip, trimming the window to about its size."""
        if not entries:
            return
        with self._reaching():
            pipe = self._client.pipeline(transaction=False)
            for entry in entries:
                pipe.xadd(self.key, entry.fields(), maxlen=self.window, approximate=True)
            pipe.execute()

    def read(self) -> tuple[list[E], int]:
        """Every entry, oldest first, and how many were malformed (and skipped)."""
        entries: list[E] = []
        malformed = 0
        start: Any = "-"
        with self._reaching():
            while True:
                chunk = self._client.xrange(self.key, min=start, count=self.read_chunk)
                for _, fields in chunk:
                    try:
                        entries.append(self.entry.from_fields(fields))
                    except MALFORMED:
                        malformed += 1
                if len(chunk) < self.read_chunk:
                    return entries, malformed
                last = chunk[-1][0]
                start = (b"(" if isinstance(last, bytes) else "(") + last

    def close(self) -> None:
        """Release the connection pool."""
        self._client.close()

    def _reaching(self) -> AbstractContextManager[None]:
        return reaching_redis(self.unavailable, f"{self.name} window", self.url)
