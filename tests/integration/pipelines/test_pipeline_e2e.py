"""End to end on real Tansu, Redis and Ray: posts in, one verdict key per post out, nothing lost."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
import ray

from contracts.records import DeadLetter, Verdict
from contracts.review import ReviewTask
from contracts.vlm import DEFAULT_MODEL
from kafka_io.clients import OutMessage
from pipelines.config import PoolSettings
from tests.integration.pipeline_run import (
    check_every_post_has_one_verdict_key,
    malformed_messages,
    post_messages,
    publish,
    publish_in_background,
    wait_for_first_verdicts,
)


def test_500_posts_get_verdicts_review_copies_and_dead_letters(e2e_config, start_pipeline):
    config = e2e_config()
    _run, collector = start_pipeline(config)
    topic = config.topics.inputs[0]
    good = post_messages(495, topic=topic)
    bad = malformed_messages(topic)
    publish(config, good + bad)
    outputs = collector.wait_for(len(good) + len(bad))

    check_every_post_has_one_verdict_key(outputs, [m.key.decode() for m in good])
    for post_id, verdicts in outputs.verdicts.items():
        verdict = Verdict.model_validate(verdicts[0])
        assert verdict.model is not None and verdict.model.name.endswith("smolvlm")
        if verdict.queue is not None:
            review_topic = f"{config.consumer_group}.review.weapons"
            if verdict.queue == "spam":
                review_topic = "review.spam"
            copies = [
                body for key, body in outputs.by_topic[review_topic] if key == post_id.encode()
            ]
            assert copies, f"{post_id} not on {review_topic}"
            task = ReviewTask.model_validate(copies[0])
            assert task.key == verdict.key and task.post.id == post_id
    spam = Verdict.model_validate(outputs.verdicts["p00000"][0])
    assert "spam" in [rule.id for rule in spam.matched_rules]

    assert set(outputs.dead_letters) == {m.key.decode() for m in bad}
    stages = {key: DeadLetter.model_validate(v[0]).stage for key, v in outputs.dead_letters.items()}
    assert stages == {
        "bad-json": "decode",
        "no-id": "validate",
        "bad-images": "validate",
        "bad-base64": "validate",
        "broken-image": "fetch-image",
    }
    assert all(v[0]["error"] for v in outputs.dead_letters.values())


def test_killing_a_serve_replica_mid_stream_loses_nothing(e2e_config, start_pipeline):
    config = e2e_config(
        pool=PoolSettings(
            num_cpus=0.25,
            consumer_num_cpus=0.25,
            min_replicas=2,
            max_replicas=2,
            max_batch_size=8,
            max_poll_records=8,
        )
    )
    run, collector = start_pipeline(config)
    messages = post_messages(300, topic=config.topics.inputs[0])
    publisher = publish_in_background(config, messages, per_second=60)
    wait_for_first_verdicts(collector)
    replicas = [
        a
        for a in ray.util.list_named_actors(all_namespaces=True)
        if a["name"].startswith(f"SERVE_REPLICA::{run.app_names[DEFAULT_MODEL]}#vlm")
    ]
    assert len(replicas) == 2
    victim = ray.get_actor(replicas[0]["name"], namespace=replicas[0]["namespace"])
    ray.kill(victim, no_restart=True)
    publisher.join()
    outputs = collector.wait_for(len(messages))
    check_every_post_has_one_verdict_key(outputs, [m.key.decode() for m in messages])
    assert not outputs.dead_letters


def test_a_consumer_actor_killed_mid_stream_is_started_again_and_loses_nothing(
    e2e_config, start_pipeline
):
    config = e2e_config(
        model="noop",
        pool=PoolSettings(num_cpus=0.25, consumer_num_cpus=0.25, consumers=2, max_poll_records=8),
    )
    run, collector = start_pipeline(config)
    messages = post_messages(300, topic=config.topics.inputs[0])
    publisher = publish_in_background(config, messages, per_second=40)
    wait_for_first_verdicts(collector)
    victim = run.actors[0]
    ray.kill(victim, no_restart=False)  # as a crash: the process dies, the actor may restart
    publisher.join()
    outputs = collector.wait_for(len(messages), timeout_s=240)
    check_every_post_has_one_verdict_key(outputs, [m.key.decode() for m in messages])
    ray.get(victim.stats.remote(), timeout=60)  # it answers: Ray started it again
    # The GCS's own record (ray.util.state needs the dashboard, which the harness leaves off).
    state = ray._private.state.actors(actor_id=victim._actor_id.hex())
    assert state["NumRestarts"] == 1 and state["State"] == "ALIVE"


class Publisher:
    """Publishes numbered posts in small steps until told to stop; remembers what it sent."""

    def __init__(self, config, per_step: int = 10, pause_s: float = 0.2) -> None:
        self.config, self.per_step, self.pause_s = config, per_step, pause_s
        self.sent: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        topic = self.config.topics.inputs[0]
        while not self.stop.is_set():
            step = post_messages(self.per_step, topic=topic, first=len(self.sent))
            publish(self.config, step)
            self.sent += [message.key.decode() for message in step]
            self.stop.wait(self.pause_s)

    def finish(self) -> list[str]:
        self.stop.set()
        self.thread.join(60)
        return self.sent


def wait_until(condition, what: str, timeout_s: float = 180.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.2)


def test_a_second_consumer_joining_mid_stream_rebalances_without_loss(e2e_config, start_pipeline):
    config = e2e_config(
        model="noop", pool=PoolSettings(num_cpus=0.25, consumer_num_cpus=0.25, max_poll_records=8)
    )
    run, collector = start_pipeline(config)
    publisher = Publisher(config)
    try:
        wait_for_first_verdicts(collector)
        run.add_consumer()
        # Posts keep coming until the new member has a partition and has read from it.
        wait_until(
            lambda: len(stats := run.stats()) == 2 and stats[1]["consumed"] > 0,
            "the new member consumed",
        )
    finally:
        sent = publisher.finish()
    outputs = collector.wait_for(len(sent), timeout_s=240)
    check_every_post_has_one_verdict_key(outputs, sent)
    consumed = [stats["consumed"] for stats in run.stats()]
    assert len(consumed) == 2 and all(consumed), f"a member never consumed: {consumed}"


def test_redis_stopped_and_restarted_mid_stream_only_costs_speed(
    e2e_config, start_pipeline, redis_factory
):
    import redis

    redis_server = redis_factory()
    config = e2e_config(redis_url=redis_server.url)
    _run, collector = start_pipeline(config)
    messages = post_messages(600, topic=config.topics.inputs[0])
    publisher = publish_in_background(config, messages, per_second=40)
    wait_for_first_verdicts(collector)
    redis_server.stop()
    down_at = collector.resolved()
    wait_for_first_verdicts(collector, count=down_at + 40)  # moderating without Redis
    redis_server.start()  # the same port, empty: it kept nothing
    client = redis.Redis.from_url(redis_server.url)
    publisher.join()
    outputs = collector.wait_for(len(messages))
    check_every_post_has_one_verdict_key(outputs, [m.key.decode() for m in messages])
    assert not outputs.dead_letters
    assert collector.resolved() > down_at + 40
    # The pipeline goes back to the restarted server by itself: posts that come once the cache's
    # pause after the failure (`retry_after_s`) has run out are cached there again. New posts
    # keep coming until they are, since the backlog may all be done within that pause.
    deadline, sent = time.monotonic() + 90, len(messages)
    while client.dbsize() == 0:
        assert time.monotonic() < deadline, "timed out waiting until answers cached after restart"
        publish(config, post_messages(2, topic=config.topics.inputs[0], first=sent))
        sent += 2
        time.sleep(1.0)


def test_a_model_that_cannot_load_fails_start_with_the_replicas_reason(e2e_config, ray_local):
    from pipelines.exceptions import ReplicaStartFailed
    from pipelines.producer_registry import pipeline_registry
    from pipelines.runner import PipelineRun
    from policies.loader import load_policy_dir

    config = e2e_config(model="/nonexistent/checkpoint")
    run = PipelineRun(config)
    with pytest.raises(ReplicaStartFailed) as failed:
        run.start(load_policy_dir(config.policy_dir, registry=pipeline_registry(config)))
    assert failed.value.reason.startswith("the model replica did not start: No checkpoint")
    assert "/nonexistent/checkpoint" in failed.value.reason


SHOUTING = """
id: shouting
version: 1
signals:
  shout: true
  questions:
    offsite:
      ask: "Does this post ask the buyer to pay or talk outside the platform?"
      about: post
rules:
  - id: all-caps
    when: shout > 0.9
    action: escalate
    priority: 0
  - id: offsite
    when: answers.offsite > 0.99
    action: review
"""


def test_a_configured_producer_and_whole_post_questions_through_kafka(e2e_config, start_pipeline):
    config = e2e_config().model_copy(update={"producers": ["tests.producers:ShoutSignals"]})
    (Path(config.policy_dir) / "shouting.yaml").write_text(SHOUTING)
    _run, collector = start_pipeline(config)
    topic = config.topics.inputs[0]
    picture = post_messages(1, topic=topic)[0]
    two_images = json.loads(picture.value) | {"id": "pictures", "text": "pay me elsewhere"}
    two_images["images"] = two_images["images"] * 2
    posts = [
        {"id": "loud", "text": "PAY ME NOW ON TELEGRAM"},
        {"id": "quiet", "text": "message me on the other app, we settle there"},
        two_images,
    ]
    publish(config, [OutMessage(topic, json.dumps(p).encode(), p["id"].encode()) for p in posts])
    outputs = collector.wait_for(len(posts))
    verdicts = {
        post_id: next(v for v in found if v["policy"]["id"] == "shouting")
        for post_id, found in outputs.verdicts.items()
    }
    assert verdicts["loud"]["action"] == "escalate"
    assert verdicts["loud"]["signals"]["shout"] == 1.0
    for post_id in ("quiet", "pictures"):
        answer = verdicts[post_id]["signals"]["answers"]["offsite"]
        assert 0.0 < answer < 1.0, f"{post_id}: the model's probability, not a fixed value"
    assert verdicts["quiet"]["signals"]["shout"] == 0.0
