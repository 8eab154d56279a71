"""Steps fetch and compute: one stage's producers over a batch of posts.

A stage fetches the images its producers read, runs its consumer-side producers here (in
registration order, so a producer reading another's values runs after it) or, those of
specialist cost with `specialists.placement: pool`, on the specialist pool (`pipelines.pooled`,
the cache kept here), and ships its model tasks to each of its models' replica pools in one
call per batch (`pipelines.stages`: the model's stage runs once per model cost rank, cheapest
first). Transient failures are retried with backoff; a post that keeps failing ends as a dead
letter.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from contracts.backoff import backoff_delay
from contracts.errors import Stage
from contracts.producers import (
    Cost,
    Input,
    Placement,
    ProducerRegistry,
    SignalProducer,
)
from contracts.records import InputChange, InputChangeKind, ProducerRun
from pipelines.config import RetrySettings
from pipelines.journey import Journey
from pipelines.model_tasks import (
    answer_without_model,
    has_open_requests,
    inference_request,
    open_requests,
    record_model_runs,
)
from pipelines.pooled import PooledSpecialists
from pipelines.producer_runs import cache_keys, from_cache, keep, producer_job, to_cache
from pipelines.retry import should_retry
from pipelines.shared_images import SHARED_IMAGES, Fit, chunks, decoding_groups
from pipelines.signal_records import Failure, InferenceRequest, InferenceResult
from pipelines.specialist_work import SpecialistSource, timed_compute
from pipelines.stages import CostStage, ModelSources, stages_of
from pipelines.telemetry import Telemetry

if TYPE_CHECKING:
    from operators.cache import SignalCache
    from operators.images import ImageLoader

log = logging.getLogger(__name__)


@dataclass
class SignalGatherer:
    """Computes what each post's plan asks of one stage's producers and models."""

    registry: ProducerRegistry
    models: ModelSources
    loader: ImageLoader
    retry: RetrySettings
    telemetry: Telemetry
    cache: SignalCache | None = None  # values of specialist producers, by content
    sleep: Callable[[float], None] = time.sleep
    fetch_pool: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(8, thread_name_prefix="fetch")
    )
    # `specialists.placement: pool`: where the specialist-cost producers run instead of here
    specialists: SpecialistSource | None = None

    @property
    def pooled(self) -> PooledSpecialists | None:
        """The specialist pool's client, with this gatherer's cache; none without a pool."""
        if self.specialists is None:
            return None
        return PooledSpecialists(
            self.specialists, self.registry, self.retry, self.telemetry, self.cache
        )

    def stages(self) -> list[CostStage]:
        """The stages to run, cheapest first: each cost class, the model's once per model rank."""
        on_replica = {p.cost for p in self.registry if p.placement is Placement.REPLICA}
        return stages_of(self.registry.costs(), on_replica, self.models)

    def gather(self, stage: CostStage, journeys: Sequence[Journey]) -> None:
        """Steps fetch and compute for `stage`, retrying transient failures with backoff."""
        producers = [p for p in self.registry if p.cost == stage.cost]
        pending = [j for j in journeys if j.live and _has_work(j, producers, stage.models)]
        attempt = 0
        while pending:
            attempt += 1
            self._attempt(pending, producers, stage.models, attempt)
            pending = self._to_retry(pending, attempt)

    def _to_retry(self, journeys: Sequence[Journey], attempt: int) -> list[Journey]:
        retrying = [
            j
            for j in journeys
            if j.failure and should_retry(j.failure.retryable, attempt, self.retry.max_attempts)
        ]
        if retrying:
            delay = backoff_delay(
                attempt, base_s=self.retry.backoff_base_s, cap_s=self.retry.backoff_cap_s
            )
            log.info("retrying %d posts in %.2fs (attempt %d)", len(retrying), delay, attempt)
            self.sleep(delay)
            for journey in retrying:
                journey.failure = None
        return retrying

    def _attempt(
        self,
        journeys: Sequence[Journey],
        producers: list[SignalProducer],
        models: Sequence[str],
        attempt: int = 1,
    ) -> None:
        for journey in journeys:
            journey.attempts += 1
        unfetched = [j for j in journeys if j.images is None]
        self._fetch([j for j in unfetched if _reads_images(j, producers, models)])
        replica = [p.name for p in producers if p.placement is Placement.REPLICA]
        here = [p for p in producers if p.placement is Placement.CONSUMER]
        # A consumer producer that reads the model's values (heads on the post embedding) runs
        # once the replica has answered; the others run first, as they may spare the model.
        then = [p for p in here if any(name in replica for name in p.after)]
        self._run_consumer([p for p in here if p not in then], journeys, attempt)
        for model in models:
            live = [j for j in journeys if j.failure is None]
            ready = [j for j in live if has_open_requests(j, replica, {model})]
            if ready:
                self._infer(ready, replica, model)
        self._run_consumer(then, journeys, attempt)

    def _run_consumer(
        self, here: Sequence[SignalProducer], journeys: Sequence[Journey], attempt: int
    ) -> None:
        """The consumer-side producers, in order: pooled, on shared decoded images, or alone."""
        pooled = self.pooled
        for group, fits in decoding_groups(here, self.registry):
            if pooled is not None and group[0].cost == Cost.SPECIALIST:
                pooled.run(group, journeys, attempt)
            elif fits:
                self._run_decoded(group, fits, journeys)
            else:
                for producer in group:
                    self._run_here(producer, [j for j in journeys if j.failure is None])

    def _run_decoded(
        self, group: Sequence[SignalProducer], fits: Sequence[Fit], journeys: Sequence[Journey]
    ) -> None:
        """Producers reading decoded images, a few posts at a time: each image decoded once.

        Each post's images are decoded on first use at the widest size any of `group` reads,
        shared by the group, and dropped once the group has run over its posts, so what is held
        decoded stays within about `SHARED_IMAGES` images however large the batch.
        """
        from operators.decoded import DecodedImages, widest

        fit = widest(fits)
        for chunk in chunks(journeys, SHARED_IMAGES):
            decoded = {id(j): DecodedImages(j.images or (), self.loader.limits, fit) for j in chunk}
            for producer in group:
                self._run_here(producer, [j for j in chunk if j.failure is None], decoded)

    def _run_here(
        self,
        producer: SignalProducer,
        journeys: Sequence[Journey],
        decoded: Mapping[int, Any] | None = None,
    ) -> None:
        """One `compute` call of a consumer-side producer over every post that needs it."""
        work = [(j, open_requests(j, [producer.name])) for j in journeys]
        work = [(j, requests) for j, requests in work if requests]
        traits = self.registry.traits(producer.name)
        cached = self.cache is not None and producer.cost >= Cost.SPECIALIST and traits.cacheable
        # Keys hash what the producer reads (image bytes included): compute them once.
        keys = {id(j): cache_keys(producer, j, requests) for j, requests in work} if cached else {}
        if cached:
            assert self.cache is not None
            work = from_cache(self.cache, producer, work, keys)
        if not work:
            return
        shared = decoded or {}
        jobs = [producer_job(j, requests, producer, shared.get(id(j))) for j, requests in work]
        with self.telemetry.tracer.start_as_current_span(f"signal.{producer.name}"):
            outputs, share_ms = timed_compute(producer, jobs)
        kept = [
            keep(journey, producer.name, requests, output, share_ms, traits.retryable)
            for (journey, requests), output in zip(work, outputs, strict=True)
        ]
        if cached:
            assert self.cache is not None
            to_cache(self.cache, work, kept, keys)

    def _infer(self, journeys: Sequence[Journey], replica: list[str], model: str) -> None:
        """Every post's tasks for `model` in one call to its replica pool."""
        found_text = [p.name for p in self.registry if self.registry.traits(p.name).adds_text]
        requests = [inference_request(j, replica, model, found_text) for j in journeys]
        sent = [(j, r) for j, r in zip(journeys, requests, strict=True) if r.tasks]
        for journey, request in zip(journeys, requests, strict=True):
            answer_without_model(journey, replica, model, request)
        if not sent:
            return
        started = time.perf_counter()
        with self.telemetry.tracer.start_as_current_span("infer", context=sent[0][0].context) as s:
            s.set_attributes({"batch.posts": len(sent), "model": model})
            results = self._call_replicas(model, [r for _, r in sent])
        share_ms = (time.perf_counter() - started) * 1000 / len(sent)
        made: dict[tuple[str, bool], ProducerRun] = {}
        for (journey, request), result in zip(sent, results, strict=True):
            self._keep_result(journey, replica, result)
            record_model_runs(journey, replica, request, result, share_ms, made)
            if result.failure is None:
                journey.answered_by(model)

    def _call_replicas(self, model: str, requests: list[InferenceRequest]) -> list[InferenceResult]:
        try:
            return self.models.sources[model].compute(requests)
        except Exception as error:  # a lost replica or a broken model: every post may retry
            log.warning("inference failed for %d posts: %s", len(requests), error)
            return [InferenceResult(r.post_id, failure=Failure.of(error)) for r in requests]

    def _keep_result(self, journey: Journey, replica: list[str], result: InferenceResult) -> None:
        if result.failure or result.values is None:
            journey.fail(result.failure or Failure(Stage.INFER, "InferenceError", "no values"))
            return
        for name in replica:
            for task in journey.plan.requests.get(name, ()):
                if task in result.values:
                    journey.computed[(name, task)] = result.values[task]
        if result.text_tokens_cut:
            detail = (
                f"{result.text_tokens_cut} tokens left out of the model's prompt "
                "(model.max_text_tokens)"
            )
            change = InputChange(field="text", change=InputChangeKind.TRUNCATED, detail=detail)
            journey.note(change)
        self.telemetry.cache_hits.add(result.cache_hits)
        self.telemetry.cache_misses.add(result.cache_misses)

    def _fetch(self, journeys: Sequence[Journey]) -> None:
        """Step fetch: image bytes for every post, URLs in parallel."""
        if not journeys:
            return
        with self.telemetry.tracer.start_as_current_span(
            "fetch-image", context=journeys[0].context
        ):
            remote = [j for j in journeys if _has_url(j)]
            by_url = dict(
                zip(map(id, remote), self.fetch_pool.map(self._fetch_one, remote), strict=True)
            )
            for journey in journeys:
                key = id(journey)
                outcome = by_url[key] if key in by_url else self._fetch_one(journey)
                if isinstance(outcome, Failure):
                    journey.fail(outcome)
                else:
                    journey.images = outcome

    def _fetch_one(self, journey: Journey) -> tuple[bytes, ...] | Failure:
        assert journey.post is not None
        try:
            return tuple(self.loader.read_bytes(ref.payload()) for ref in journey.post.images)
        except Exception as error:  # every fetch error, typed or not, becomes this post's failure
            return Failure.of(error)


def _stage_open(journey: Journey, producer: SignalProducer, models: Sequence[str]) -> bool:
    """True when `producer` has still to compute for the post in a stage asking `models`."""
    on_replica = producer.placement is Placement.REPLICA
    return has_open_requests(journey, [producer.name], models if on_replica else None)


def _has_work(journey: Journey, producers: Sequence[SignalProducer], models: Sequence[str]) -> bool:
    """True when some producer of the stage has a request of the post's plan to compute."""
    return any(_stage_open(journey, p, models) for p in producers)


def _reads_images(
    journey: Journey, producers: Sequence[SignalProducer], models: Sequence[str]
) -> bool:
    """True when the post has images and some planned producer of the stage reads them."""
    if journey.post is None or not journey.post.images:
        return False
    return any(_stage_open(journey, p, models) for p in producers if Input.IMAGES in p.inputs)


def _has_url(journey: Journey) -> bool:
    """True when an image must come over the network: only those are worth a thread."""
    return any(ref.url for ref in journey.post.images) if journey.post else False
