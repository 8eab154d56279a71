"""Ray Serve: a replica pool per model with dynamic batching, and the HTTP moderation API.

`SignalReplica` only wraps `pipelines.replica_core.SignalComputer`; consumers reach it through
`ServeSignalSource`, which has the same `compute` as the in-process computer. Each model of
the config (`model:`, `models:`) is its own deployment, sized by its own pool settings.
"""

# No `from __future__ import annotations` here: @serve.ingress rebuilds the FastAPI routes and
# must resolve the route annotations (the `Request` parameter) at run time.
import asyncio
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from ray import serve
from ray.serve.handle import DeploymentHandle

from contracts.records import DeadLetter, ModelRef, Verdict
from contracts.vlm import DEFAULT_MODEL, TaskKind
from kafka_io.tracing import context_from_headers
from pipelines.config import PipelineConfig, config_of
from pipelines.local import LocalModerator
from pipelines.model_settings import actor_resources, autoscaling_config
from pipelines.replica_calls import ReplicaCalls
from pipelines.signal_records import Failure, InferenceRequest, InferenceResult
from pipelines.signal_source import SignalSource
from pipelines.telemetry import install_exporters, telemetry
from pipelines.wiring import build_signal_source

log = logging.getLogger(__name__)

SIGNAL_DEPLOYMENT = "vlm"
API_DEPLOYMENT = "moderation-api"
# What a 422 tells the caller: never the request body, nor the dead letter's base64 original.
DEAD_LETTER_FIELDS = frozenset({"stage", "error_type", "error", "post_id"})

Outcome = tuple[Verdict | None, DeadLetter | None]


@serve.deployment(name=SIGNAL_DEPLOYMENT)
class SignalReplica:
    """One model on its GPU share; requests from every consumer are batched together."""

    def __init__(self, config: dict[str, Any], model: str = DEFAULT_MODEL) -> None:
        settings = PipelineConfig.model_validate(config)
        install_exporters(settings.telemetry)
        self.source: SignalSource = build_signal_source(settings, model)
        self.telemetry = telemetry()
        pool = settings.replica_pool(model)
        batcher: Any = self.compute_batch  # @serve.batch adds these setters at run time
        batcher.set_max_batch_size(pool.max_batch_size)
        batcher.set_batch_wait_timeout_s(pool.batch_wait_timeout_s)

    def model(self) -> ModelRef:
        """The model this replica serves."""
        return self.source.model

    @serve.batch(max_batch_size=4, batch_wait_timeout_s=0.01)
    async def compute_batch(
        self, calls: list[list[InferenceRequest]]
    ) -> list[list[InferenceResult]]:
        """One model batch over the micro-batches of any number of consumers."""
        requests = [request for call in calls for request in call]
        spans = [
            self.telemetry.tracer.start_span(
                "infer",
                context=context_from_headers(r.trace_headers),
                attributes={"post.id": r.post_id, "batch.posts": len(requests)},
            )
            for r in requests
        ]
        try:
            loop = asyncio.get_running_loop()
            # The forward pass runs off the event loop so the replica keeps taking requests.
            results = await loop.run_in_executor(None, self.source.compute, requests)
        finally:
            for span in spans:
                span.end()
        return split_like(calls, results)

    async def __call__(self, requests: list[InferenceRequest]) -> list[InferenceResult]:
        """Moderation signals for one consumer micro-batch, one result per request."""
        results: list[InferenceResult] = await self.compute_batch(list(requests))
        return results


def split_like(
    calls: Sequence[Sequence[object]], flat: list[InferenceResult]
) -> list[list[InferenceResult]]:
    """`flat` cut back into one list per call, in order."""
    out, start = [], 0
    for call in calls:
        out.append(flat[start : start + len(call)])
        start += len(call)
    return out


class ServeSignalSource:
    """A SignalSource backed by the replica pool; a lost replica fails only its own posts."""

    def __init__(
        self, handle: DeploymentHandle, timeout_s: float = 300.0, grpc_max_bytes: int = 0
    ) -> None:
        self.handle = handle
        self.calls = ReplicaCalls(handle, grpc_max_bytes)
        self.timeout_s = timeout_s
        self._model: ModelRef | None = None

    @property
    def model(self) -> ModelRef:
        """The model the replicas serve (asked once, on first use)."""
        if self._model is None:
            self._model = self.handle.model.remote().result(timeout_s=self.timeout_s)
        return self._model

    def compute(self, requests: Sequence[InferenceRequest]) -> list[InferenceResult]:
        """One call per micro-batch; Serve combines the calls of all consumers into batches."""
        try:
            results: list[InferenceResult] = self.calls.call(
                list(requests), call_bytes(requests), self.timeout_s
            )
            return results
        except Exception as error:  # replica died or timed out: the caller retries these posts
            log.warning("replica call for %d posts failed: %s", len(requests), error)
            return [InferenceResult(r.post_id, failure=Failure.of(error)) for r in requests]


def signal_app_name(config: PipelineConfig, model: str = DEFAULT_MODEL) -> str:
    """The Serve application of a model's replica pool; one per consumer group and model."""
    base = f"vlmod-signals-{config.consumer_group}"
    return base if model == DEFAULT_MODEL else f"{base}-{model}"


def signal_deployment_name(model: str = DEFAULT_MODEL) -> str:
    """The Serve deployment of a model's replicas: `vlm`, or `vlm-<model>` for a named one."""
    return SIGNAL_DEPLOYMENT if model == DEFAULT_MODEL else f"{SIGNAL_DEPLOYMENT}-{model}"


def call_bytes(requests: Sequence[InferenceRequest]) -> int | None:
    """The bytes a model call carries (its images and text); None where it asks for
    embeddings, whose answer (hundreds of floats a post) may be large."""
    size = 0
    for request in requests:
        if any(task.kind is TaskKind.EMBED for task in request.tasks):
            return None
        size += sum(map(len, request.images)) + len(request.text or "")
    return size


def serve_sources(
    handles: dict[str, DeploymentHandle], grpc_max_bytes: int = 0
) -> dict[str, SignalSource]:
    """A ServeSignalSource per model, from each model's deployment handle; calls carrying at
    most `grpc_max_bytes` go by value (`pipelines.replica_calls`)."""
    return {
        model: ServeSignalSource(handle, grpc_max_bytes=grpc_max_bytes)
        for model, handle in handles.items()
    }


def with_absolute_paths(config: PipelineConfig) -> PipelineConfig:
    """The config with `policy_dir` made absolute, for actors whose working directory differs."""
    return config.model_copy(update={"policy_dir": str(Path(config.policy_dir).resolve())})


def signal_deployment(config: PipelineConfig, model: str = DEFAULT_MODEL) -> Any:
    """The SignalReplica deployment of `model`, sized and autoscaled as its pool says."""
    pool = config.replica_pool(model)
    deployment: Any = SignalReplica  # @serve.deployment made it a Deployment
    return deployment.options(
        name=signal_deployment_name(model),
        autoscaling_config=autoscaling_config(pool),
        max_ongoing_requests=max(2 * pool.max_batch_size, 2 * int(pool.target_ongoing_requests)),
        ray_actor_options=actor_resources(pool.num_cpus, pool.num_gpus, pool.resources),
    ).bind(config.model_dump(mode="json"), model)


async def read_limited(request: Request, max_bytes: int) -> bytes | None:
    """The request body, or None once it is known to pass `max_bytes` (it is never held whole)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        return None
    chunks, total = [], 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > max_bytes:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


async def moderation_response(
    request: Request, moderate_one: Callable[[bytes], Outcome], max_bytes: int
) -> JSONResponse:
    """200 with the verdict, 413 for a body over `max_bytes`, 422 with the reason, or 500."""
    try:
        body = await read_limited(request, max_bytes)
        if body is None:
            reason = f"request body is over the limit of {max_bytes} bytes (api.max_request_bytes)"
            return error_response(413, reason)
        verdict, dead_letter = await run_in_threadpool(moderate_one, body)
    except Exception as error:  # anything unplanned still answers with a reason
        log.exception("POST /v1/moderate failed")
        return error_response(500, f"internal error: {error_summary(error)}")
    if dead_letter is not None:
        detail = dead_letter.model_dump(mode="json", include=set(DEAD_LETTER_FIELDS))
        return JSONResponse({"detail": detail}, status_code=422)
    if verdict is None:
        return error_response(500, "no active policy gave a verdict; check policy_dir")
    return JSONResponse(verdict.model_dump(mode="json"))


def error_response(status: int, reason: str) -> JSONResponse:
    """A JSON error body `{"detail": reason}`."""
    return JSONResponse({"detail": reason}, status_code=status)


def error_summary(error: BaseException, limit: int = 300) -> str:
    """`Type: first line of the message`, cut to `limit` characters."""
    message = str(error).strip().splitlines()
    text = f"{type(error).__name__}: {message[0]}" if message else type(error).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


api = FastAPI(title="vlm-moderation", description="Moderate one post synchronously.")


@serve.deployment(name=API_DEPLOYMENT)
@serve.ingress(api)
class ModerationApi:
    """`POST /v1/moderate`: a Post in, the most severe active Verdict out."""

    def __init__(
        self,
        config: dict[str, Any],
        signals: dict[str, DeploymentHandle],
        specialists: DeploymentHandle | None = None,
    ) -> None:
        from pipelines.specialist_pool import SPECIALIST_DEPLOYMENT, ServeSpecialists

        settings = config_of(config)
        install_exporters(settings.telemetry)
        self.max_request_bytes = settings.api.max_request_bytes
        grpc_max_bytes = settings.pool.replica_grpc_max_bytes
        on_pool = None  # the app's own specialist deployment, with `placement: pool`
        if specialists is not None:
            on_pool = ServeSpecialists(
                specialists, repr(SPECIALIST_DEPLOYMENT), grpc_max_bytes=grpc_max_bytes
            )
        sources = serve_sources(signals, grpc_max_bytes)
        self.moderator = LocalModerator.from_config(settings, sources, on_pool)

    @api.post("/v1/moderate")
    async def moderate(self, request: Request) -> JSONResponse:
        """Moderate the raw body as a Kafka message; 413, 422 or 500 with a short reason."""
        return await moderation_response(
            request, self.moderator.moderate_one, self.max_request_bytes
        )

    @api.get("/healthz")
    def healthz(self) -> dict[str, str]:
        """Liveness."""
        return {"status": "ok"}


def build_app(args: dict[str, Any]) -> Any:
    """Application builder for `serve run pipelines.serving:build_app` and deploy/serve.yaml."""
    from pipelines.producer_registry import pipeline_registry
    from policies.loader import load_policy_dir

    config = with_absolute_paths(config_of(args))
    registry = pipeline_registry(config)
    load_policy_dir(config.policy_dir, registry=registry)  # no active policy, no app
    deployment: Any = ModerationApi  # @serve.deployment made it a Deployment
    from pipelines.specialist_pool import pooled, specialist_deployment

    models = {model: signal_deployment(config, model) for model in config.model_names()}
    specialists = specialist_deployment(config) if pooled(config) else None
    return deployment.bind(config.model_dump(mode="json"), models, specialists)
