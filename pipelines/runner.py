"""Starts the streaming pipeline on a running Ray: topics, each model's replica pool, the
specialist pool (`specialists.placement: pool`), consumers."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from typing import Any

import ray

from contracts.vlm import DEFAULT_MODEL
from kafka_io.clients import create_topics
from pipelines.actors import ConsumerActor
from pipelines.config import PipelineConfig
from pipelines.consumer_scaling import ConsumerScaler, ConsumerScaling
from pipelines.exceptions import ReplicaStartFailed
from pipelines.serving import (
    actor_resources,
    signal_app_name,
    signal_deployment,
    signal_deployment_name,
    with_absolute_paths,
)
from pipelines.specialist_pool import (
    SPECIALIST_DEPLOYMENT,
    pooled,
    specialist_app_name,
    specialist_deployment,
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
        self.app_names = {m: signal_app_name(self.config, m) for m in self.config.model_names()}
        self.specialist_app = specialist_app_name(self.config) if pooled(self.config) else None
        self.actors: list[Any] = []
        self.runs: list[Any] = []
        self.retired: list[dict[str, int]] = []  # the counters of consumers removed by scaling
        self.scaler: ConsumerScaler | None = None
        self._members = threading.Lock()  # the scaler resizes while the driver reads stats

    def start(self, policy_set: PolicySet) -> None:
        """Create missing topics, deploy each model's replica pool and the specialist pool, start
        the consumer actors."""
        from ray import serve

        if self.config.topics.create:
            names = output_topics(self.config, policy_set)
            create_topics(self.config.kafka, names, partitions=self.config.topics.partitions)
        serve.start(proxy_location="Disabled")
        for model in self.app_names:
            self._deploy(model)
        if self.specialist_app is not None:
            self._deploy_specialists(self.specialist_app)
        for _ in range(self.config.pool.consumers):
            self.add_consumer()
        self._follow_lag()

    def _follow_lag(self) -> None:
        """Size the consumer group from its lag when `pool.max_consumers` allows more."""
        from kafka_io.lag import GroupLagReader

        pool = self.config.pool
        if pool.max_consumers is None or pool.max_consumers == pool.consumers:
            return
        reader = GroupLagReader(
            self.config.kafka, self.config.consumer_group, self.config.topics.inputs
        )
        self.scaler = ConsumerScaler(
            ConsumerScaling.of(pool),
            reader.read,
            self.resize,
            self.consumer_count,
            pool.lag_check_s,
            on_stop=reader.close,
        )
        self.scaler.start()

    def _deploy(self, model: str) -> None:
        """Run `model`'s replica pool; on failure, remove every pool started and say why."""
        from ray import serve

        app_name = self.app_names[model]
        try:
            serve.run(signal_deployment(self.config, model), name=app_name, route_prefix=None)
        except RuntimeError as error:
            reason = replica_failure(app_name, signal_deployment_name(model)) or str(error)
            self._delete_apps()
            which = "model replica" if model == DEFAULT_MODEL else f"replica of model {model!r}"
            raise ReplicaStartFailed(f"the {which} did not start: {reason}") from error
        log.info("replica pool %r is up", app_name)

    def _deploy_specialists(self, app_name: str) -> None:
        """Run the specialist pool; on failure, remove every pool started and say why."""
        from ray import serve

        try:
            serve.run(specialist_deployment(self.config), name=app_name, route_prefix=None)
        except RuntimeError as error:
            reason = replica_failure(app_name, SPECIALIST_DEPLOYMENT) or str(error)
            self._delete_apps()
            raise ReplicaStartFailed(f"the specialist pool did not start: {reason}") from error
        log.info("specialist pool %r is up", app_name)

    def _delete_apps(self) -> None:
        """Undeploy every pool of this run: the models' and the specialists'."""
        from ray import serve

        for app_name in [*self.app_names.values(), self.specialist_app]:
            if app_name is not None:
                serve.delete(app_name)

    def add_consumer(self) -> Any:
        """One more member of the consumer group; the group rebalances its partitions."""
        actor_class: Any = ConsumerActor  # @ray.remote made it an ActorClass
        pool = self.config.pool
        options = actor_resources(pool.consumer_num_cpus, 0.0, pool.consumer_resources)
        # A consumer whose process dies (a crash, OOM, its node lost) is started again by Ray
        # and its `run` call goes on in the new process: the group is never left short.
        options |= {"max_restarts": -1, "max_task_retries": -1}
        actor = actor_class.options(**options).remote(self.config.model_dump(mode="json"))
        with self._members:
            self.actors.append(actor)
            self.runs.append(actor.run.remote())
        return actor

    def remove_consumer(self, timeout_s: float = 120.0) -> None:
        """Drain the newest consumer (its batches finish and are committed) and let it go;
        the group gives its partitions to the others."""
        with self._members:
            actor, run = self.actors.pop(), self.runs.pop()
        actor.stop.remote()
        [final] = _gather([run], timeout_s)
        if final is not None:
            self.retired.append(final)
        ray.kill(actor)

    def consumer_count(self) -> int:
        """Consumer actors in the group now."""
        with self._members:
            return len(self.actors)

    def resize(self, count: int) -> None:
        """Add or drain consumers until the group has `count`."""
        while self.consumer_count() < count:
            self.add_consumer()
        while self.consumer_count() > count:
            self.remove_consumer()

    def stats(self) -> list[dict[str, int]]:
        """Each consumer's counters, those removed by scaling included."""
        with self._members:
            refs = [a.stats.remote() for a in self.actors]
        return [*self.retired, *(s for s in _gather(refs) if s is not None)]

    def stop(self, timeout_s: float = 120.0) -> list[dict[str, int] | None]:
        """Drain every consumer (in-flight batches finish and are committed), then undeploy."""
        if self.scaler is not None:
            self.scaler.stop()
        _gather([actor.stop.remote() for actor in self.actors], timeout_s)
        results = _gather(self.runs, timeout_s)
        self._delete_apps()
        return results


def replica_failure(app_name: str, deployment_name: str | None = None) -> str | None:
    """The last line of the error a failed model replica reported to Serve, if any."""
    from ray import serve

    application = serve.status().applications.get(app_name)
    name = deployment_name or signal_deployment_name()
    deployment = application.deployments.get(name) if application else None
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
