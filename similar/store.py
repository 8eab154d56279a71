"""The similar-posts window: recent post embeddings in Redis, one stream per model.

Each decided post leaves one entry in the stream `{namespace}:similar:{model}`: its id, the key
of its review task or verdict, its review queue (empty when none), when (epoch seconds) and its
embedding as little-endian float32 bytes (2.3 KB at 576 dims, so the default window of 100,000
posts holds some 230 MB of Redis). XADD trims the stream to about `window` entries, oldest
first, in whole stream nodes (100 entries by default), so it may hold a node more. Readers
(`SharedIndex`) read only the entries past the last id they hold, and compare that id with the
stream's first id to tell that the window moved past them.

The client keeps bytes (no decode_responses): the vector travels raw, the text fields are
decoded here. An entry that does not decode is skipped and counted in `malformed`, never
raised. Redis is imported only when a `SimilarStore` is built.

>>> entry = SimilarEntry("p1", "tiny", (0.5, -1.0), "review:p1", "spam", 1.5e9)
>>> decode_entry("tiny", b"1-0", entry.fields())[0] == replace(entry, vector=(), stream_id="1-0")
True
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from contracts.services import reaching_redis
from similar.exceptions import SimilarUnavailable

DEFAULT_WINDOW = 100_000
READ_CHUNK = 1_000  # entries per XRANGE: about 2.3 MB at 576 dims
VECTOR_DTYPE = np.dtype("<f4")

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SimilarEntry:
    """One post of the window: id, model, embedding, task or verdict key, queue, epoch seconds.

    `stream_id` is the stream entry's id once read back (empty before it is added); readers
    holding many entries keep them with `vector=()` and the vectors in their index.
    """

    post_id: str
    model: str
    vector: tuple[float, ...]
    key: str
    queue: str | None
    at: float
    stream_id: str = ""

    def fields(self) -> dict[str, bytes]:
        """The stream entry's fields; ValueError when the vector could not be searched."""
        vector = np.asarray(self.vector, dtype=VECTOR_DTYPE)
        if vector.ndim != 1 or not _searchable(vector):
            raise ValueError(f"post {self.post_id}: the vector is empty, zero or not finite")
        return {
            "post": self.post_id.encode(),
            "key": self.key.encode(),
            "queue": (self.queue or "").encode(),
            "at": repr(float(self.at)).encode(),
            "vec": vector.tobytes(),
        }


@dataclass(frozen=True)
class WindowStart:
    """The stream's oldest entry: its id, and its vector's dims (None when it is malformed)."""

    first_id: str
    dims: int | None


@dataclass(frozen=True)
class StreamChunk:
    """One XRANGE's worth: entries (vectors left out), their vectors, the last id, skipped count."""

    entries: tuple[SimilarEntry, ...]
    vectors: tuple[np.ndarray, ...]
    last_id: str
    malformed: int


class SimilarStore:
    """The window in Redis: `add` as posts are decided, `read_since` by every reader."""

    def __init__(
        self,
        redis_url: str,
        *,
        namespace: str = "vlmod",
        window: int = DEFAULT_WINDOW,
        timeout_s: float = 2.0,
    ) -> None:
        import redis

        self.url = redis_url
        self.namespace = namespace
        self.window = window
        self.malformed = 0  # entries skipped by every read so far
        self._client: Any = redis.Redis.from_url(
            redis_url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
        )

    def key(self, model: str) -> str:
        """The stream of one model's embeddings (`/` and `:` in the name are fine in a key)."""
        return f"{self.namespace}:similar:{model}"

    def add(self, entries: Sequence[SimilarEntry]) -> None:
        """Append `entries` in one round trip, trimming each stream to about the window."""
        fields = [(self.key(entry.model), entry.fields()) for entry in entries]
        if not fields:
            return
        with self._reaching():
            pipe = self._client.pipeline(transaction=False)
            for key, values in fields:
                pipe.xadd(key, values, maxlen=self.window, approximate=True)
            pipe.execute()

    def read_since(self, model: str, last_id: str = "0") -> tuple[list[SimilarEntry], str]:
        """The entries after `last_id`, oldest first, and the last id read (`last_id` if none)."""
        entries: list[SimilarEntry] = []
        for chunk in self.chunks(model, last_id):
            for entry, vector in zip(chunk.entries, chunk.vectors, strict=True):
                entries.append(replace(entry, vector=tuple(vector.tolist())))
            last_id = chunk.last_id
        return entries, last_id

    def chunks(self, model: str, last_id: str = "0") -> Iterator[StreamChunk]:
        """The entries after `last_id` a chunk at a time, vectors as float32 arrays."""
        start = "-" if last_id in ("0", "0-0") else f"({last_id}"
        while True:
            with self._reaching():
                raw = self._client.xrange(self.key(model), min=start, count=READ_CHUNK)
            if not raw:
                return
            chunk = _chunk(model, raw)
            self._count_malformed(model, chunk.malformed)
            yield chunk
            if len(raw) < READ_CHUNK:
                return
            start = f"({chunk.last_id}"

    def window_start(self, model: str) -> WindowStart | None:
        """The oldest entry still in the window, or None when the stream is empty or absent."""
        with self._reaching():
            raw = self._client.xrange(self.key(model), count=1)
        if not raw:
            return None
        stream_id, fields = raw[0]
        try:
            dims: int | None = len(decode_entry(model, stream_id, fields)[1])
        except (KeyError, ValueError):
            dims = None
        return WindowStart(_text(stream_id), dims)

    def first_id(self, model: str) -> str | None:
        """The oldest id in the window: past a reader's last id, the reader missed entries."""
        start = self.window_start(model)
        return None if start is None else start.first_id

    def close(self) -> None:
        """Release the connection pool."""
        self._client.close()

    def _count_malformed(self, model: str, count: int) -> None:
        if count:
            self.malformed += count
            logger.warning("similar posts: skipped %d malformed entries of %s", count, model)

    def _reaching(self) -> AbstractContextManager[None]:
        return reaching_redis(SimilarUnavailable, "similar posts", self.url)


def decode_entry(
    model: str, stream_id: bytes | str, fields: Mapping[bytes, bytes] | Mapping[str, bytes]
) -> tuple[SimilarEntry, np.ndarray]:
    """The entry (vector left out) and its vector; KeyError or ValueError when malformed."""
    values = {_text(name): value for name, value in fields.items()}
    vector = np.frombuffer(values["vec"], dtype=VECTOR_DTYPE)  # ValueError: not whole floats
    if not _searchable(vector):
        raise ValueError("the vector is empty, zero or not finite")
    queue = _text(values["queue"])
    entry = SimilarEntry(
        post_id=_text(values["post"]),
        model=model,
        vector=(),
        key=_text(values["key"]),
        queue=queue or None,
        at=float(_text(values["at"])),
        stream_id=_text(stream_id),
    )
    return entry, vector.astype(np.float32)


def stream_position(stream_id: str) -> tuple[int, int]:
    """A stream id (`ms-seq`) as numbers, so ids compare in stream order."""
    millis, _, sequence = stream_id.partition("-")
    return int(millis), int(sequence or 0)


def _chunk(model: str, raw: list[tuple[bytes, Mapping[bytes, bytes]]]) -> StreamChunk:
    entries, vectors, malformed = [], [], 0
    for stream_id, fields in raw:
        try:
            entry, vector = decode_entry(model, stream_id, fields)
        except (KeyError, ValueError):  # UnicodeDecodeError is a ValueError
            malformed += 1
            continue
        entries.append(entry)
        vectors.append(vector)
    return StreamChunk(tuple(entries), tuple(vectors), _text(raw[-1][0]), malformed)


def _searchable(vector: np.ndarray) -> bool:
    return vector.size > 0 and bool(np.isfinite(vector).all()) and bool(vector.any())


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
