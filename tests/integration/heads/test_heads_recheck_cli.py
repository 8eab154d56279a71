"""`vlmod heads promote --config` on real Redis and Tansu: the recent posts the new version
flags otherwise than the active one are published again with the re-check header, unchanged;
the others are left alone, and rollback re-checks the same way."""

from __future__ import annotations

import json
import random
import time
import uuid

import pytest
import yaml
from typer.testing import CliRunner

from cli.main import app
from contracts.records import RECHECK_HEADER
from heads.recent import RecentEmbedding, RecentEmbeddings
from kafka_io.clients import KafkaWriter, OutMessage, TopicReader
from pipelines.config import ModelSettings, PipelineConfig

pytest.importorskip("sklearn")


def invoke(*args: object) -> object:
    result = CliRunner().invoke(app, [str(arg) for arg in args])
    assert "Traceback" not in result.output, result.output
    return result


def train(head: str, redis_url: str, tmp_path, sign: int) -> None:
    """A version that flags posts whose embedding's first number has sign `sign`."""
    rng = random.Random(sign)
    lines = []
    for n in range(40):
        x = rng.uniform(0.5, 3.0) * (1 if n % 2 else -1)
        lines.append({"embedding": [x, rng.gauss(0, 1)], "label": int(x * sign > 0)})
    path = tmp_path / f"examples-{sign}.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    args = ("heads", "train", head, "--examples", path, "--model", "m", "--precision", "0.8")
    assert invoke(*args, "--redis-url", redis_url).exit_code == 0


def test_promote_and_rollback_decide_again_the_posts_flagged_otherwise(
    redis_url, kafka_settings, topic_factory, tmp_path
):
    head = f"flip-{uuid.uuid4().hex[:6]}"
    train(head, redis_url, tmp_path, +1)  # version 1, active
    train(head, redis_url, tmp_path, -1)  # version 2, flags the other sign
    topic = topic_factory("posts")
    bodies = {post: json.dumps({"id": post, "text": post}).encode() for post in ("a", "b")}
    writer = KafkaWriter(kafka_settings)
    writer.send_all([OutMessage(topic, body, post.encode()) for post, body in bodies.items()])
    writer.close()
    # 2 dims: no post the pipeline embeds has so few, so only these two can flip.
    RecentEmbeddings(redis_url).add(
        [
            RecentEmbedding("a", topic, 0, 0, "m", (2.5, 0.1)),
            RecentEmbedding("b", topic, 0, 1, "m", (-2.5, 0.1)),
        ]
    )
    config = tmp_path / "pipeline.yaml"
    # The model the heads were trained on ("m"), or promote would refuse to re-check.
    settings = PipelineConfig(
        kafka=kafka_settings, redis_url=redis_url, model=ModelSettings(name_or_path="m")
    )
    config.write_text(yaml.safe_dump(settings.model_dump(mode="json", exclude_none=True)))

    promoted = invoke("heads", "promote", head, "2", "--config", config)
    assert promoted.exit_code == 0, promoted.output
    assert f"decided again (head {head}@2)" in promoted.stdout
    rolled = invoke("heads", "rollback", head, "--config", config)
    assert rolled.exit_code == 0, rolled.output
    assert f"decided again (head {head}@1)" in rolled.stdout

    reader = TopicReader(kafka_settings, [topic])
    records: list = []
    deadline = time.monotonic() + 30
    while len(records) < 6 and time.monotonic() < deadline:
        records += reader.read(timeout_ms=500)
    reader.close()
    republished = records[2:]
    assert len(republished) == 4, "both posts, once per change"
    for record in republished:
        assert record.value == bodies[record.key.decode()], "the post, unchanged"
    reasons = [dict(record.headers)[RECHECK_HEADER].decode() for record in republished]
    assert reasons == [f"head {head}@2"] * 2 + [f"head {head}@1"] * 2


def test_without_a_config_promote_only_says_the_posts_are_not_rechecked(redis_url, tmp_path):
    head = f"flip-{uuid.uuid4().hex[:6]}"
    train(head, redis_url, tmp_path, +1)
    train(head, redis_url, tmp_path, -1)
    result = invoke("heads", "promote", head, "2", "--redis-url", redis_url)
    assert result.exit_code == 0, result.output
    assert "recent posts not re-checked: give --config" in result.stdout


def test_a_head_of_another_model_than_the_pipelines_is_not_rechecked(
    redis_url, kafka_settings, tmp_path
):
    head = f"flip-{uuid.uuid4().hex[:6]}"
    train(head, redis_url, tmp_path, +1)
    train(head, redis_url, tmp_path, -1)
    config = tmp_path / "pipeline.yaml"
    settings = PipelineConfig(
        kafka=kafka_settings, redis_url=redis_url, model=ModelSettings(name_or_path="other")
    )
    config.write_text(yaml.safe_dump(settings.model_dump(mode="json", exclude_none=True)))
    result = invoke("heads", "promote", head, "2", "--config", config)
    assert result.exit_code == 0, result.output
    assert "v2 is now active" in result.stdout
    assert (
        f"recent posts not re-checked: {head} v2 was trained on m's embeddings, the "
        "pipeline's model is other" in result.stderr
    )
    assert "decided again" not in result.stdout
