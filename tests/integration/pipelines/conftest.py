"""Factories for end-to-end runs: a config with fresh topics, a publisher, an output collector."""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field

import pytest

from demo.samples import drawn_image, malformed_posts
from kafka_io.clients import KafkaWriter, OutMessage, TopicReader
from kafka_io.settings import KafkaSettings, TopicSettings
from pipelines.config import ModelSettings, PipelineConfig, PoolSettings, RetrySettings
from pipelines.runner import PipelineRun
from tests.integration.pipelines.consoles import password_hash, start_console  # noqa: F401 (fixtures)

E2E_POLICY = """
id: e2e
version: 1
signals:
  labels:
    weapon: "a weapon"
  questions:
    minor: "Is there a child?"
queues:
  weapons: {prefix}.review.weapons
rules:
  - id: spam
    when: text.matches("(?i)buy followers")
    action: review
    queue: spam
  - id: weapon
    when: labels.weapon > 0.5
    action: review
    queue: weapons
  - id: minor
    when: answers.minor > 0.5
    action: escalate
    queue: weapons
    priority: 0
default: allow
"""
GROUP_TIMEOUTS = {"session_timeout_ms": 6000, "heartbeat_interval_ms": 500}


@pytest.fixture
def e2e_config(kafka_bootstrap, tmp_path):
    """A pipeline config over fresh topics and a one-policy directory; override with kwargs."""
    prefix = f"e2e-{uuid.uuid4().hex[:8]}"
    policy_dir = tmp_path / "policies"
    policy_dir.mkdir()
    (policy_dir / "e2e.yaml").write_text(E2E_POLICY.format(prefix=prefix))

    def make(*, model="tiny:smolvlm", redis_url=None, pool=None, retry=None) -> PipelineConfig:
        return PipelineConfig(
            kafka=KafkaSettings(bootstrap_servers=kafka_bootstrap),
            consumer_group=prefix,
            consumer_overrides=GROUP_TIMEOUTS,
            topics=TopicSettings.namespaced(prefix),
            redis_url=redis_url,
            model=ModelSettings(name_or_path=model, device="cpu"),
            policy_dir=str(policy_dir),
            pool=pool
            or PoolSettings(
                num_cpus=0.5, consumer_num_cpus=0.25, max_batch_size=16, max_poll_records=16
            ),
            retry=retry or RetrySettings(max_attempts=5, backoff_base_s=0.2, backoff_cap_s=2.0),
        )

    return make


def post_messages(count: int, *, topic: str, images: int = 8, first: int = 0) -> list[OutMessage]:
    """`count` posts cycling over a few drawn images (reposts included), some with spam text."""
    pictures = [base64.b64encode(drawn_image(i)).decode() for i in range(images)]
    messages = []
    for n in range(first, first + count):
        post = {
            "id": f"p{n:05d}",
            "text": "buy followers" if n % 7 == 0 else f"post {n}",
            "images": [{"data": pictures[n % images], "mime": "image/png"}],
        }
        messages.append(OutMessage(topic, json.dumps(post).encode(), post["id"].encode()))
    return messages


def malformed_messages(topic: str) -> list[OutMessage]:
    """The sample malformed messages, each meant for the dead-letter topic."""
    return [OutMessage(topic, m.value, m.key) for m in malformed_posts()]


def publish(config: PipelineConfig, messages: list[OutMessage], *, per_second: float = 0) -> None:
    """Produce all messages, paced at `per_second` when given, so a stream lasts a while."""
    writer = KafkaWriter(config.kafka)
    try:
        step = 20
        for start in range(0, len(messages), step):
            writer.send_all(messages[start : start + step])
            if per_second:
                time.sleep(step / per_second)
    finally:
        writer.close()


@dataclass
class Outputs:
    """Everything the pipeline wrote, read back from its output topics."""

    verdicts: dict[str, list[dict]] = field(default_factory=lambda: defaultdict(list))
    dead_letters: dict[str, list[dict]] = field(default_factory=lambda: defaultdict(list))
    by_topic: dict[str, list[tuple[bytes | None, dict]]] = field(
        default_factory=lambda: defaultdict(list)
    )


class OutputCollector:
    """Reads the verdict, dead-letter and review topics in a background thread."""

    def __init__(self, config: PipelineConfig, review_topics: list[str]) -> None:
        self.config = config
        self.outputs = Outputs()
        topics = [config.topics.verdicts, config.topics.dead_letter, *review_topics]
        self._reader = TopicReader(config.kafka, topics)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for record in self._reader.read(timeout_ms=100):
                body = json.loads(record.value)
                with self._lock:
                    self.outputs.by_topic[record.topic].append((record.key, body))
                    if record.topic == self.config.topics.verdicts:
                        self.outputs.verdicts[body["post_id"]].append(body)
                    elif record.topic == self.config.topics.dead_letter:
                        key = (record.key or b"").decode()
                        self.outputs.dead_letters[key].append(body)
        self._reader.close()

    def resolved(self) -> int:
        """Distinct messages that have a verdict or a dead letter."""
        with self._lock:
            return len(self.outputs.verdicts) + len(self.outputs.dead_letters)

    def wait_for(self, count: int, timeout_s: float = 180.0) -> Outputs:
        """Block until `count` messages are resolved, then return what was read."""
        deadline = time.monotonic() + timeout_s
        while self.resolved() < count and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1.0)  # late duplicates from retried batches, if any
        return self.outputs

    def close(self) -> None:
        """Stop reading."""
        self._stop.set()
        self._thread.join(10)


@pytest.fixture
def start_pipeline(ray_local):
    """Starts PipelineRuns and stops them at teardown."""
    runs: list[PipelineRun] = []
    collectors: list[OutputCollector] = []

    def start(config: PipelineConfig) -> tuple[PipelineRun, OutputCollector]:
        from pipelines.producer_registry import pipeline_registry
        from pipelines.runner import review_topics
        from policies.loader import load_policy_dir

        policy_set = load_policy_dir(config.policy_dir, registry=pipeline_registry(config))
        run = PipelineRun(config)
        run.start(policy_set)
        runs.append(run)
        collector = OutputCollector(config, sorted(review_topics(policy_set)))
        collectors.append(collector)
        return run, collector

    yield start
    for collector in collectors:
        collector.close()
    for run in runs:
        run.stop(timeout_s=60)
