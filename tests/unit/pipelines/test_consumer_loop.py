"""ModerationLoop over fakes: backpressure, produce then commit, rewind on failure, drain."""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from contracts.outcomes import ActiveVerdict, Outcome, SourceRef
from contracts.records import DeadLetter, PolicyRef, Verdict, verdict_key
from kafka_io.consumers import Batch
from kafka_io.exceptions import ProduceFailed
from pipelines.config import PoolSettings, RetrySettings
from pipelines.consumer import ModerationLoop
from pipelines.telemetry import telemetry
from sinks.base import SinkUnavailable

DEADLINE_S = 1.5


@dataclass(frozen=True)
class Record:
    """The fields of a kafka-python ConsumerRecord that the loop reads."""

    offset: int
    topic: str = "posts"
    partition: int = 0
    key: bytes | None = None
    headers: tuple = ()

    @property
    def value(self) -> bytes:
        return f'{{"id": "p{self.offset}"}}'.encode()


class FakeConsumer:
    """Hands out queued batches; a paused consumer hands out nothing, as Kafka's does."""

    def __init__(self, batches: list[list[int]]) -> None:
        self.queue = deque([Record(offset) for offset in offsets] for offsets in batches)
        self.events: list[tuple[str, object]] = []
        self.completed: list[int] = []
        self.rewound: list[int] = []
        self.paused = False
        self.polls_while_paused = 0
        self.resumed_after_pause = 0
        self.closed_with: list[bool] = []
        self.threads: set[int] = set()

    def _call(self, name: str, detail: object = None) -> None:
        self.threads.add(threading.get_ident())
        self.events.append((name, detail))

    def poll(self, *, max_records: int = 500, timeout_ms: int = 100) -> Batch | None:
        self._call("poll")
        if self.paused:
            self.polls_while_paused += 1
            time.sleep(0.002)  # a real poll waits for heartbeats; don't spin
            return None
        if not self.queue:
            time.sleep(0.001)
            return None
        return Batch(self.queue.popleft(), self)  # type: ignore[arg-type]  # fake consumer

    def pause(self) -> None:
        self._call("pause")
        self.paused = True

    def resume(self) -> None:
        self._call("resume")
        if self.paused:
            self.resumed_after_pause += 1
        self.paused = False

    def complete(self, batch: Batch, *, commit: bool = True) -> None:
        offsets = [record.offset for record in batch.records]
        self._call("complete", offsets)
        self.completed += offsets

    def rewind(self, batch: Batch) -> None:
        """Like seeking back: the same records are handed out again."""
        offsets = [record.offset for record in batch.records]
        self._call("rewind", offsets)
        self.rewound += offsets
        self.queue.appendleft(list(batch.records))

    def lag(self) -> int:
        return len(self.queue)

    def assignment(self) -> set:
        return {("posts", 0)}

    def close(self, *, commit: bool = True) -> None:
        self._call("close", commit)
        self.closed_with.append(commit)


class FakeSink:
    """Records what it wrote (a post's outcome as its message, a dead letter as its reason), and
    what the consumer had completed at that moment."""

    def __init__(self, consumer: FakeConsumer, failures: int = 0, refuse: bytes = b"") -> None:
        self.consumer = consumer
        self.failures = failures
        self.refuse = refuse  # a value the broker never accepts, e.g. over its size limit
        self.sent: list[bytes] = []
        self.completed_during_send: list[tuple[list[bytes], list[int]]] = []
        self.closed = False

    def write(self, outcomes: list[Outcome]) -> int:
        values = [written(outcome) for outcome in outcomes]
        self.completed_during_send.append((values, list(self.consumer.completed)))
        if self.failures:  # the broker is away: KafkaSink says so with SinkUnavailable
            self.failures -= 1
            raise SinkUnavailable("kafka: moderation.verdicts: not acknowledged: broker gone")
        if self.refuse and self.refuse in values:
            raise ProduceFailed(
                "moderation.verdicts: not acknowledged: MessageSizeTooLarge", outage=False
            )
        self.sent += values
        self.consumer.events.append(("sent", len(values)))
        return len(values)

    def close(self) -> None:
        self.closed = True


def written(outcome: Outcome) -> bytes:
    if outcome.dead_letter is not None:
        return f"{outcome.dead_letter.stage}: {outcome.dead_letter.error}".encode()
    return f'{{"id": "{outcome.post_id}"}}'.encode()


def source_of(message) -> SourceRef:
    return SourceRef(
        topic=message.topic, partition=message.partition, offset=message.offset, key=message.key
    )


class GatedModerator:
    """Echoes each message to one outcome; blocks until `gate` is set; `poison` always raises."""

    def __init__(
        self, *, open_gate: bool = True, poison: int | None = None, verdicts: bool = False
    ) -> None:
        self.telemetry = telemetry()
        self.poison = poison
        self.verdicts = verdicts  # each outcome with a block verdict, for sinks that read them
        self.calls: list[list[int]] = []
        self.gate = threading.Event()
        if open_gate:
            self.gate.set()
        self.started: list[list[int]] = []
        self._lock = threading.Lock()

    def moderate(self, messages: list) -> list[Outcome]:
        with self._lock:
            self.started.append([m.offset for m in messages])
        assert self.gate.wait(DEADLINE_S), "test never opened the gate"
        if any(m.offset == self.poison for m in messages):
            raise ValueError("Failed to convert variable 'text': Conversion Error")
        return [self._outcome(m, json.loads(m.value)["id"]) for m in messages]

    def _outcome(self, message, post_id: str) -> Outcome:
        if not self.verdicts:
            return Outcome(source=source_of(message), post_id=post_id)
        policy = PolicyRef(id="p", version=1, sha256="0" * 64)
        verdict = Verdict(
            post_id=post_id, key=verdict_key(post_id, "p", 1), action="block", policy=policy
        )
        active = (ActiveVerdict(verdict=verdict),)
        return Outcome(source=source_of(message), post_id=post_id, verdicts=active)

    def fail_message(self, message, failure) -> Outcome:
        letter = DeadLetter(
            original="",
            topic=message.topic,
            partition=message.partition,
            offset=message.offset,
            stage=failure.stage,
            error_type=failure.error_type,
            error=failure.reason,
        )
        return Outcome(source=source_of(message), dead_letter=letter)


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting until {what}")
        time.sleep(0.001)


class Running:
    """A loop running in its own thread, as a consumer actor runs it."""

    def __init__(
        self,
        consumer,
        producer,
        moderator,
        *,
        in_flight: int = 2,
        caught_up: int | None = None,
        max_poll: int = 8,
        sinks=(),
        collector=None,
    ) -> None:
        pool = PoolSettings(
            max_in_flight_batches=in_flight,
            in_flight_caught_up=in_flight if caught_up is None else caught_up,
            max_poll_records=max_poll,
        )
        retry = RetrySettings(max_batch_attempts=3)
        self.loop = ModerationLoop(
            consumer,  # type: ignore[arg-type]  # fakes
            producer,
            moderator,  # type: ignore[arg-type]
            pool,
            retry,
            sinks=sinks,
            collector=collector,
        )
        self.moderator = moderator
        self.result: list = []
        self.thread = threading.Thread(
            target=lambda: self.result.append(self.loop.run()), daemon=True
        )
        self.thread.start()

    def stop(self):
        self.loop.stop()
        self.moderator.gate.set()
        self.thread.join(DEADLINE_S)
        assert not self.thread.is_alive(), "run() did not return after stop()"
        return self.result[0]


@pytest.fixture
def start_loop():
    """Starts loops; stops every one at teardown, so a failed test leaves no thread behind."""
    started: list[Running] = []

    def start(consumer, producer, moderator, *, in_flight: int = 2, **pool) -> Running:
        started.append(Running(consumer, producer, moderator, in_flight=in_flight, **pool))
        return started[-1]

    yield start
    for running in started:
        running.loop.stop()
        running.moderator.gate.set()
        running.thread.join(DEADLINE_S)


def test_full_pool_pauses_the_consumer_keeps_polling_and_resumes_when_batches_finish(start_loop):
    consumer = FakeConsumer([[0, 1], [2, 3], [4, 5]])
    moderator = GatedModerator(open_gate=False)
    running = start_loop(consumer, FakeSink(consumer), moderator, in_flight=2)
    wait_until(lambda: len(moderator.started) == 2, "two batches are in flight")
    wait_until(lambda: consumer.polls_while_paused >= 3, "the paused loop polls again")
    assert consumer.paused
    assert [[r.offset for r in batch] for batch in consumer.queue] == [[4, 5]]
    assert moderator.started == [[0, 1], [2, 3]], "no third batch while two are in flight"
    assert running.loop.stats.paused_polls > 0
    moderator.gate.set()
    wait_until(lambda: consumer.completed == [0, 1, 2, 3, 4, 5], "all batches are done")
    stats = running.stop()
    assert consumer.resumed_after_pause >= 1 and not consumer.paused
    assert (stats.consumed, stats.written, stats.batches, stats.failed_batches) == (6, 6, 3, 0)


def test_a_caught_up_consumer_runs_one_batch_at_a_time(start_loop):
    consumer = FakeConsumer([[0], [1], [2]])  # polls short of a full batch (max_poll 2)
    moderator = GatedModerator(open_gate=False)
    running = start_loop(
        consumer, FakeSink(consumer), moderator, in_flight=4, caught_up=1, max_poll=2
    )
    wait_until(lambda: moderator.started == [[0]], "the first batch is in flight")
    wait_until(lambda: consumer.polls_while_paused >= 3, "the loop waits, paused")
    assert moderator.started == [[0]], "a short poll lets no second batch start"
    moderator.gate.set()
    wait_until(lambda: consumer.completed == [0, 1, 2], "every batch is done, in turn")
    stats = running.stop()
    assert moderator.started == [[0], [1], [2]]
    assert (stats.batches, stats.failed_batches) == (3, 0)


def test_a_consumer_behind_runs_batches_up_to_the_limit_until_a_poll_comes_back_short(
    start_loop,
):
    consumer = FakeConsumer([[0, 1], [2, 3], [4], [5]])
    moderator = GatedModerator(open_gate=False)
    running = start_loop(
        consumer, FakeSink(consumer), moderator, in_flight=4, caught_up=1, max_poll=2
    )
    wait_until(lambda: len(moderator.started) == 3, "three batches are in flight")
    wait_until(lambda: consumer.polls_while_paused >= 3, "the loop waits, paused")
    assert moderator.started == [[0, 1], [2, 3], [4]], "full polls fill the pool; [4] was short"
    moderator.gate.set()
    wait_until(lambda: sorted(consumer.completed) == [0, 1, 2, 3, 4, 5], "every batch is done")
    running.stop()
    assert moderator.started[3] == [5]


class PaceLog:
    """A collector pace that records the states it is told, in order, without the changes."""

    def __init__(self) -> None:
        self.states: list[bool] = []

    def set_behind(self, behind: bool) -> None:
        if not self.states or self.states[-1] != behind:
            self.states.append(behind)


def test_the_collector_is_told_when_the_consumer_falls_behind_and_catches_up(start_loop):
    consumer = FakeConsumer([[0, 1], [2, 3], [4], [5, 6], [7]])
    pace = PaceLog()
    running = start_loop(
        consumer, FakeSink(consumer), GatedModerator(), in_flight=1, max_poll=2, collector=pace
    )
    wait_until(lambda: consumer.completed == list(range(8)), "every batch is done")
    running.stop()
    assert pace.states == [True, False, True, False], "full polls: behind; a short one: caught up"


def test_records_are_completed_only_after_send_all_returned(start_loop):
    consumer = FakeConsumer([[0, 1, 2], [3, 4]])
    producer = FakeSink(consumer)
    running = start_loop(consumer, producer, GatedModerator())
    wait_until(lambda: sorted(consumer.completed) == [0, 1, 2, 3, 4], "both batches are done")
    running.stop()
    for sent, done in producer.completed_during_send:
        own = {int(json.loads(value)["id"][1:]) for value in sent}  # Record's value: {"id": "pN"}
        assert not own & set(done), "nothing of a batch done before its send returned"
    done = [(name, detail) for name, detail in consumer.events if name in ("sent", "complete")]
    assert done.index(("sent", 3)) < done.index(("complete", [0, 1, 2]))
    assert done.index(("sent", 2)) < done.index(("complete", [3, 4]))
    assert len(consumer.threads) == 1, "only the loop's thread touches the consumer"


class QuietConsumer(FakeConsumer):
    """Once its queue is empty, a poll waits until `traffic` is set, as a long poll does."""

    def __init__(self, batches: list[list[int]]) -> None:
        super().__init__(batches)
        self.traffic = threading.Event()
        self.waiting = False

    def poll(self, *, max_records: int = 500, timeout_ms: int = 100) -> Batch | None:
        if not self.queue and not self.paused:
            self.waiting = True
            self.traffic.wait(DEADLINE_S * 2)
            self.waiting = False
        return super().poll(max_records=max_records, timeout_ms=timeout_ms)


def test_a_moderated_batch_is_produced_while_the_loop_still_waits_in_poll(start_loop):
    consumer = QuietConsumer([[0, 1]])
    producer = FakeSink(consumer)
    moderator = GatedModerator(open_gate=False)
    running = start_loop(consumer, producer, moderator, in_flight=2)
    wait_until(lambda: moderator.started == [[0, 1]], "the batch is in flight")
    wait_until(lambda: consumer.waiting, "the loop waits in poll")
    moderator.gate.set()
    wait_until(lambda: len(producer.sent) == 2, "the outputs are sent during the poll")
    assert consumer.completed == [], "the batch is completed by the loop's thread, later"
    consumer.traffic.set()
    wait_until(lambda: consumer.completed == [0, 1], "the batch is done after the poll")
    running.stop()


def test_a_failed_produce_rewinds_the_batch_and_the_loop_keeps_running(start_loop):
    consumer = FakeConsumer([[0, 1], [2]])
    producer = FakeSink(consumer, failures=1)
    running = start_loop(consumer, producer, GatedModerator(), in_flight=1)
    wait_until(lambda: sorted(consumer.completed) == [0, 1, 2], "every record is done")
    assert running.thread.is_alive(), "a failed produce must not stop the loop"
    stats = running.stop()
    assert consumer.rewound == [0, 1]
    first_outcome = next(e for e in consumer.events if e[0] in ("complete", "rewind"))
    assert first_outcome == ("rewind", [0, 1]), "the failed batch is rewound, not completed"
    assert consumer.completed.count(0) == 1, "completed once, after it was read again"
    assert (stats.failed_batches, stats.batches) == (1, 2)


def test_a_broker_outage_longer_than_the_batch_attempts_dead_letters_nothing(start_loop):
    consumer = FakeConsumer([[0, 1]])
    producer = FakeSink(consumer, failures=5)  # past max_batch_attempts=3, into isolation
    running = start_loop(consumer, producer, GatedModerator(), in_flight=1)
    wait_until(lambda: {0, 1} <= set(consumer.completed), "both records are done")
    stats = running.stop()
    assert producer.sent == [b'{"id": "p0"}', b'{"id": "p1"}'], "verdicts, no dead letters"
    assert stats.isolated_dead_letters == 0
    assert consumer.rewound[:6] == [0, 1] * 3, "every failed try is read again"


def test_stop_drains_in_flight_batches_then_commits_and_closes(start_loop):
    consumer = FakeConsumer([[0, 1], [2]])
    producer = FakeSink(consumer)
    moderator = GatedModerator(open_gate=False)
    running = start_loop(consumer, producer, moderator, in_flight=2)
    wait_until(lambda: len(moderator.started) == 2, "two batches are in flight")
    running.loop.stop()
    time.sleep(0.02)
    assert running.thread.is_alive(), "run() must wait for the batches in flight"
    assert consumer.completed == [] and consumer.closed_with == []
    moderator.gate.set()
    stats = running.stop()
    assert consumer.completed == [0, 1, 2]
    assert len(producer.sent) == 3 and producer.closed
    assert consumer.closed_with == [True]
    assert consumer.events[-1] == ("close", True), "close comes after every batch is done"
    assert (stats.batches, stats.written) == (2, 3)


class RebalancingConsumer(FakeConsumer):
    """Its first paused poll returns records of a partition assigned during that poll.

    kafka-python gives a newly assigned partition fresh, unpaused state, and one `poll` both
    finishes a rebalance and fetches, so a paused consumer can hand out records.
    """

    def __init__(self, batches: list[list[int]], assigned_during_pause: list[int]) -> None:
        super().__init__(batches)
        self.pending = [Record(offset, partition=1) for offset in assigned_during_pause]

    def poll(self, *, max_records: int = 500, timeout_ms: int = 100) -> Batch | None:
        if self.paused and self.pending:
            self._call("poll")
            records, self.pending = self.pending, []
            return Batch(records, self)  # type: ignore[arg-type]  # fake consumer
        return super().poll(max_records=max_records, timeout_ms=timeout_ms)


def test_records_handed_out_by_a_paused_poll_are_not_dropped(start_loop):
    consumer = RebalancingConsumer([[0], [1]], assigned_during_pause=[100])
    moderator = GatedModerator(open_gate=False)
    running = start_loop(consumer, FakeSink(consumer), moderator, in_flight=1)
    wait_until(lambda: consumer.polls_while_paused >= 1, "the loop polls while paused")
    moderator.gate.set()
    wait_until(lambda: {0, 1} <= set(consumer.completed), "the first partition is done")
    polls = len(consumer.events)
    wait_until(lambda: len(consumer.events) > polls + 20, "the loop goes on polling")
    running.stop()
    assert 100 in consumer.completed + consumer.rewound, "record 100 neither moderated nor rewound"


def test_a_poison_pill_is_read_at_most_n_times_then_dead_lettered_alone(start_loop):
    consumer = FakeConsumer([[0, 1, 2], [3]])
    producer = FakeSink(consumer)
    moderator = GatedModerator(poison=1)
    running = start_loop(consumer, producer, moderator, in_flight=1)
    wait_until(lambda: {0, 1, 2, 3} <= set(consumer.completed), "every record is done")
    stats = running.stop()
    reads_of_poison = sum(1 for offsets in moderator.started if 1 in offsets)
    assert reads_of_poison == 4, "three failed batches, then once alone"
    assert consumer.rewound == [0, 1, 2] * 3
    assert producer.sent.count(b'{"id": "p0"}') == 1 and producer.sent.count(b'{"id": "p2"}') == 1
    assert b"policy: Failed to convert variable 'text': Conversion Error" in producer.sent
    assert (stats.failed_batches, stats.isolated_batches, stats.isolated_dead_letters) == (3, 1, 1)


def test_an_output_the_broker_refuses_is_dead_lettered_once_the_batch_is_isolated(start_loop):
    consumer = FakeConsumer([[0, 1]])
    producer = FakeSink(consumer, refuse=b'{"id": "p1"}')
    running = start_loop(consumer, producer, GatedModerator(), in_flight=1)
    wait_until(lambda: {0, 1} <= set(consumer.completed), "both records are done")
    stats = running.stop()
    assert producer.sent == [
        b'{"id": "p0"}',
        b"produce: moderation.verdicts: not acknowledged: MessageSizeTooLarge",
    ]
    assert (stats.failed_batches, stats.isolated_dead_letters) == (3, 1)
