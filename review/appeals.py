"""Appeals: an AppealRequest from the appeals topic becomes a task in the appeals queue.

Only a post with a final decision made in this console can be appealed: the task shows that
decision and its reviewer beside the post and verdict, and that reviewer may not judge the appeal.
An appeal that is not an AppealRequest, names no decided key, or names another post is refused
with the reason (the ingester dead-letters it, as it does bad tasks). The task's key is a digest
of the appeal, so the same appeal read twice is queued once.

>>> queue_appeal(store, appeal, "appeals")  # doctest: +SKIP
True
"""

from __future__ import annotations

import hashlib

from pydantic import ValidationError

from contracts.errors import Stage
from contracts.records import describe_validation_error
from contracts.review import AppealRequest, ReviewTask
from review.task_meta import FinalDecision, TaskMeta, TaskStage
from review.tasks import ReviewError, TaskStore

KEY_HEX = 32  # as long as a verdict key


class AppealInvalid(ReviewError):
    """An appeals-topic record that cannot become an appeal task; the reason says why."""

    stage = Stage.VALIDATE


def parse_appeal(raw: bytes | None) -> AppealRequest:
    """The record value as an AppealRequest, or `AppealInvalid` naming what is wrong."""
    if raw is None:
        raise AppealInvalid("the record has no value (a tombstone?)")
    try:
        return AppealRequest.model_validate_json(raw)
    except ValidationError as exc:
        raise AppealInvalid(f"not an AppealRequest: {describe_validation_error(exc)}") from exc


def appeal_key(appeal: AppealRequest) -> str:
    """The appeal task's key: the same appeal always gets the same one."""
    return hashlib.sha256(appeal.model_dump_json().encode()).hexdigest()[:KEY_HEX]


def appeal_task(
    appeal: AppealRequest, final: FinalDecision, original: ReviewTask, queue: str
) -> tuple[ReviewTask, TaskMeta]:
    """The task judging `appeal` in `queue`: the original post and verdict, and what was decided."""
    task = original.model_copy(
        update={"key": appeal_key(appeal), "queue": queue, "enqueued_at": appeal.submitted_at}
    )
    meta = TaskMeta(stage=TaskStage.APPEAL, appeal=appeal, original=final.decision)
    return task, meta


def queue_appeal(store: TaskStore, appeal: AppealRequest, queue: str) -> bool:
    """Queue the appeal's task in `queue`; False when it is there already, or AppealInvalid."""
    final = store.final(appeal.key)
    if final is None:
        raise AppealInvalid(
            f"no final decision on key {appeal.key!r} in this console; only a post a reviewer "
            "decided here can be appealed"
        )
    if final.decision.post_id != appeal.post_id:
        raise AppealInvalid(
            f"the appeal names post {appeal.post_id!r}, but key {appeal.key!r} was decided "
            f"for post {final.decision.post_id!r}"
        )
    original = store.get(final.task)
    if original is None:
        raise AppealInvalid(f"the task {final.task!r} decided on key {appeal.key!r} is gone")
    task, meta = appeal_task(appeal, final, original, queue)
    return store.add(task, meta=meta, exclude=[final.decision.reviewer])
