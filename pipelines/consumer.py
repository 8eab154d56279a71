"""The consume loop: poll, moderate and produce batches in the background, then commit.

One thread owns the Kafka consumer: it polls, hands batches to a small pool of workers, and
commits each batch once its worker is done. A worker moderates its batch and writes the
outcomes through its sink at once, waiting until they are acked, so a verdict leaves as soon as
it is decided, not when the polling thread next comes round. At most `max_in_flight_batches`
are in flight while polls hand out full batches (the consumer is behind); once a poll comes back
short (caught up), at most `in_flight_caught_up` (one): posts arriving meanwhile wait in Kafka
and go on together, which on a shared interpreter is quicker than many small batches at once.
While behind, the actor's garbage collector runs rarely (`pipelines.collector`).
Past the limit the loop pauses its partitions and waits for the first batch to finish, still
polling to stay in the group, so slow GPU work never exceeds `max.poll.interval.ms` and never
triggers a rebalance.

A batch that fails as a whole is read again. Once a record has been in
`retry.max_batch_attempts` failed batches, its batch runs one post at a time: the post that
still fails, or whose outputs cannot be written, is dead-lettered with the reason, so no
message can stall its partition (a poison pill).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from concurrent import futures
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass

from contracts.errors import Stage
from contracts.outcomes import Outcome
from kafka_io.consumers import Batch, TrackedConsumer
from pipelines.collector import CollectorPace
from pipelines.config import PoolSettings, RetrySettings
from pipelines.signal_records import Failure, one_line
from pipelines.steps import Moderator, SourceMessage
from sinks.base import Refusal, Sink, SinkUnavailable
from sinks.kafka_topics import KafkaSink

log = logging.getLogger(__name__)


@dataclass
class LoopStats:
    """What one consumer did so far."""

    consumed: int = 0
    written: int = 0
    batches: int = 0
    failed_batches: int = 0
    paused_polls: int = 0
    isolated_batches: int = 0
    isolated_dead_letters: int = 0
    sink_refusals: int = 0  # records a sink refused one by one, dead-lettered
    partitions: int = 0

    def as_dict(self) -> dict[str, int]:
        """Plain counters, for logs and for Ray callers."""
        return asdict(self)


RecordKey = tuple[str, int, int]  # topic, partition, offset


@dataclass(frozen=True)
class _Written:
    messages: int
    dead_letters: int = 0  # posts of an isolated batch that failed alone


@dataclass
class _InFlight:
    batch: Batch
    written: Future[_Written]
    started: float
    isolated: bool = False


class ModerationLoop:
    """Moderates everything its consumer receives until `stop` is set, then drains and commits."""

    def __init__(
        self,
        consumer: TrackedConsumer,
        sink: KafkaSink,
        moderator: Moderator,
        pool: PoolSettings,
        retry: RetrySettings | None = None,
        sinks: Sequence[Sink] = (),
        collector: CollectorPace | None = None,
    ) -> None:
        self.consumer = consumer
        self.collector = collector
        self.sink = sink
        self.sinks = list(sinks)
        self.moderator = moderator
        self.pool = pool
        self.max_batch_attempts = (retry or RetrySettings()).max_batch_attempts
        self.stats = LoopStats()
        self.stop_event = threading.Event()
        self._workers = ThreadPoolExecutor(pool.max_in_flight_batches, thread_name_prefix="batch")
        self._in_flight: list[_InFlight] = []
        self._full = False  # the last poll handed out a full batch: the consumer is behind
        self._failures: dict[RecordKey, int] = {}
        moderator.telemetry.lag_sources.append(consumer.lag)

    def run(self) -> LoopStats:
        """Poll and moderate until stopped; then finish in-flight batches, commit and close."""
        try:
            while not self.stop_event.is_set():
                self._finish_done()
                self._poll_once()
            self._finish_done(wait=True)
        finally:
            self._workers.shutdown(wait=True, cancel_futures=True)
            self.consumer.close(commit=True)
            for other in self.sinks:
                other.close()
            self.sink.close()
        log.info("consumer stopped: %s", self.stats.as_dict())
        return self.stats

    def stop(self) -> None:
        """Ask `run` to drain and return."""
        self.stop_event.set()

    def _poll_once(self) -> None:
        self.stats.partitions = len(self.consumer.assignment())
        if len(self._in_flight) >= self._limit():
            self.consumer.pause()
            # Wait on the batches, not in poll, so a finished one is committed at once.
            running = [item.written for item in self._in_flight]
            futures.wait(running, timeout=0.02, return_when=futures.FIRST_COMPLETED)
            # Heartbeats and rebalances go on while paused. A partition assigned during this
            # poll starts unpaused and may hand out records: give them back to be read later.
            stray = self.consumer.poll(timeout_ms=0)
            if stray is not None:
                self.consumer.rewind(stray)
            self.stats.paused_polls += 1
            return
        self.consumer.resume()
        batch = self.consumer.poll(max_records=self.pool.max_poll_records, timeout_ms=50)
        if batch is None:
            return
        self._full = len(batch.records) >= self.pool.max_poll_records
        if self.collector is not None:
            self.collector.set_behind(self._full)
        messages = [SourceMessage.from_record(record) for record in batch.records]
        isolated = self._seen_failing(messages)
        work = self._moderate_one_by_one if isolated else self._moderate_together
        future = self._workers.submit(work, messages)
        self._in_flight.append(_InFlight(batch, future, time.monotonic(), isolated))
        self.stats.consumed += len(messages)

    def _limit(self) -> int:
        """Batches in flight at most: `max_in_flight_batches` while polls hand out full
        batches (behind), `in_flight_caught_up` once one comes back short (caught up)."""
        most = self.pool.max_in_flight_batches
        return most if self._full else min(most, self.pool.in_flight_caught_up)

    def _seen_failing(self, messages: list[SourceMessage]) -> bool:
        limit = self.max_batch_attempts
        return any(self._failures.get(_key(m), 0) >= limit for m in messages)

    def _moderate_together(self, messages: list[SourceMessage]) -> _Written:
        """Steps decode to produce for a batch; its outputs are acked when this returns."""
        return _Written(self._send(messages, self.moderator.moderate(messages)))

    def _moderate_one_by_one(self, messages: list[SourceMessage]) -> _Written:
        """Each message alone; one that still raises, or whose outputs the broker refuses,
        becomes a dead letter with the reason."""
        sent = dead_letters = 0
        for message in messages:
            try:
                outcomes = self.moderator.moderate([message])
            except Exception as error:  # the poison pill itself: dead-letter it, go on
                log.error("post at %s failed alone, dead-lettered: %s", _key(message), error)
                outcomes = [self.moderator.fail_message(message, Failure.of(error, Stage.POLICY))]
                dead_letters += 1
            try:
                sent += self._send([message], outcomes)
            except SinkUnavailable:  # an outage, not this post's fault: read the batch again
                raise
            except Exception as error:  # e.g. a verdict over the broker's size limit
                log.error("outputs of %s refused, dead-lettered: %s", _key(message), error)
                outcomes = [self.moderator.fail_message(message, Failure.of(error, Stage.PRODUCE))]
                # Failing here is an outage: the batch is read again.
                sent += self._send([message], outcomes)
                dead_letters += 1
        return _Written(sent, dead_letters)

    def _send(self, messages: Sequence[SourceMessage], outcomes: list[Outcome]) -> int:
        """Every sink, then the topics, with a dead letter for each record a sink refused; a
        sink that raises fails the batch."""
        with self.moderator.telemetry.tracer.start_as_current_span("produce"):
            refused = [refusal for other in self.sinks for refusal in _written(other, outcomes)]
            dead = [self._refused(messages[refusal.index], refusal) for refusal in refused]
            self.stats.sink_refusals += len(refused)
            return self.sink.write([*outcomes, *dead])

    def _refused(self, message: SourceMessage, refusal: Refusal) -> Outcome:
        log.error("sink %s refused the post at %s: %s", refusal.sink, _key(message), refusal.reason)
        failure = Failure(Stage.SINK, "SinkRefused", one_line(f"{refusal.sink}: {refusal.reason}"))
        return self.moderator.fail_message(message, failure)

    def _finish_done(self, *, wait: bool = False) -> None:
        for item in list(self._in_flight):
            if wait or item.written.done():
                self._in_flight.remove(item)
                self._finish(item)

    def _finish(self, item: _InFlight) -> None:
        """Mark a batch whose outputs are acked done and commit; rewind one that failed."""
        try:
            with item.batch.processing():
                written = item.written.result()
        except Exception as error:  # any failure: nothing is committed, so nothing is lost
            # The batch is read again, here or by the partition's next owner.
            self.stats.failed_batches += 1
            for record in item.batch.records:
                key = (record.topic, record.partition, record.offset)
                self._failures[key] = self._failures.get(key, 0) + 1
            log.error(
                "batch of %d not done, it will be read again: %s", len(item.batch.records), error
            )
            return
        for record in item.batch.records:
            self._failures.pop((record.topic, record.partition, record.offset), None)
        self.stats.batches += 1
        self.stats.isolated_batches += item.isolated
        self.stats.isolated_dead_letters += written.dead_letters
        self.stats.written += written.messages
        elapsed_ms = (time.monotonic() - item.started) * 1000
        for _ in item.batch.records:
            self.moderator.telemetry.latency.record(elapsed_ms)


def _written(sink: Sink, outcomes: list[Outcome]) -> Sequence[Refusal]:
    """What `sink` refused of `outcomes`; any failure of the sink is `SinkUnavailable`."""
    try:
        return sink.write(outcomes)
    except SinkUnavailable:
        raise
    except Exception as error:
        raise SinkUnavailable(f"sink {sink.name}: {error}") from error


def _key(message: SourceMessage) -> RecordKey:
    return (message.topic, message.partition, message.offset)
