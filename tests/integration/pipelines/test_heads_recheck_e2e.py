"""Retroactive matching for heads on real Tansu, Redis and Ray: a post the active version let
through is decided again when a version that flags it is promoted, and gets a verdict of its own
naming the change, decided with the promoted version read at once (and the post it no longer
flags is decided again too)."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import pytest
import yaml

from contracts.records import Verdict
from kafka_io.clients import OutMessage
from tests.integration.heads.waves import HAM, POLICY, SPAM, invoke, write_examples
from tests.integration.pipeline_run import publish

pytest.importorskip("sklearn")


def train(head: str, redis_url: str, tmp_path: Path, spam_label: int) -> None:
    path = write_examples(tmp_path / f"examples-{spam_label}.jsonl", spam_label)
    args = ("heads", "train", head, "--examples", path, "--model", "tiny:smolvlm")
    result = invoke(*args, "--redis-url", redis_url, "--precision", "0.8")
    assert result.exit_code == 0, result.output


def _verdicts(collector, post_id: str, count: int, timeout_s: float = 120) -> list[dict]:
    deadline = time.monotonic() + timeout_s
    while len(collector.outputs.verdicts.get(post_id, [])) < count:
        assert time.monotonic() < deadline, collector.outputs.verdicts.get(post_id)
        time.sleep(0.1)
    return collector.outputs.verdicts[post_id]


def test_promoting_a_version_decides_again_a_post_it_flags(
    e2e_config, start_pipeline, redis_url, tmp_path
):
    head = f"wave-{uuid.uuid4().hex[:6]}"
    train(head, redis_url, tmp_path, spam_label=1)  # version 1, active: flags the pills
    train(head, redis_url, tmp_path, spam_label=0)  # version 2: flags the beach posts
    config = e2e_config(redis_url=redis_url)
    (Path(config.policy_dir) / "e2e.yaml").write_text(POLICY.format(head=head))
    _run, collector = start_pipeline(config)
    topic = config.topics.inputs[0]
    posts = {"beach": HAM.format(n=90), "pills": SPAM.format(n=90)}
    publish(
        config,
        [
            OutMessage(topic, json.dumps({"id": k, "text": t}).encode(), k.encode())
            for k, t in posts.items()
        ],
    )
    [first] = _verdicts(collector, "beach", 1)
    [pills] = _verdicts(collector, "pills", 1)
    assert (first["action"], pills["action"]) == ("allow", "review")

    config_file = tmp_path / "pipeline.yaml"
    config_file.write_text(yaml.safe_dump(config.model_dump(mode="json", exclude_none=True)))
    promoted = invoke("heads", "promote", head, "2", "--config", config_file)
    assert promoted.exit_code == 0, promoted.output
    assert f"decided again (head {head}@2): 2 recent post(s)" in promoted.stdout

    _, again = _verdicts(collector, "beach", 2)
    verdict = Verdict.model_validate(again)
    assert verdict.action == "review" and verdict.recheck == f"head {head}@2"
    assert verdict.key != first["key"]
    [run] = [p for p in verdict.producers if p.name == "heads"]
    assert run.evidence["versions"] == {head: 2}, "the promoted version, read at once"
    _, pills_again = _verdicts(collector, "pills", 2)
    assert pills_again["action"] == "allow" and pills_again["recheck"] == f"head {head}@2"
