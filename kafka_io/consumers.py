"""The at-least-once group consumer: batches handed out, offsets committed only once done.

`TrackedConsumer` keeps the offsets; kafka-python's client (`BatchConsumer`, here) or
librdkafka's (`kafka_io.rdkafka_consumer`, `kafka.consumer: librdkafka`) fetches, seeks and
commits underneath.
"""

from __future__ import annotations

import abc
import contextlib
import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from kafka import AsyncConsumerRebalanceListener, KafkaConsumer
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata, TopicPartition

from kafka_io.offsets import OffsetTracker
from kafka_io.settings import KafkaSettings

log = logging.getLogger(__name__)


@dataclass
class Batch:
    """Records handed out together; commit them by leaving `processing()` without an error."""

    records: list[ConsumerRecord]
    consumer: TrackedConsumer

    @contextlib.contextmanager
    def processing(self) -> Iterator[list[ConsumerRecord]]:
        """Yield the records; mark them done and commit on success, rewind them on failure."""
        try:
            yield self.records
        except BaseException:
            self.consumer.rewind(self)
            raise
        self.consumer.complete(self)


def _offsets(positions: dict[TopicPartition, int]) -> dict[TopicPartition, OffsetAndMetadata]:
    """The commit request for positions the tracker says are done."""
    return {tp: OffsetAndMetadata(offset, "", -1) for tp, offset in positions.items()}


class TrackedConsumer(abc.ABC):
    """A group consumer that hands out batches and commits only offsets marked done.

    Offsets are committed once every earlier offset of the partition is done, so batches may
    finish out of order; a consumer that dies re-reads whatever was not done (at-least-once).
    The client underneath (kafka-python's or librdkafka's) only fetches, seeks and commits.
    """

    def __init__(self) -> None:
        self.tracker: OffsetTracker[TopicPartition] = OffsetTracker()

    def poll(self, *, max_records: int = 500, timeout_ms: int = 100) -> Batch | None:
        """The next batch of records across assigned partitions, or None when none arrived."""
        records = self._fetch(max_records, timeout_ms)
        for record in records:
            self.tracker.track(TopicPartition(record.topic, record.partition), record.offset)
        return Batch(records, self) if records else None

    def complete(self, batch: Batch, *, commit: bool = True) -> None:
        """Mark every record of `batch` done, then commit what became committable."""
        for record in batch.records:
            self.tracker.mark_done(TopicPartition(record.topic, record.partition), record.offset)
        if commit:
            self.commit()

    def rewind(self, batch: Batch) -> None:
        """Seek back so the records of a failed batch are handed out again.

        Never forward: when an earlier batch of the partition failed first and its records
        are not handed out again yet, the position is already below this batch, and seeking
        to this batch would skip the earlier one's records for good (and commit past them).
        """
        lowest: dict[TopicPartition, int] = {}
        for record in batch.records:
            tp = TopicPartition(record.topic, record.partition)
            lowest[tp] = min(record.offset, lowest.get(tp, record.offset))
        assigned = self.assignment()
        for tp, offset in lowest.items():
            self.tracker.rewind(tp, offset)
            if tp in assigned and offset < self._position(tp):
                self._seek(tp, offset)

    def commit(self) -> None:
        """Synchronously commit every position that moved."""
        positions = self.tracker.to_commit()
        if positions and self._commit(positions):
            self.tracker.committed(positions)

    @abc.abstractmethod
    def _fetch(self, max_records: int, timeout_ms: int) -> list[ConsumerRecord]:
        """Up to `max_records` records, waiting at most `timeout_ms` for the first."""

    @abc.abstractmethod
    def _position(self, tp: TopicPartition) -> int:
        """The offset the next record of `tp` will have."""

    @abc.abstractmethod
    def _seek(self, tp: TopicPartition, offset: int) -> None:
        """Hand out `tp` from `offset` on."""

    @abc.abstractmethod
    def _commit(self, positions: dict[TopicPartition, int]) -> bool:
        """Commit `positions`; False when the group would not take them (read again later)."""

    @abc.abstractmethod
    def pause(self) -> None:
        """Stop fetching from every assigned partition; keep calling poll to stay in the group."""

    @abc.abstractmethod
    def resume(self) -> None:
        """Fetch again from every paused partition."""

    @abc.abstractmethod
    def assignment(self) -> set[TopicPartition]:
        """Partitions this consumer owns now."""

    @abc.abstractmethod
    def lag(self) -> int:
        """Messages behind the end of the assigned partitions (consumer lag)."""

    @abc.abstractmethod
    def close(self, *, commit: bool = True) -> None:
        """Commit what is done (unless told not to) and leave the group."""


class _CommitOnRevoke(AsyncConsumerRebalanceListener):
    """Commits what is done before partitions go to another member.

    kafka-python 3 calls rebalance listeners on its IO thread, where a blocking commit raises
    (and the rebalance fails with it, out of `poll`): the commit is awaited instead.
    """

    def __init__(self, owner: BatchConsumer) -> None:
        self.owner = owner

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        revoked = list(revoked)
        positions = self.owner.tracker.to_commit()
        if positions:
            try:
                await self.owner._consumer.commit_async(_offsets(positions))
                self.owner.tracker.committed(positions)
            except KafkaError as exc:  # the next owner reads these records again
                log.warning("commit before the rebalance failed (%s); records re-read", exc)
        self.owner.tracker.forget(revoked)
        log.info("partitions revoked: %s", sorted(str(tp) for tp in revoked))

    async def on_partitions_lost(self, lost: Iterable[TopicPartition]) -> None:
        """The group evicted this member (its session expired, or the coordinator no longer
        knows it, as after a broker restart that lost the group): a commit would fail, and
        raising here would end the consume loop. What was not committed is read again by
        whoever owns the partitions next."""
        lost = list(lost)
        self.owner.tracker.forget(lost)
        log.warning("partitions lost, not committed: %s", sorted(str(tp) for tp in lost))

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        log.info("partitions assigned: %s", sorted(str(tp) for tp in assigned))


# What the consume loop waits for: records as soon as there are any (latency matters more than
# fetch size), a member that dies is noticed in seconds, a batch may take minutes.
CONSUMER_DEFAULTS: dict[str, Any] = {
    "enable_auto_commit": False,
    "auto_offset_reset": "earliest",
    "session_timeout_ms": 10_000,
    "heartbeat_interval_ms": 1_000,
    "max_poll_interval_ms": 300_000,
    "fetch_max_wait_ms": 5,
}


class BatchConsumer(TrackedConsumer):
    """`TrackedConsumer` on kafka-python's KafkaConsumer."""

    def __init__(
        self,
        settings: KafkaSettings,
        topics: Sequence[str],
        group_id: str,
        **overrides: Any,
    ) -> None:
        super().__init__()
        config: dict[str, Any] = {"group_id": group_id, **CONSUMER_DEFAULTS, **overrides}
        self._consumer = KafkaConsumer(**settings.client_kwargs(), **config)
        self._consumer.subscribe(list(topics), listener=_CommitOnRevoke(self))

    def _fetch(self, max_records: int, timeout_ms: int) -> list[ConsumerRecord]:
        polled = self._consumer.poll(timeout_ms=timeout_ms, max_records=max_records)
        return [record for batch in polled.values() for record in batch]

    def _position(self, tp: TopicPartition) -> int:
        position: int = self._consumer.position(tp)
        return position

    def _seek(self, tp: TopicPartition, offset: int) -> None:
        self._consumer.seek(tp, offset)

    def _commit(self, positions: dict[TopicPartition, int]) -> bool:
        self._consumer.commit(_offsets(positions))
        return True

    def pause(self) -> None:
        """Stop fetching from every assigned partition; keep calling poll to stay in the group."""
        self._consumer.pause(*self._consumer.assignment())

    def resume(self) -> None:
        """Fetch again from every paused partition."""
        self._consumer.resume(*self._consumer.paused())

    def assignment(self) -> set[TopicPartition]:
        """Partitions this consumer owns now."""
        return set(self._consumer.assignment())

    def lag(self) -> int:
        """Messages behind the end of the assigned partitions (consumer lag)."""
        assigned = list(self._consumer.assignment())
        if not assigned:
            return 0
        ends = self._consumer.end_offsets(assigned)
        return sum(max(0, ends[tp] - self._consumer.position(tp)) for tp in assigned)

    def close(self, *, commit: bool = True) -> None:
        """Commit what is done (unless told not to) and leave the group."""
        if commit:
            self.commit()
        self._consumer.close(autocommit=False)
