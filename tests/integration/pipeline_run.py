"""What end-to-end runs share: the one-policy config they start from, posts to publish, a
publisher, and a collector of what the pipeline wrote. The fixtures are in conftest.py."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from demo.samples import drawn_image, malformed_posts
from kafka_io.clients import KafkaWriter, OutMessage, TopicReader
from pipelines.config import PipelineConfig

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

    def __init__(self, config: PipelineConfig, review_topics: list[str], **reader: Any) -> None:
        self.config = config
        self.outputs = Outputs()
        topics = [config.topics.verdicts, config.topics.dead_letter, *review_topics]
        self._reader = TopicReader(config.kafka, topics, **reader)
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


def check_every_post_has_one_verdict_key(outputs, post_ids):
    """Every post has verdicts, all under one key: repeats allowed, losses not."""
    missing = sorted(set(post_ids) - set(outputs.verdicts))
    assert not missing, f"{len(missing)} posts have no verdict, e.g. {missing[:5]}"
    for post_id in post_ids:
        keys = {verdict["key"] for verdict in outputs.verdicts[post_id]}
        assert len(keys) == 1, f"{post_id} has verdicts under several keys: {keys}"


def wait_for_first_verdicts(collector, count=40, timeout_s=120):
    """Wait until `count` posts are resolved, so that a fault lands mid-stream."""
    deadline = time.monotonic() + timeout_s
    while collector.resolved() < count and time.monotonic() < deadline:
        time.sleep(0.1)
    assert collector.resolved() >= count, "the pipeline produced nothing"


def publish_in_background(config, messages, per_second):
    """Publish `messages` at `per_second` on a thread; join it to wait for the last."""
    thread = threading.Thread(
        target=publish, args=(config, messages), kwargs={"per_second": per_second}
    )
    thread.start()
    return thread
