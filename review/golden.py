"""Golden tasks: tasks with a known answer, served among real ones and scored, never decisions.

`vlmod review golden add QUEUE --from FILE` stores `GoldenTask` records (JSONL) in the console's
Redis, each under its task's key. A claim in a queue with a `golden` rate serves, with that
chance, a golden task the reviewer has not had yet, while real tasks wait in the queue. It is a
copy under a fresh random key (verdict keys are 32 hex digits too), queued when the queue's
oldest waiting task was, and leased like any claim: its page is a task page like any other.
Its decision is scored against the answer (a `GoldenResult` to the golden topic, and the
dashboard's accuracy per reviewer) and is never published as a decision.

Keys, beside the task store's under the same hash tag:

    golden:<queue>                    HASH  golden id -> GoldenTask JSON
    golden-seen:<queue>:<reviewer>    SET   golden ids served to the reviewer (TaskStore)
"""

from __future__ import annotations

import contextlib
import random
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

from pydantic import ValidationError

from contracts.errors import Stage
from contracts.records import describe_validation_error
from contracts.review import DecisionKind, GoldenResult, GoldenTask, ReviewDecision, ReviewTask
from review.task_meta import TaskMeta, TaskStage
from review.tasks import Claim, ReviewError, TaskStore, reaching_redis, redis_client


class GoldenInvalid(ReviewError):
    """A golden-task file that cannot be stored; the reason names each bad line."""

    stage = Stage.VALIDATE


def read_golden_file(path: Path) -> list[GoldenTask]:
    """Every GoldenTask in a JSONL file, or GoldenInvalid naming each bad line as FILE:LINE."""
    try:
        lines = path.read_bytes().splitlines()
    except OSError as error:
        raise GoldenInvalid(f"cannot read {path}: {error.strerror or error}") from None
    items: dict[str, tuple[int, GoldenTask]] = {}
    problems: list[str] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            item = GoldenTask.model_validate_json(line)
        except ValidationError as error:
            reason = describe_validation_error(error)
            problems.append(f"{path}:{number}: not a GoldenTask: {reason}")
            continue
        if item.task.key in items:
            first = items[item.task.key][0]
            problems.append(f"{path}:{number}: key {item.task.key!r} is on line {first} already")
        items.setdefault(item.task.key, (number, item))
    if problems:
        raise GoldenInvalid("\n".join(problems))
    if not items:
        raise GoldenInvalid(f"{path}: no golden tasks in it")
    return [item for _, item in items.values()]


def golden_copy(item: GoldenTask, queue: str, key: str, enqueued_at: datetime) -> ReviewTask:
    """The task a reviewer is served for `item`: its post and verdict under `key`, in `queue`."""
    verdict = item.task.verdict.model_copy(update={"key": key})
    return item.task.model_copy(
        update={"key": key, "queue": queue, "enqueued_at": enqueued_at, "verdict": verdict}
    )


def score(decision: ReviewDecision, meta: TaskMeta) -> GoldenResult:
    """The GoldenResult of `decision` on a golden task: right when its action is the answer (an
    escalation gives no action, so it is never right)."""
    assert meta.golden_id is not None and meta.answer is not None
    given = None if decision.decision is DecisionKind.ESCALATE else decision.action
    return GoldenResult(
        golden_id=meta.golden_id,
        queue=decision.queue,
        reviewer=decision.reviewer,
        expected=meta.answer,
        decision=decision.decision,
        given=given,
        correct=given == meta.answer,
        decided_at=decision.decided_at,
        decision_id=decision.decision_id,
    )


class GoldenSet:
    """The golden tasks of each queue in Redis, and claims that serve them at each queue's rate."""

    def __init__(
        self,
        store: TaskStore,
        *,
        rates: Mapping[str, float] | None = None,
        draw: Callable[[], float] = random.random,
    ) -> None:
        self.store, self.rates, self._draw = store, dict(rates or {}), draw
        self._client = redis_client(store.url)

    def add(self, queue: str, items: Sequence[GoldenTask]) -> int:
        """Store golden tasks for `queue`; how many were new (a known key keeps its task)."""
        key = self._key(queue)
        with self._reaching():
            pipe = self._client.pipeline(transaction=True)
            for item in items:
                pipe.hsetnx(key, item.task.key, item.model_dump_json())
            return sum(bool(added) for added in pipe.execute())

    def ids(self, queue: str) -> list[str]:
        """The golden task ids of `queue`, sorted."""
        with self._reaching():
            return sorted(self._client.hkeys(self._key(queue)))

    def claim(self, queue: str, reviewer: str) -> Claim | None:
        """The reviewer's claim in `queue`: at the queue's rate a golden task, else the next."""
        rate = self.rates.get(queue, 0.0)
        if rate > 0 and self._draw() < rate:
            served = self._serve(queue, reviewer)
            if served is not None:
                return served
        return self.store.claim(queue, reviewer)

    def _serve(self, queue: str, reviewer: str) -> Claim | None:
        fresh = sorted(set(self.ids(queue)) - self.store.golden_seen(queue, reviewer))
        if not fresh:
            return None
        golden_id = fresh[min(int(self._draw() * len(fresh)), len(fresh) - 1)]
        with self._reaching():
            raw = self._client.hget(self._key(queue), golden_id)
        if raw is None:
            return None
        item = GoldenTask.model_validate_json(raw)
        head_ms = self.store.head_enqueued_ms(queue)
        at = head_ms / 1000 if head_ms is not None else self.store.now()
        copy = golden_copy(item, queue, uuid.uuid4().hex, datetime.fromtimestamp(at, UTC))
        meta = TaskMeta(stage=TaskStage.GOLDEN, golden_id=golden_id, answer=item.answer)
        return self.store.serve_golden(reviewer, copy, meta, golden_id)

    def _key(self, queue: str) -> str:
        return f"{{{self.store.namespace}}}:golden:{queue}"

    def _reaching(self) -> contextlib.AbstractContextManager[None]:
        return reaching_redis("golden tasks", self.store.url)
