"""The model pool and the consumer group follow the backlog: each grows to its max under a
backlog and shrinks back to its min once the backlog is gone, with every post moderated once."""

from __future__ import annotations

from ray import serve

from contracts.vlm import DEFAULT_MODEL
from demo.harness import wait_until
from pipelines.config import PoolSettings
from pipelines.serving import signal_deployment_name
from tests.integration.pipeline_run import (
    check_every_post_has_one_verdict_key,
    post_messages,
    publish_in_background,
)


def running_replicas(app: str) -> int:
    """The model pool's replicas in state RUNNING, as Serve reports them."""
    application = serve.status().applications.get(app)
    if application is None:
        return 0
    deployment = application.deployments[signal_deployment_name(DEFAULT_MODEL)]
    return deployment.replica_states.get("RUNNING", 0)


def test_the_pool_and_the_consumers_grow_under_a_backlog_and_shrink_when_idle(
    e2e_config, start_pipeline
):
    pool = PoolSettings(
        num_cpus=0.5,
        consumer_num_cpus=0.25,
        min_replicas=1,
        max_replicas=2,
        target_ongoing_requests=1,  # a consumer keeps up to 4 calls of one post in flight
        upscale_delay_s=1,
        downscale_delay_s=2,
        look_back_period_s=12,  # callers report every 10 s; Serve's 30 s window waits longer
        max_batch_size=1,
        max_poll_records=1,
        consumers=1,
        max_consumers=2,  # the input topics have 2 partitions
        lag_per_consumer=100,
        lag_check_s=1,
        consumer_downscale_delay_s=2,
    )
    config = e2e_config(pool=pool)
    run, collector = start_pipeline(config)
    app = run.app_names[DEFAULT_MODEL]
    assert running_replicas(app) == 1
    assert run.consumer_count() == 1
    # A backlog at once, every image new (no repost the replica has answered before): about a
    # minute of work for one replica here, which outlasts Serve's first decision to grow (a
    # report or two in: callers report their queues every 10 s, averaged over 12 s).
    messages = post_messages(1500, topic=config.topics.inputs[0], images=1500)
    publisher = publish_in_background(config, messages, per_second=0)
    wait_until(lambda: run.consumer_count() == 2, what="a second consumer", timeout_s=60)
    wait_until(lambda: running_replicas(app) == 2, what="a second replica", timeout_s=240)
    grown_at = collector.resolved()
    assert grown_at < len(messages), "the pool grew only after the backlog was gone"
    publisher.join()
    outputs = collector.wait_for(len(messages), timeout_s=300)
    check_every_post_has_one_verdict_key(outputs, [m.key.decode() for m in messages])
    assert not outputs.dead_letters
    wait_until(lambda: running_replicas(app) == 1, what="the pool back at one", timeout_s=120)
    wait_until(lambda: run.consumer_count() == 1, what="one consumer again", timeout_s=60)
    assert sum(stats["consumed"] for stats in run.stats()) >= len(messages)
