"""The consume loop: poll, moderate batches in the background, produce, then commit.

One thread owns the Kafka consumer: it polls, hands batches to a small pool of workers, and
produces and commits each batch once its worker is done. At most `max_in_flight_batches` are in
flight; past that the loop pauses its partitions but keeps polling, so slow GPU work never
exceeds `max.poll.interval.ms` and never triggers a rebalance.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass

from pipelines.config import PoolSettings
from pipelines.kafka_io import Batch, BatchConsumer, OutMessage, Producer
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

    def as_dict(self) -> dict[str, int]:
        """Plain counters, for logs and for Ray callers."""
        return asdict(self)


@dataclass
class _InFlight:
    batch: Batch
    outputs: Future[list[OutMessage]]
    started: float


class ModerationLoop:
    """Moderates everything its consumer receives until `stop` is set, then drains and commits."""

    def __init__(
        self,
        consumer: BatchConsumer,
        producer: Producer,
        moderator: Moderator,
        pool: PoolSettings,
    ) -> None:
        self.consumer = consumer
        self.producer = producer
        self.moderator = moderator
        self.pool = pool
        self.stats = LoopStats()
        self.stop_event = threading.Event()
        self._workers = ThreadPoolExecutor(pool.max_in_flight_batches, thread_name_prefix="batch")
        self._in_flight: list[_InFlight] = []
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
        future = self._workers.submit(self.moderator.moderate, messages)
        self._in_flight.append(_InFlight(batch, future, time.monotonic()))
        self.stats.consumed += len(messages)

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
                    self.producer.send_all(outputs)
        except Exception as error:  # any failure: nothing is committed, so nothing is lost
            # The batch is read again, here or by the partition's next owner.
            self.stats.failed_batches += 1
            log.error(
                "batch of %d not done, it will be read again: %s", len(item.batch.records), error
            )
            return
        self.stats.batches += 1
        self.stats.produced += len(outputs)
        elapsed_ms = (time.monotonic() - item.started) * 1000
        for _ in item.batch.records:
            self.moderator.telemetry.latency.record(elapsed_ms)
