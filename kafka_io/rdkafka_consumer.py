"""`TrackedConsumer` on librdkafka (confluent-kafka), for `kafka.consumer: librdkafka`.

Reading a record costs about a tenth of kafka-python's CPU (docs/benchmarks.md): librdkafka
fetches, decompresses and keeps the group's heartbeats on its own threads, in C. The offsets
stay `TrackedConsumer`'s: nothing is committed automatically, and before partitions go to
another member what is done is committed (librdkafka calls the rebalance callbacks inside
`poll`, on the consume loop's thread, where a blocking commit is fine).

Consumer overrides keep kafka-python's names (`consumer_overrides:` reads the same whichever
client runs); a name librdkafka has no counterpart for is refused, naming it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from kafka.consumer.fetcher import ConsumerRecord
from kafka.structs import TopicPartition

from kafka_io.consumers import CONSUMER_DEFAULTS, TrackedConsumer
from kafka_io.rdkafka import consumer_config, needs_confluent_kafka, rdkafka_config
from kafka_io.settings import KafkaSettings

log = logging.getLogger(__name__)

# librdkafka's pause drops what it fetched ahead, and its resume fetches again (10-200 ms here):
# the consume loop pauses whenever its batches are all in flight, often for a few milliseconds.
# A pause shorter than this only holds the records back; past it, the partitions are paused.
HOLD_S = 1.0


class RdKafkaBatchConsumer(TrackedConsumer):
    """`TrackedConsumer` on librdkafka's Consumer; see the module's docstring."""

    def __init__(
        self, settings: KafkaSettings, topics: Sequence[str], group_id: str, **overrides: Any
    ) -> None:
        try:
            from confluent_kafka import Consumer
        except ImportError as exc:
            raise ImportError(needs_confluent_kafka("consumer")) from exc
        super().__init__()
        self._held_since: float | None = None  # paused, records held back since
        self._paused = False  # paused in librdkafka too
        self._commit_when_revoked = True  # `close(commit=False)` leaves without committing
        connection = rdkafka_config(settings)
        # request.timeout.ms is a producer's; a consumer's requests wait socket.timeout.ms.
        if "request.timeout.ms" in connection:
            connection.setdefault("socket.timeout.ms", connection.pop("request.timeout.ms"))
        # Settings by librdkafka's own names (`kafka.librdkafka`) win over translated ones.
        config = {
            "group.id": group_id,
            "logger": log,
            **consumer_config({**CONSUMER_DEFAULTS, **overrides}),
            **connection,
        }
        self._consumer = Consumer(config)
        self._consumer.subscribe(
            list(topics),
            on_assign=self._assigned,
            on_revoke=self._revoked,
            on_lost=self._lost,
        )

    def _fetch(self, max_records: int, timeout_ms: int) -> list[ConsumerRecord]:
        from confluent_kafka import KafkaException

        if self._held_since is not None and not self._paused:
            return []  # rebalance callbacks wait for the next poll, at most HOLD_S
        # librdkafka's consume waits for all `num_messages` or the timeout: wait for the first
        # record only, then take what is already fetched (a low rate would wait every poll).
        messages = self._consumer.consume(num_messages=1, timeout=timeout_ms / 1000)
        if messages and max_records > 1:
            messages += self._consumer.consume(num_messages=max_records - 1, timeout=0)
        records = []
        for message in messages:
            error = message.error()
            if error is not None:  # librdkafka retries what it can; what it cannot ends here
                if error.fatal():
                    raise KafkaException(error)
                log.warning("fetch: %s", error.str())
                continue
            records.append(_record(message))
        return records

    def _position(self, tp: TopicPartition) -> int:
        from confluent_kafka import TopicPartition as RdPartition

        (position,) = self._consumer.position([RdPartition(tp.topic, tp.partition)])
        # Nothing handed out from tp since it was assigned: its fetch starts at the committed
        # offset, below every record not done, so nothing needs seeking back.
        return int(position.offset) if position.offset >= 0 else -1

    def _seek(self, tp: TopicPartition, offset: int) -> None:
        from confluent_kafka import TopicPartition as RdPartition

        self._consumer.seek(RdPartition(tp.topic, tp.partition, offset))

    def _commit(self, positions: dict[TopicPartition, int]) -> bool:
        from confluent_kafka import KafkaException
        from confluent_kafka import TopicPartition as RdPartition

        offsets = [RdPartition(tp.topic, tp.partition, offset) for tp, offset in positions.items()]
        try:
            self._consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:  # a rebalance under way, the coordinator away: next time
            log.warning("commit failed (%s); it is tried again with the next batch", exc)
            return False
        return True

    def _assigned(self, _consumer: Any, partitions: list[Any]) -> None:
        log.info("partitions assigned: %s", sorted(_names(partitions)))

    def _revoked(self, _consumer: Any, partitions: list[Any]) -> None:
        """Commit what is done before the partitions go; the next owner reads the rest."""
        if self._commit_when_revoked:
            self.commit()
        self.tracker.forget(_partitions(partitions))
        log.info("partitions revoked: %s", sorted(_names(partitions)))

    def _lost(self, _consumer: Any, partitions: list[Any]) -> None:
        """The group evicted this member: a commit would fail; the next owner re-reads."""
        self.tracker.forget(_partitions(partitions))
        log.warning("partitions lost, not committed: %s", sorted(_names(partitions)))

    def pause(self) -> None:
        """Hand out nothing until `resume`; keep calling poll to stay in the group.

        The first `HOLD_S` only hold records back; a pause still on after that (called again)
        pauses the partitions in librdkafka, which drops what it fetched ahead and reads on
        from the last record handed out."""
        now = time.monotonic()
        if self._held_since is None:
            self._held_since = now
        elif now - self._held_since >= HOLD_S:
            assigned = self._consumer.assignment()  # partitions assigned since included
            if assigned:
                self._consumer.pause(assigned)
                self._paused = True

    def resume(self) -> None:
        """Hand out records again (the loop calls this before every poll)."""
        self._held_since = None
        if self._paused:
            self._paused = False
            self._consumer.resume(self._consumer.assignment())

    def assignment(self) -> set[TopicPartition]:
        """Partitions this consumer owns now."""
        return set(_partitions(self._consumer.assignment()))

    def lag(self) -> int:
        """Messages behind the end of the assigned partitions (consumer lag)."""
        positions = self._consumer.position(self._consumer.assignment())
        unread = [p for p in positions if p.offset < 0]  # nothing handed out yet: committed
        if unread:
            committed = {(p.topic, p.partition): p.offset for p in self._consumer.committed(unread)}
            for p in unread:
                p.offset = committed.get((p.topic, p.partition), -1)
        behind = 0
        for position in positions:
            low, end = self._consumer.get_watermark_offsets(position, timeout=5.0, cached=False)
            behind += max(0, end - (position.offset if position.offset >= 0 else low))
        return behind

    def close(self, *, commit: bool = True) -> None:
        """Commit what is done (unless told not to) and leave the group."""
        if commit:
            self.commit()
        self._commit_when_revoked = commit  # leaving the group revokes every partition
        self._consumer.close()


def _record(message: Any) -> ConsumerRecord:
    """kafka-python's record for a librdkafka message, so every reader sees one type."""
    timestamp_type, timestamp = message.timestamp()
    value, key = message.value(), message.key()
    headers = message.headers() or []
    return ConsumerRecord(
        message.topic(),
        message.partition(),
        None,
        message.offset(),
        timestamp,
        timestamp_type,
        key,
        value,
        headers,
        None,
        len(key) if key is not None else -1,
        len(value) if value is not None else -1,
        -1,
    )


def _partitions(partitions: list[Any]) -> list[TopicPartition]:
    return [TopicPartition(p.topic, p.partition) for p in partitions]


def _names(partitions: list[Any]) -> list[str]:
    return [str(tp) for tp in _partitions(partitions)]
