"""The consume loop: poll, moderate batches in the background, produce, then commit.

One thread owns the Kafka consumer: it polls, hands batches to a small pool of workers, and
produces and commits each batch once its worker is done. At most `max_in_flight_batches` are in
flight; past that the loop pauses its partitions but keeps polling, so slow GPU work never
exceeds `max.poll.interval.ms` and never triggers a rebalance.

A batch that fails as a whole is read again. Once a record has been in
`retry.max_batch_attempts` failed batches, its batch runs one post at a time: the post that
still fails, or whose outputs cannot be produced, is dead-lettered with the reason, so no
message can stall its partition (a poison pill).
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass

from contracts.errors import Stage
from pipelines.config import PoolSettings, RetrySettings
from pipelines.kafka_io import Batch, BatchConsumer, OutMessage, Producer
from pipelines.signal_records import Failure
from pipelines.steps import Moderator, SourceMessage

log = logging.getLogger(__name__)


@dataclass
class LoopStats:
    """What one consumer did so far."""

    consumed: int = 0
    produced: int = 0
    batches: int = 0
    failed_batches: int = 0
    paused_polls: int = 0
    isolated_batches: int = 0
    isolated_dead_letters: int = 0
    partitions: int = 0

    def as_dict(self) -> dict[str, int]:
        """Plain counters, for logs and for Ray callers."""
        return asdict(self)


RecordKey = tuple[str, int, int]  # topic, partition, offset


@dataclass
class _InFlight:
    batch: Batch
    outputs: Future[list[list[OutMessage]]]  # one list per message when isolated, else one
    started: float
    isolated: bool = False


class ModerationLoop:
    """Moderates everything its consumer receives until `stop` is set, then drains and commits."""

    def __init__(
        self,
        consumer: BatchConsumer,
        producer: Producer,
        moderator: Moderator,
        pool: PoolSettings,
        retry: RetrySettings | None = None,
    ) -> None:
        self.consumer = consumer
        self.producer = producer
        self.moderator = moderator
        self.pool = pool
        self.max_batch_attempts = (retry or RetrySettings()).max_batch_attempts
        self.stats = LoopStats()
        self.stop_event = threading.Event()
        self._workers = ThreadPoolExecutor(pool.max_in_flight_batches, thread_name_prefix="batch")
        self._in_flight: list[_InFlight] = []
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
            self.producer.close()
        log.info("consumer stopped: %s", self.stats.as_dict())
        return self.stats

    def stop(self) -> None:
        """Ask `run` to drain and return."""
        self.stop_event.set()

    def _poll_once(self) -> None:
        self.stats.partitions = len(self.consumer.assignment())
        if len(self._in_flight) >= self.pool.max_in_flight_batches:
            self.consumer.pause()
            # Heartbeats and rebalances go on while paused. A partition assigned during this
            # poll starts unpaused and may hand out records: give them back to be read later.
            stray = self.consumer.poll(timeout_ms=20)
            if stray is not None:
                self.consumer.rewind(stray)
            self.stats.paused_polls += 1
            return
        self.consumer.resume()
        batch = self.consumer.poll(max_records=self.pool.max_poll_records, timeout_ms=50)
        if batch is None:
            return
        messages = [SourceMessage.from_record(record) for record in batch.records]
        isolated = self._seen_failing(messages)
        work = self._moderate_one_by_one if isolated else self._moderate_together
        future = self._workers.submit(work, messages)
        self._in_flight.append(_InFlight(batch, future, time.monotonic(), isolated))
        self.stats.consumed += len(messages)

    def _seen_failing(self, messages: list[SourceMessage]) -> bool:
        limit = self.max_batch_attempts
        return any(self._failures.get(_key(m), 0) >= limit for m in messages)

    def _moderate_together(self, messages: list[SourceMessage]) -> list[list[OutMessage]]:
        return [self.moderator.moderate(messages)]

    def _moderate_one_by_one(self, messages: list[SourceMessage]) -> list[list[OutMessage]]:
        """Each message alone; one that still raises becomes a dead letter with the reason."""
        outputs = []
        for message in messages:
            try:
                outputs.append(self.moderator.moderate([message]))
            except Exception as error:  # the poison pill itself: dead-letter it, go on
                log.error("post at %s failed alone, dead-lettered: %s", _key(message), error)
                failure = Failure.of(error, Stage.POLICY)
                outputs.append([self.moderator.fail_message(message, failure)])
                self.stats.isolated_dead_letters += 1
        return outputs

    def _finish_done(self, *, wait: bool = False) -> None:
        for item in list(self._in_flight):
            if wait or item.outputs.done():
                self._in_flight.remove(item)
                self._finish(item)

    def _finish(self, item: _InFlight) -> None:
        """Step produce: send every output, wait for acks, then mark the batch done and commit."""
        try:
            with item.batch.processing():
                outputs = item.outputs.result()
                with self.moderator.telemetry.tracer.start_as_current_span("produce"):
                    produced = self._produce(item, outputs)
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
        self.stats.produced += produced
        elapsed_ms = (time.monotonic() - item.started) * 1000
        for _ in item.batch.records:
            self.moderator.telemetry.latency.record(elapsed_ms)

    def _produce(self, item: _InFlight, outputs: list[list[OutMessage]]) -> int:
        """Send every output; when isolated, a post whose outputs are refused is dead-lettered."""
        if not item.isolated:
            self.producer.send_all(outputs[0])
            return len(outputs[0])
        sent = 0
        for record, messages in zip(item.batch.records, outputs, strict=True):
            try:
                self.producer.send_all(messages)
            except Exception as error:  # e.g. a verdict over the broker's size limit
                message = SourceMessage.from_record(record)
                messages = [self.moderator.fail_message(message, Failure.of(error, Stage.PRODUCE))]
                self.producer.send_all(messages)  # failing here is an outage: re-read the batch
                self.stats.isolated_dead_letters += 1
            sent += len(messages)
        return sent


def _key(message: SourceMessage) -> RecordKey:
    return (message.topic, message.partition, message.offset)
