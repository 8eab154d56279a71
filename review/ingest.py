"""Review-queue topics into the task store: each ReviewTask is added, then its offset committed.

A topic belongs to one queue: a task is stored in the queue of the topic it came on, and a task
naming another queue is refused, so writing to one queue's topic never fills another queue.
A record that is not a ReviewTask of its topic's queue is logged with its topic, partition and
offset, counted in `malformed`, and sent to the dead-letter topic when one is given, with the
reason; it never stops the ingester.
Offsets are committed only after the store write (and the dead letters' acks), so a crash or a
Redis outage re-reads the batch; `TaskStore.add` is idempotent by key, so nothing is queued twice.
A task that carries its post's embedding is added to the similar-posts index too
(`review.similar_tasks`; a failure there is logged, the task is queued as ever).
Records on the appeals topic, when one is given, are AppealRequests: each becomes a task in the
appeals queue (`review.appeals`), or is refused and dead-lettered with its reason like a bad task.

>>> ingest = ReviewIngest(settings, ["review.scam"], "review-ingest", store)  # doctest: +SKIP
>>> ingest.run(stop_event)  # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kafka import KafkaAdminClient
from kafka.consumer.fetcher import ConsumerRecord
from pydantic import ValidationError

from contracts.errors import Stage
from contracts.records import DeadLetter, describe_validation_error
from contracts.review import ReviewTask
from kafka_io.clients import (
    BOOTSTRAP_TIMEOUT_MS,
    OutMessage,
    batch_consumer,
    kafka_writer,
    reaching_kafka,
)
from kafka_io.settings import KafkaSettings
from review.appeals import AppealInvalid, parse_appeal, queue_appeal
from review.similar_tasks import SimilarTasks
from review.tasks import ReviewError, ReviewStoreUnavailable, TaskStore

log = logging.getLogger(__name__)

STORE_RETRY_S = 1.0


class UnknownReviewTopic(ReviewError):
    """A topic the ingester was told to read (or dead-letter to) does not exist."""

    stage = Stage.ROUTE


class ReviewTaskInvalid(ReviewError):
    """A review-topic record is not a ReviewTask; the reason names each bad field."""

    stage = Stage.VALIDATE


@dataclass(frozen=True)
class AppealsTopic:
    """The topic appeals come on, and the queue their tasks go to."""

    topic: str
    queue: str


@dataclass(frozen=True)
class TopicQueue:
    """The queue a review topic feeds, and the queue name the tasks on it must carry."""

    queue: str
    task_queue: str


class ReviewIngest:
    """Reads review-queue topics in a consumer group and adds every ReviewTask to a TaskStore.

    `topics` maps each topic to its queue; a plain list means each task's own queue is believed.
    """

    def __init__(
        self,
        kafka: KafkaSettings,
        topics: list[str] | Mapping[str, TopicQueue],
        group: str,
        store: TaskStore,
        *,
        dead_letter_topic: str | None = None,
        appeals: AppealsTopic | None = None,
        similar: SimilarTasks | None = None,
        **consumer_overrides: Any,
    ) -> None:
        read = [*topics, *([appeals.topic] if appeals else [])]
        dead = [dead_letter_topic] if dead_letter_topic else []
        check_topics_exist(kafka, [*read, *dead], dead_letter_topic)
        self.queues = dict(topics) if isinstance(topics, Mapping) else {}
        self.store, self.dead_letter_topic, self.appeals = store, dead_letter_topic, appeals
        self.similar = similar  # where tasks' post embeddings go, for the similar-posts panel
        self._writer = kafka_writer(kafka) if dead_letter_topic else None
        self._consumer = batch_consumer(kafka, read, group, **consumer_overrides)

    def run_once(self, timeout_ms: int = 1000) -> int:
        """Poll once, store every task, commit after the store write; how many tasks were new."""
        batch = self._consumer.poll(timeout_ms=timeout_ms)
        if batch is None:
            return 0
        with batch.processing() as records:
            appeals = self.appeals.topic if self.appeals else None
            tasks, bad = split_records([r for r in records if r.topic != appeals], self.queues)
            if self.similar is not None:  # first: a task a page shows has its embedding kept
                self.similar.record(tasks)
            added = sum(self.store.add(task) for task in tasks)
            appealed, refused = self._queue_appeals([r for r in records if r.topic == appeals])
            self._report_malformed([*bad, *refused])
        return added + appealed

    def _queue_appeals(
        self, records: list[ConsumerRecord]
    ) -> tuple[int, list[tuple[ConsumerRecord, ReviewError]]]:
        """Queue each appeal; how many were new, and the refused ones with why."""
        added, refused = 0, list[tuple[ConsumerRecord, ReviewError]]()
        for record in records:
            assert self.appeals is not None
            try:
                added += queue_appeal(self.store, parse_appeal(record.value), self.appeals.queue)
            except AppealInvalid as exc:
                refused.append((record, exc))
        return added, refused

    def run(self, stop: threading.Event) -> None:
        """Ingest until `stop` is set; a Redis outage is logged and the batch read again later."""
        while not stop.is_set():
            try:
                self.run_once()
            except ReviewStoreUnavailable as exc:
                log.warning("review ingest paused: %s; retrying in %.0f s", exc, STORE_RETRY_S)
                stop.wait(STORE_RETRY_S)

    def close(self) -> None:
        """Commit what is done, leave the group and close the dead-letter writer."""
        self._consumer.close()
        if self._writer:
            self._writer.close()

    def _report_malformed(self, bad: Sequence[tuple[ConsumerRecord, ReviewError]]) -> None:
        for record, error in bad:
            where = f"{record.topic}[{record.partition}]@{record.offset}"
            log.warning("refused review record at %s: %s", where, error.reason)
        if bad and self._writer and self.dead_letter_topic:
            self._writer.send_all(
                [dead_letter_message(r, e, self.dead_letter_topic) for r, e in bad]
            )


def split_records(
    records: Sequence[ConsumerRecord], queues: Mapping[str, TopicQueue] | None = None
) -> tuple[list[ReviewTask], list[tuple[ConsumerRecord, ReviewTaskInvalid]]]:
    """The records that are tasks of their topic's queue, and the others with what is wrong."""
    tasks: list[ReviewTask] = []
    bad: list[tuple[ConsumerRecord, ReviewTaskInvalid]] = []
    for record in records:
        try:
            task = parse_review_task(record.value)
            tasks.append(in_topic_queue(task, record.topic, queues or {}))
        except ReviewTaskInvalid as exc:
            bad.append((record, exc))
    return tasks, bad


def in_topic_queue(task: ReviewTask, topic: str, queues: Mapping[str, TopicQueue]) -> ReviewTask:
    """The task in its topic's queue, or `ReviewTaskInvalid` when it names another queue."""
    owner = queues.get(topic)
    if owner is None:
        return task
    if task.queue != owner.task_queue:
        raise ReviewTaskInvalid(
            f"the task names queue {task.queue!r}, but topic {topic!r} carries queue "
            f"{owner.task_queue!r}; a task is worked only in its topic's queue"
        )
    return task if owner.queue == task.queue else task.model_copy(update={"queue": owner.queue})


def parse_review_task(raw: bytes | None) -> ReviewTask:
    """The record value as a ReviewTask, or `ReviewTaskInvalid` naming what is wrong."""
    if raw is None:
        raise ReviewTaskInvalid("the record has no value (a tombstone?)")
    try:
        return ReviewTask.model_validate_json(raw)
    except ValidationError as exc:
        raise ReviewTaskInvalid(f"not a ReviewTask: {describe_validation_error(exc)}") from exc


def dead_letter_for(record: ConsumerRecord, error: ReviewError) -> DeadLetter:
    """The dead letter for a record that could not be queued for review."""
    return DeadLetter(
        original=DeadLetter.encode_bytes(record.value) or "",
        original_key=DeadLetter.encode_bytes(record.key),
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        post_id=_post_id_of(record.value),
        stage=error.stage,
        error_type=error.error_type,
        error=error.reason,
    )


def dead_letter_message(record: ConsumerRecord, error: ReviewError, topic: str) -> OutMessage:
    """The dead letter to produce, under the original key as the pipeline's own dead letters."""
    return OutMessage(topic, dead_letter_for(record, error).model_dump_json().encode(), record.key)


def check_topics_exist(
    kafka: KafkaSettings, topics: Sequence[str], dead_letter_topic: str | None = None
) -> None:
    """Raise `UnknownReviewTopic` naming every topic in `topics` that the brokers lack."""
    with reaching_kafka(kafka):
        admin = KafkaAdminClient(
            **{"bootstrap_timeout_ms": BOOTSTRAP_TIMEOUT_MS, **kafka.client_kwargs()}
        )
        try:
            existing = set(admin.list_topics())
        finally:
            admin.close()
    missing = [topic for topic in dict.fromkeys(topics) if topic not in existing]
    if missing:
        named = ", ".join(
            f"{t!r}{' (dead-letter)' if t == dead_letter_topic else ''}" for t in missing
        )
        raise UnknownReviewTopic(
            f"no such topic at {kafka.bootstrap_servers}: {named}; create it or fix the name"
        )


def _post_id_of(raw: bytes | None) -> str | None:
    # Best effort: a task or appeal broken elsewhere may still name its post, which helps
    # whoever replays.
    try:
        body = json.loads(raw or b"")
        post = body.get("post")
        if isinstance(post, dict) and "id" in post:
            return str(post["id"])
        return str(body["post_id"]) if "post_id" in body else None
    except (ValueError, AttributeError):
        return None
