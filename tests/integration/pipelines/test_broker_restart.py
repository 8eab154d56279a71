"""The broker restarted under a steady stream, on durable storage: Tansu keeps its topics,
records and committed offsets in an object store that outlives it, and the pipeline, its
consumer group and its producers carry on by themselves. Every post ends as one verdict key.

Tansu on object storage answers a fetch with nothing when its storage is slower than the
fetch's `fetch_max_wait_ms` (the pipeline's 5 ms default), so these consumers wait longer.
"""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict

import pytest
from kafka.errors import KafkaError

from contracts.errors import ServiceUnavailable
from demo.harness import KafkaBroker, running_services
from kafka_io.clients import KafkaWriter, OutMessage, ProduceFailed, TopicReader
from kafka_io.settings import KafkaSettings
from pipelines.config import PipelineConfig
from tests.integration.pipeline_run import (
    GROUP_TIMEOUTS,
    OutputCollector,
    Outputs,
    check_every_post_has_one_verdict_key,
    post_messages,
    wait_for_first_verdicts,
)

FETCH_WAIT_MS = 500


@pytest.fixture
def durable_broker(tmp_path):
    """A Tansu of this test's own, its data in an object store: it can be restarted."""
    try:
        with running_services(redis=False, ray=False, durable_kafka=True, workdir=tmp_path) as s:
            [broker] = [o for o in s.owned if isinstance(o, KafkaBroker)]
            yield broker
    except ServiceUnavailable as exc:  # moto missing: the embedded extra is not installed
        pytest.fail(f"no durable broker: {exc}")


class SteadyPublisher:
    """Publishes `messages` in chunks at `per_second`; a chunk the broker did not take (it is
    down) is sent again until it is, so the stream has no gap but the broker's."""

    def __init__(self, settings: KafkaSettings, messages: list[OutMessage], per_second: float):
        self.settings, self.messages, self.per_second = settings, messages, per_second
        self.sent = 0  # messages the broker acknowledged
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        writer = KafkaWriter(self.settings)
        step = 10
        try:
            for start in range(0, len(self.messages), step):
                chunk = self.messages[start : start + step]
                while True:
                    try:
                        writer.send_all(chunk, timeout_s=10)
                        self.sent += len(chunk)
                        break
                    except (ProduceFailed, KafkaError):  # the broker is down: again
                        continue
                time.sleep(step / self.per_second)
        finally:
            writer.close()

    def join(self, timeout_s: float) -> None:
        self._thread.join(timeout_s)
        assert not self._thread.is_alive(), "the publisher did not finish"


def read_to_end(config: PipelineConfig, topic: str) -> list:
    """Every record on `topic`, read from the start once the broker is back: a reader that
    was running across the restart would prove the reader, not the pipeline."""
    reader = TopicReader(config.kafka, [topic], fetch_max_wait_ms=FETCH_WAIT_MS)
    try:
        return reader.read_to_end(timeout_s=120)
    finally:
        reader.close()


def test_a_broker_restart_mid_stream_loses_no_post(durable_broker, e2e_config, start_pipeline):
    config = e2e_config(model="noop").model_copy(
        update={
            "kafka": KafkaSettings(bootstrap_servers=durable_broker.bootstrap),
            "consumer_overrides": {**GROUP_TIMEOUTS, "fetch_max_wait_ms": FETCH_WAIT_MS},
        }
    )
    start_pipeline(config)
    collector = OutputCollector(config, [], fetch_max_wait_ms=FETCH_WAIT_MS)
    messages = post_messages(300, topic=config.topics.inputs[0])
    # One post first, so the steady stream starts once the pipeline moderates (Serve is up).
    SteadyPublisher(config.kafka, messages[:1], per_second=20).join(timeout_s=60)
    wait_for_first_verdicts(collector, count=1, timeout_s=180)
    publisher = SteadyPublisher(config.kafka, messages[1:], per_second=20)
    wait_for_first_verdicts(collector, count=40, timeout_s=180)
    durable_broker.restart(down_s=3)
    assert publisher.sent < len(messages) - 1, "the stream ended before the restart"

    publisher.join(timeout_s=300)
    # Tansu's s3 storage may drop records it acknowledged across a restart (the soak saw one in
    # some restarts, a CI run 5 of 300): the pipeline answers for the posts the broker kept, and
    # a broker that kept under 90 % says the restart itself went wrong.
    kept = {r.key.decode() for r in read_to_end(config, config.topics.inputs[0])}
    assert len(kept) >= 0.9 * len(messages), f"the broker kept {len(kept)} of {len(messages)}"
    deadline = time.monotonic() + 300
    while not kept <= set(collector.outputs.verdicts) and time.monotonic() < deadline:
        time.sleep(0.2)
    verdicts: dict[str, list[dict]] = defaultdict(list)
    for record in read_to_end(config, config.topics.verdicts):
        body = json.loads(record.value)
        verdicts[body["post_id"]].append(body)
    check_every_post_has_one_verdict_key(Outputs(verdicts=verdicts), sorted(kept))
    dead = collector.outputs.dead_letters
    collector.close()
    assert not dead, list(dead.items())[:3]
