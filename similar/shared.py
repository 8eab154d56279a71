"""`SharedIndex`: one process's `VectorIndex` of a model's window, kept up with Redis.

Every review-console process holds one per model. Before it answers, at most every `refresh_s`,
it reads the stream entries past the last id it holds (only those), then forgets the posts whose
latest entry the window has trimmed since, so it answers from the window and its memory stays
bounded by it. It starts again from the whole stream when the stream's first id has moved past
its last id (it fell behind: nothing it holds is still in the window) or when the window's
oldest entry has other dims than its index (the model changed under its name and the old
vectors have all gone).

The dims are those of the first entry read; entries of other dims are skipped and counted in
`other_dims`, malformed ones in the store's `malformed`. One lock covers the refresh and the
search alike: faiss must not search an index an add is moving. Redis failing raises
`SimilarUnavailable` from whichever call refreshed; the next call tries again.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Collection, Sequence

import numpy as np

from similar.exceptions import DimsMismatch
from similar.index import Neighbour, VectorIndex
from similar.store import (
    SimilarEntry,
    SimilarStore,
    StreamChunk,
    WindowStart,
    stream_position,
)


class SharedIndex:
    """The nearest posts of one model's window, from any process, refreshed incrementally."""

    def __init__(
        self,
        store: SimilarStore,
        model: str,
        *,
        refresh_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.model = model
        self.refresh_s = refresh_s
        self.other_dims = 0  # entries skipped because their dims differ from the index's
        self._clock = clock
        self._lock = threading.Lock()
        self._checked_at: float | None = None
        self._start_over()

    def nearest(
        self, vector: np.ndarray | Sequence[float], k: int, *, exclude: Collection[str] = ()
    ) -> list[tuple[Neighbour, SimilarEntry]]:
        """The `k` posts nearest `vector`, with their entries; SimilarUnavailable: Redis failed."""
        with self._lock:
            self._refresh_if_due()
            if self._index is None:
                return []
            if np.shape(vector) != (self._index.dims,):
                raise DimsMismatch(
                    f"similar posts of {self.model} hold {self._index.dims}-dim vectors, "
                    f"not {np.shape(vector)} (the model changed? the window turns over)"
                )
            found = self._index.nearest(vector, k, exclude=exclude)
            return [(neighbour, self._entries[neighbour.post_id]) for neighbour in found]

    def entry(self, post_id: str) -> SimilarEntry | None:
        """The post's latest entry in the window (its vector left out), or None."""
        with self._lock:
            self._refresh_if_due()
            return self._entries.get(post_id)

    def vector(self, post_id: str) -> np.ndarray | None:
        """The post's vector as indexed (unit length, float32), or None if not in the window."""
        with self._lock:
            self._refresh_if_due()
            return None if self._index is None else self._index.vector(post_id)

    def refresh(self) -> None:
        """Read the stream now, not up to `refresh_s` later."""
        with self._lock:
            self._refresh()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def _start_over(self) -> None:
        self._index: VectorIndex | None = None  # made by the first entry, which sets the dims
        self._entries: dict[str, SimilarEntry] = {}
        self._order: deque[SimilarEntry] = deque()  # stream order, to forget the trimmed
        self._last_id = "0"

    def _refresh_if_due(self) -> None:
        due = self._checked_at is None or self._clock() - self._checked_at >= self.refresh_s
        if due:
            self._refresh()

    def _refresh(self) -> None:
        now = self._clock()
        start = self.store.window_start(self.model)
        if start is None or self._stale(start):
            self._start_over()
        for chunk in self.store.chunks(self.model, self._last_id):
            self._apply(chunk)
        if start is not None:
            self._forget_before(start.first_id)
        # Only after a successful read: while Redis is down every call tries again.
        self._checked_at = now

    def _stale(self, start: WindowStart) -> bool:
        """Whether nothing held can be kept: the window moved past it, or the dims changed."""
        held = self._last_id != "0"
        fell_behind = held and stream_position(start.first_id) > stream_position(self._last_id)
        dims = self._index.dims if self._index is not None else None
        return fell_behind or (None not in (dims, start.dims) and dims != start.dims)

    def _apply(self, chunk: StreamChunk) -> None:
        kept = [
            (entry, vector)
            for entry, vector in zip(chunk.entries, chunk.vectors, strict=True)
            if self._fits(vector)
        ]
        if kept and self._index is not None:
            self._index.add([entry.post_id for entry, _ in kept], np.stack([v for _, v in kept]))
        for entry, _ in kept:
            self._entries[entry.post_id] = entry
            self._order.append(entry)
        self._last_id = chunk.last_id

    def _fits(self, vector: np.ndarray) -> bool:
        """Whether the vector has the index's dims (the first vector makes the index)."""
        if self._index is None:
            self._index = VectorIndex(len(vector))
        if len(vector) == self._index.dims:
            return True
        self.other_dims += 1
        return False

    def _forget_before(self, first_id: str) -> None:
        """Drop the posts whose latest entry is older than the window's first."""
        first = stream_position(first_id)
        gone = []
        while self._order and stream_position(self._order[0].stream_id) < first:
            entry = self._order.popleft()
            if self._entries.get(entry.post_id) is entry:  # not superseded by a later entry
                del self._entries[entry.post_id]
                gone.append(entry.post_id)
        if gone and self._index is not None:
            self._index.remove(gone)
