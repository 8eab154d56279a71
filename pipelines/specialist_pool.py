"""Ray Serve: the specialist pool, where nsfw, ocr, banks and profanity run with `placement: pool`.

`SpecialistReplica` only wraps `pipelines.specialist_work.InProcessSpecialists`, built from the
same config as the consumers (its producers, their settings, the image limits); consumers reach
it through `ServeSpecialists`, which has the in-process source's `compute`. The pool has its own
replicas, CPU share and autoscaling (`specialists.pool`), apart from the consumers.
"""

# No `from __future__ import annotations`: Serve reads the deployment's signatures at run time.
import asyncio
from typing import Any

from ray import serve
from ray.serve.handle import DeploymentHandle

from contracts.producers import bind_all
from pipelines.config import PipelineConfig, config_of
from pipelines.model_settings import actor_resources, autoscaling_config
from pipelines.producer_registry import pipeline_registry
from pipelines.replica_calls import ReplicaCalls
from pipelines.specialist_work import InProcessSpecialists, SpecialistAnswer, SpecialistWork
from pipelines.telemetry import install_exporters

SPECIALIST_DEPLOYMENT = "specialists"


@serve.deployment(name=SPECIALIST_DEPLOYMENT)
class SpecialistReplica:
    """The specialist producers on a CPU share of their own; each call is one decoding group."""

    def __init__(self, config: dict[str, Any]) -> None:
        settings = config_of(config)
        install_exporters(settings.telemetry)
        registry = pipeline_registry(settings)
        bind_all(registry, settings.producer_context())
        self.specialists = InProcessSpecialists(registry, settings.images)

    async def __call__(self, work: SpecialistWork) -> list[SpecialistAnswer]:
        """One answer per post of `work`; the producers run off the event loop."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, self.specialists.compute, work)


class ServeSpecialists:
    """A SpecialistSource backed by the pool; a failed or timed-out call raises to the gatherer."""

    def __init__(
        self, handle: DeploymentHandle, name: str, timeout_s: float = 300.0, grpc_max_bytes: int = 0
    ) -> None:
        self.calls = ReplicaCalls(handle, grpc_max_bytes)
        self.name = name
        self.timeout_s = timeout_s

    def compute(self, work: SpecialistWork) -> list[SpecialistAnswer]:
        """One call per decoding group and batch; Serve spreads the calls over the replicas.
        Calls carrying at most `grpc_max_bytes` go by value (`pipelines.replica_calls`)."""
        size = sum(sum(map(len, one.images)) + len(one.post.text or "") for one in work.posts)
        answers: list[SpecialistAnswer] = self.calls.call(work, size, self.timeout_s)
        return answers


def pooled(config: PipelineConfig) -> bool:
    """True when `config` runs its specialists on the pool (`specialists.placement: pool`)."""
    return config.specialists.placement == "pool"


def specialist_app_name(config: PipelineConfig) -> str:
    """The Serve application of the specialist pool; one per consumer group."""
    return f"vlmod-specialists-{config.consumer_group}"


def specialist_deployment(config: PipelineConfig) -> Any:
    """The SpecialistReplica deployment, sized and autoscaled as `specialists.pool` says."""
    pool = config.specialists.pool
    deployment: Any = SpecialistReplica  # @serve.deployment made it a Deployment
    return deployment.options(
        autoscaling_config=autoscaling_config(pool),
        max_ongoing_requests=max(2, 2 * int(pool.target_ongoing_requests)),
        ray_actor_options=actor_resources(pool.num_cpus, pool.num_gpus, pool.resources),
    ).bind(config.model_dump(mode="json"))


def serve_specialists(config: PipelineConfig) -> ServeSpecialists | None:
    """The pool's source for a consumer or the API, when `config` places specialists there."""
    if not pooled(config):
        return None
    app_name = specialist_app_name(config)
    handle = serve.get_deployment_handle(SPECIALIST_DEPLOYMENT, app_name=app_name)
    grpc_max_bytes = config.pool.replica_grpc_max_bytes
    return ServeSpecialists(handle, repr(app_name), grpc_max_bytes=grpc_max_bytes)
