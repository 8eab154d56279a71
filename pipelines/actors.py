"""The Kafka consumer as a Ray actor: one member of the consumer group per actor."""

from __future__ import annotations

import gc
import logging
from typing import Any

import ray

from kafka_io.clients import batch_consumer, kafka_writer
from pipelines.collector import tune_collector
from pipelines.config import config_of
from pipelines.consumer import ModerationLoop
from pipelines.local import build_moderator
from pipelines.producer_registry import pipeline_registry
from pipelines.recheck import recent_sinks
from pipelines.serving import serve_sources, signal_app_name, signal_deployment_name
from pipelines.specialist_pool import serve_specialists
from pipelines.telemetry import install_exporters
from sinks.build import build_sinks, writes_topics
from sinks.kafka_topics import KafkaSink

log = logging.getLogger(__name__)


# Two threads: one runs the loop, the other takes `stop` and `stats` calls meanwhile.
@ray.remote(max_concurrency=2)  # type: ignore[call-overload]  # ray's stubs lack actor options
class ConsumerActor:
    """Wraps a ModerationLoop whose signals come from each model's Serve replica pool."""

    def __init__(self, config: dict[str, Any]) -> None:
        from ray import serve

        from policies import ENGINE
        from policies.watch import PolicyWatcher

        log.info("policy engine: %s", ENGINE)
        settings = config_of(config)
        install_exporters(settings.telemetry)
        handles = {
            model: serve.get_deployment_handle(
                signal_deployment_name(model), app_name=signal_app_name(settings, model)
            )
            for model in settings.model_names()
        }
        registry = pipeline_registry(settings)
        self.watcher = PolicyWatcher(settings.policy_dir, registry=registry).start()
        sources = serve_sources(handles, settings.pool.replica_grpc_max_bytes)
        specialists = serve_specialists(settings)  # none: they run here (`placement: consumer`)
        moderator = build_moderator(
            settings, self.watcher, sources, registry=registry, specialists=specialists
        )
        consumer = batch_consumer(
            settings.kafka,
            settings.topics.inputs,
            settings.consumer_group,
            **settings.consumer_overrides,
        )
        topics = writes_topics(settings.sinks)
        sink = KafkaSink(kafka_writer(settings.kafka), settings.topics, verdicts=topics)
        others = [*build_sinks(settings.sinks), *recent_sinks(settings)]
        pool = settings.pool
        collector = tune_collector(pool.consumer_gc_thresholds, pool.consumer_gc_thresholds_behind)
        self.loop = ModerationLoop(
            consumer, sink, moderator, pool, settings.retry, sinks=others, collector=collector
        )
        # What setup built (modules, compiled policies, clients) lives as long as the actor:
        # out of the collector's generations, each full collection scans only per-batch objects
        # (in-process, `bench/moderate.py`, collections cost about a tenth of the CPU time).
        gc.freeze()

    def run(self) -> dict[str, int]:
        """Moderate until `stop`; returns the loop's counters."""
        try:
            return self.loop.run().as_dict()
        finally:
            self.watcher.stop()

    def stop(self) -> None:
        """Drain in-flight batches, commit, and make `run` return."""
        self.loop.stop()

    def stats(self) -> dict[str, int]:
        """Counters so far."""
        return self.loop.stats.as_dict()
