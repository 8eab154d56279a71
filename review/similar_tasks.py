"""Similar posts on the task page: the tasks whose post embeddings lie nearest the task's.

A task carries its post's embedding when the pipeline asks for it (`review_embeddings: true`).
The ingester adds each such task to the shared index (`similar`: vectors kept in Redis, one
stream per model, read by every console process into a faiss index of its own). The task page
lists the nearest tasks of the same model with their distance, state, verdict and first image
(blurred like the task's own). The waiting ones in queues the reviewer works are selectable:
one decision applies to all of them (`review.clusters`).

The panel is an aid: with the index's Redis down it says so, and the task is decided as ever.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from contracts.records import Action
from contracts.review import ReviewTask
from review.queue_settings import SimilarSettings
from review.task_images import ImageView, image_view
from review.tasks import TaskStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SimilarTask:
    """One row of the panel: a task near the one shown."""

    key: str
    post_id: str
    queue: str
    distance: float
    state: str  # open | claimed | decided | unknown
    action: Action
    image: ImageView | None
    selectable: bool


@dataclass(frozen=True)
class SimilarPanel:
    """The rows, or why there are none."""

    rows: tuple[SimilarTask, ...] = ()
    note: str | None = None


class SimilarTasks:
    """Adds tasks' embeddings to the shared index; lists a task's nearest tasks."""

    def __init__(
        self, redis_url: str, namespace: str, settings: SimilarSettings, store: TaskStore
    ) -> None:
        from similar.store import SimilarStore

        self.settings, self.tasks = settings, store
        self.index_store = SimilarStore(redis_url, namespace=namespace, window=settings.window)
        self._indexes: dict[str, Any] = {}

    def record(self, tasks: Sequence[ReviewTask]) -> None:
        """Add the embeddings of `tasks` that carry one; a failure is logged, never raised."""
        from similar.store import SimilarEntry

        entries = [
            SimilarEntry(
                post_id=task.post.id,
                model=task.embedding.model,
                vector=tuple(task.embedding.vector),
                key=task.key,
                queue=task.queue,
                at=task.enqueued_at.timestamp(),
            )
            for task in tasks
            if task.embedding is not None and searchable(task.embedding.vector)
        ]
        if not entries:
            return
        try:
            self.index_store.add(entries)
        except Exception as error:  # the panel misses them; the tasks are queued as ever
            log.warning("similar posts: %d task embedding(s) not kept: %s", len(entries), error)

    def panel(self, task: ReviewTask, may_work: Callable[[str], bool]) -> SimilarPanel:
        """The tasks nearest `task`; `may_work(queue)` says which queues the reviewer works."""
        from similar.exceptions import SimilarError

        if task.embedding is None:
            return SimilarPanel(note="this task carries no post embedding")
        if not searchable(task.embedding.vector):
            return SimilarPanel(note="this task's post embedding is zero or not finite")
        try:
            found = self._index(task.embedding.model).nearest(
                task.embedding.vector, self.settings.shown, exclude={task.post.id}
            )
        except SimilarError as error:
            return SimilarPanel(note=f"similar posts unavailable: {error}")
        limit = self.settings.max_distance
        near = [
            (n, e) for n, e in found if e.key != task.key and (limit is None or n.distance <= limit)
        ]
        states = self.tasks.states([entry.key for _, entry in near])
        rows = [
            row
            for neighbour, entry in near
            if (row := self._row(entry.key, neighbour.distance, states[entry.key], may_work))
        ]
        return SimilarPanel(tuple(rows), None if rows else "no similar task yet")

    def _row(
        self, key: str, distance: float, state: str, may_work: Callable[[str], bool]
    ) -> SimilarTask | None:
        other = self.tasks.get(key)
        if other is None:
            return None
        images = other.post.images
        image = image_view(images[0], key, 0) if images else None
        selectable = state == "open" and may_work(other.queue)
        return SimilarTask(
            key,
            other.post.id,
            other.queue,
            distance,
            state,
            other.verdict.action,
            image,
            selectable,
        )

    def _index(self, model: str) -> Any:
        from similar.shared import SharedIndex

        if model not in self._indexes:
            refresh = self.settings.refresh_s
            self._indexes[model] = SharedIndex(self.index_store, model, refresh_s=refresh)
        return self._indexes[model]


def searchable(vector: Sequence[float]) -> bool:
    """Whether a vector has a direction: finite, not all zero (the index refuses the rest)."""
    return all(math.isfinite(x) for x in vector) and any(vector)
