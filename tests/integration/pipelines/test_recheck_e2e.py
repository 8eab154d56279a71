"""Retroactive matching on real Tansu, Redis and Ray: a copy of an image posted before its bank
existed is decided again when the image is banked, and gets a blocking verdict of its own."""

from __future__ import annotations

import base64
import io
import json
import random
import time
import uuid
from pathlib import Path

import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

from cli.main import app
from contracts.records import Verdict
from demo.samples import repost_of
from kafka_io.clients import OutMessage
from tests.integration.pipeline_run import publish

pytest.importorskip("pdqhash")
pytest.importorskip("faiss")

from operators.limits import ImageLimits
from operators.specialists.pdq import MIN_QUALITY, hash_image_bytes
from operators.specialists.render import photo_like

POLICY = """
id: banked
version: 1
signals:
  banks: [{bank}]
rules:
  - id: known-image
    when: 'banks["{bank}"]'
    action: block
default: allow
"""


def _png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def _post(post_id: str, image: bytes, topic: str) -> OutMessage:
    body = {"id": post_id, "images": [{"data": base64.b64encode(image).decode()}]}
    return OutMessage(topic, json.dumps(body).encode(), post_id.encode())


def _hashable_pair(rng: random.Random) -> tuple[Image.Image, Image.Image]:
    """Two pictures no other test draws (the window is shared), each of whose copies hashes.

    Some drawn pictures are too plain for PDQ once reposted (quality under 50): the banks
    producer then hashes nothing, and there is nothing for a bank to find. Each copy is also
    well within the match threshold (31 bits) of its original.
    """
    limits = ImageLimits()
    pictures: list[Image.Image] = []
    while len(pictures) < 2:
        picture = photo_like(rng.randrange(10_000, 10**9), (640, 480))
        copy = hash_image_bytes(repost_of(picture), limits)
        banked = hash_image_bytes(_png(picture), limits)
        if copy.quality >= MIN_QUALITY + 20 and _distance(copy.hex, banked.hex) <= 16:
            pictures.append(picture)
    return pictures[0], pictures[1]


def _distance(one: str, other: str) -> int:
    return (int(one, 16) ^ int(other, 16)).bit_count()


def _wait_for_verdicts(collector, post_id: str, count: int, timeout_s: float = 120) -> list[dict]:
    deadline = time.monotonic() + timeout_s
    while len(collector.outputs.verdicts.get(post_id, [])) < count:
        assert time.monotonic() < deadline, f"{post_id}: {collector.outputs.verdicts.get(post_id)}"
        time.sleep(0.1)
    return collector.outputs.verdicts[post_id]


def test_banking_an_image_decides_a_copy_seen_before_the_bank_existed_again(
    e2e_config, start_pipeline, redis_url, tmp_path
):
    bank = f"test-{uuid.uuid4().hex[:8]}"
    config = e2e_config(model="noop", redis_url=redis_url)
    (Path(config.policy_dir) / "e2e.yaml").write_text(POLICY.format(bank=bank))
    _run, collector = start_pipeline(config)
    original, unrelated = _hashable_pair(random.Random(bank))
    topic = config.topics.inputs[0]
    publish(
        config, [_post("copy", repost_of(original), topic), _post("other", _png(unrelated), topic)]
    )
    [first] = _wait_for_verdicts(collector, "copy", 1)
    _wait_for_verdicts(collector, "other", 1)
    assert first["action"] == "allow" and first["recheck"] is None
    assert [e["id"] for e in first["rule_errors"]] == ["known-image"], "no such bank yet"

    (tmp_path / "known.png").write_bytes(_png(original))
    config_file = tmp_path / "pipeline.yaml"
    config_file.write_text(yaml.safe_dump(config.model_dump(mode="json", exclude_none=True)))
    args = ["bank", "add", bank, str(tmp_path / "known.png"), "--config", str(config_file)]
    added = CliRunner().invoke(app, args)
    assert added.exit_code == 0, added.output
    assert f"decided again (bank {bank}@" in added.stdout
    assert "1 recent post(s) published again: copy" in added.stdout

    first_again, again = _wait_for_verdicts(collector, "copy", 2)
    assert first_again == first
    verdict = Verdict.model_validate(again)
    assert verdict.action == "block" and verdict.rule_errors == []
    assert [rule.id for rule in verdict.matched_rules] == ["known-image"]
    assert verdict.recheck is not None and verdict.recheck.startswith(f"bank {bank}@")
    assert verdict.key != first["key"], "a key of its own: sinks and queues take it as new"
    assert len(collector.outputs.verdicts["other"]) == 1, "a post the bank does not hold stays"
