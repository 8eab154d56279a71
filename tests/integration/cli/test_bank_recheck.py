"""`vlmod bank add` and the recent-images window on real Redis and Tansu: what it finds, what it
publishes again with the re-check header, and what it says of a post its topic no longer holds."""

from __future__ import annotations

import io
import json
import random
import time
import uuid

import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

from cli.main import app
from contracts.records import RECHECK_HEADER
from kafka_io.clients import KafkaWriter, OutMessage, TopicReader
from pipelines.config import PipelineConfig

pytest.importorskip("pdqhash")
pytest.importorskip("faiss")

from operators.limits import ImageLimits
from operators.specialists.pdq import hash_image_bytes
from operators.specialists.recent_images import RecentImage, RecentImages
from operators.specialists.render import photo_like


def _png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


@pytest.fixture
def banked(tmp_path):
    """A picture no other test draws, as a file to bank, and its PDQ hash."""
    rng = random.Random(uuid.uuid4().hex)
    while True:
        data = _png(photo_like(rng.randrange(10_000, 10**9), (640, 480)))
        pdq = hash_image_bytes(data, ImageLimits())
        if pdq.usable:
            break
    path = tmp_path / "known.png"
    path.write_bytes(data)
    return path, pdq.hex


def _add(bank, path, redis_url, *more):
    return CliRunner().invoke(
        app, ["bank", "add", bank, str(path), "--redis-url", redis_url, *more]
    )


def test_without_a_config_the_matching_recent_posts_are_listed_not_published(redis_url, banked):
    path, hash_hex = banked
    window = RecentImages(redis_url)
    tag = uuid.uuid4().hex[:6]
    window.add([RecentImage(f"seen-{tag}", "posts", 0, 3, ("00" * 32, hash_hex))])
    bank = f"test-{tag}"
    result = _add(bank, path, redis_url)
    assert result.exit_code == 0, result.output
    assert f"1 recent post(s) have a newly banked image: seen-{tag}; give --config" in result.stdout
    again = _add(bank, path, redis_url)
    assert "added 0 hash(es), 1 already there" in again.stdout
    assert "recent post" not in again.stdout, "nothing newly banked: nothing to look up"
    other = _add(f"{bank}-2", path, redis_url, "--no-recheck")
    assert other.exit_code == 0 and "recent post" not in other.stdout


def _config_file(tmp_path, kafka_settings, redis_url):
    config = PipelineConfig(kafka=kafka_settings, redis_url=redis_url)
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(config.model_dump(mode="json", exclude_none=True)))
    return path


def test_with_a_config_a_match_is_published_again_and_one_past_retention_is_named(
    redis_url, kafka_settings, topic_factory, banked, tmp_path
):
    path, hash_hex = banked
    topic = topic_factory("posts")
    writer = KafkaWriter(kafka_settings)
    body = json.dumps({"id": "kept", "text": "hello"}).encode()
    writer.send_all([OutMessage(topic, b"{}", b"before"), OutMessage(topic, body, b"kept")])
    writer.close()
    window = RecentImages(redis_url)
    window.add(
        [
            RecentImage("kept", topic, 0, 1, (hash_hex,)),
            RecentImage("gone", topic, 0, 99, (hash_hex,)),  # past the partition's end
        ]
    )
    bank = f"test-{uuid.uuid4().hex[:6]}"
    result = _add(
        bank, path, redis_url, "--config", str(_config_file(tmp_path, kafka_settings, redis_url))
    )
    assert result.exit_code == 1, result.output
    assert f"decided again (bank {bank}@" in result.stdout, result.stderr
    assert "1 recent post(s) published again: kept" in result.stdout
    assert "1 post(s) with a newly banked image are no longer in their topic" in result.stderr
    assert result.stderr.rstrip().endswith("not decided again: gone")

    reader = TopicReader(kafka_settings, [topic])
    records: list = []
    deadline = time.monotonic() + 30
    while len(records) < 3 and time.monotonic() < deadline:
        records += reader.read(timeout_ms=500)
    reader.close()
    assert len(records) == 3, records
    republished = records[2]
    assert (republished.key, republished.value) == (b"kept", body), "the post, unchanged"
    headers = dict(republished.headers)
    assert headers[RECHECK_HEADER].decode().startswith(f"bank {bank}@")
