"""Starts the streaming pipeline on a running Ray: topics, the replica pool, the consumer actors."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import ray

from pipelines.actors import ConsumerActor
from pipelines.config import PipelineConfig
from pipelines.exceptions import ReplicaStartFailed
from pipelines.kafka_io import create_topics
from pipelines.serving import (
    SIGNAL_DEPLOYMENT,
    signal_app_name,
    signal_deployment,
    with_absolute_paths,
)
from policies.policy_set import PolicySet

log = logging.getLogger(__name__)


def review_topics(policy_set: PolicySet) -> set[str]:
    """Every review-queue topic a rule of an active policy can route to."""
    return {topic for policy in policy_set.active for topic in policy.routed_queues().values()}


def output_topics(config: PipelineConfig, policy_set: PolicySet) -> list[str]:
    """All topics the pipeline reads or writes."""
    topics = config.topics
    fixed = [*topics.inputs, topics.verdicts, topics.dead_letter, topics.shadow]
    return fixed + sorted(review_topics(policy_set))


class PipelineRun:
    """One running pipeline: deploy with `start`, grow with `add_consumer`, drain with `stop`."""

    def __init__(self, config: PipelineConfig) -> None:
        self.config = with_absolute_paths(config)
        self.app_name = signal_app_name(self.config)
        self.actors: list[Any] = []
        self.runs: list[Any] = []

    def start(self, policy_set: PolicySet) -> None:
        """Create missing topics, deploy the replica pool, start the consumer actors."""
        from ray import serve

        if self.config.topics.create:
            names = output_topics(self.config, policy_set)
            create_topics(self.config.kafka, names, partitions=self.config.topics.partitions)
        serve.start(proxy_location="Disabled")
        try:
            serve.run(signal_deployment(self.config), name=self.app_name, route_prefix=None)
        except RuntimeError as error:
            reason = replica_failure(self.app_name) or str(error)
            serve.delete(self.app_name)
            raise ReplicaStartFailed(f"the model replica did not start: {reason}") from error
        log.info("replica pool %r is up", self.app_name)
        for _ in range(self.config.pool.consumers):
            self.add_consumer()

    def add_consumer(self) -> Any:
        """One more member of the consumer group; the group rebalances its partitions."""
        actor_class: Any = ConsumerActor  # @ray.remote made it an ActorClass
        actor = actor_class.options(num_cpus=self.config.pool.consumer_num_cpus).remote(
            self.config.model_dump(mode="json")
        )
        self.actors.append(actor)
        self.runs.append(actor.run.remote())
        return actor

    def stats(self) -> list[dict[str, int]]:
        """Each live consumer's counters."""
        return [s for s in _gather([a.stats.remote() for a in self.actors]) if s is not None]

    def stop(self, timeout_s: float = 120.0) -> list[dict[str, int] | None]:
        """Drain every consumer (in-flight batches finish and are committed), then undeploy."""
        from ray import serve

        _gather([actor.stop.remote() for actor in self.actors], timeout_s)
        results = _gather(self.runs, timeout_s)
        serve.delete(self.app_name)
        return results


def replica_failure(app_name: str) -> str | None:
    """The last line of the error a failed model replica reported to Serve, if any."""
    from ray import serve

    application = serve.status().applications.get(app_name)
    deployment = application.deployments.get(SIGNAL_DEPLOYMENT) if application else None
    lines = [line.strip() for line in (deployment.message if deployment else "").splitlines()]
    errors = [line for line in lines if line and not line.startswith(("File ", "^", "Traceback"))]
    if not errors:
        return None
    _, _, reason = errors[-1].rpartition("Error: ")
    return reason or errors[-1]


def _gather(refs: Iterable[Any], timeout_s: float = 30.0) -> list[Any]:
    """Each ref's value, None for actors that died (their partitions went to the others)."""
    values = []
    for ref in refs:
        try:
            values.append(ray.get(ref, timeout=timeout_s))
        except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError) as error:
            log.warning("a consumer did not answer: %s", error)
            values.append(None)
    return values
