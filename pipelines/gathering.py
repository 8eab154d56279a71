"""Steps fetch and compute: one cost stage's producers over a batch of posts.

A stage fetches the images its producers read, runs its consumer-side producers here (in
registration order, so a producer reading another's values runs after it), and ships its
model tasks to the replica pool in one call per batch. Transient failures are retried with
backoff; a post that keeps failing ends as a dead letter.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from contracts.errors import Stage
from contracts.producers import (
    Cost,
    Input,
    Placement,
    ProducerJob,
    ProducerRegistry,
    SignalProducer,
    cache_key,
    content_hash,
)
from contracts.records import InputChange, InputChangeKind
from contracts.vlm import About, VlmTask, empty_value
from pipelines.config import RetrySettings
from pipelines.journey import Journey
from pipelines.retry import backoff_delay, should_retry
from pipelines.signal_records import Failure, InferenceRequest, InferenceResult
from pipelines.signal_source import SignalSource
from pipelines.telemetry import Telemetry

if TYPE_CHECKING:
    from operators.cache import SignalCache
    from operators.images import ImageLoader

log = logging.getLogger(__name__)

Work = tuple[Journey, frozenset[Hashable]]  # a post and the requests still to compute for it
CacheKeys = dict[int, dict[Hashable, str]]  # id(journey) -> request -> cache key


@dataclass
class SignalGatherer:
    """Computes what each post's plan asks of one cost stage's producers."""

    registry: ProducerRegistry
    source: SignalSource
    loader: ImageLoader
    retry: RetrySettings
    telemetry: Telemetry
    cache: SignalCache | None = None  # values of specialist producers, by content
    sleep: Callable[[float], None] = time.sleep
    fetch_pool: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(8, thread_name_prefix="fetch")
    )

    def stages(self) -> list[Cost]:
        """The cost classes to run, cheapest first."""
        return self.registry.costs()

    def gather(self, cost: Cost, journeys: Sequence[Journey]) -> None:
        """Steps fetch and compute for stage `cost`, retrying transient failures with backoff."""
        producers = [p for p in self.registry if p.cost == cost]
        names = [p.name for p in producers]
        pending = [j for j in journeys if j.live and j.plan.only(names)]
        attempt = 0
        while pending:
            attempt += 1
            self._attempt(pending, producers)
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

    def _attempt(self, journeys: Sequence[Journey], producers: list[SignalProducer]) -> None:
        for journey in journeys:
            journey.attempts += 1
        self._fetch([j for j in journeys if j.images is None and _reads_images(j, producers)])
        for producer in producers:
            if producer.placement is Placement.CONSUMER:
                self._run_here(producer, [j for j in journeys if j.failure is None])
        replica = [p.name for p in producers if p.placement is Placement.REPLICA]
        ready = [j for j in journeys if j.failure is None and _open(j, replica)]
        if ready:
            self._infer(ready, replica)

    def _run_here(self, producer: SignalProducer, journeys: Sequence[Journey]) -> None:
        """One `compute` call of a consumer-side producer over every post that needs it."""
        work = [(j, _open(j, [producer.name])) for j in journeys]
        work = [(j, requests) for j, requests in work if requests]
        cached = self.cache is not None and producer.cost >= Cost.SPECIALIST
        # Keys hash what the producer reads (image bytes included): compute them once.
        keys = {id(j): _cache_keys(producer, j, requests) for j, requests in work} if cached else {}
        if cached:
            work = self._from_cache(producer, work, keys)
        if not work:
            return
        jobs = [_producer_job(j, requests, producer) for j, requests in work]
        with self.telemetry.tracer.start_as_current_span(f"signal.{producer.name}"):
            try:
                outputs = list(producer.compute(jobs))
            except Exception as error:  # the producer broke: each of its posts fails alone
                outputs = [error] * len(jobs)
        for (journey, requests), output in zip(work, outputs, strict=True):
            _keep(journey, producer.name, requests, output)
        if cached:
            self._to_cache(producer, work, keys)

    def _from_cache(
        self, producer: SignalProducer, work: list[Work], keys: CacheKeys
    ) -> list[Work]:
        """Fill what the cache holds (one round trip); the work left is the misses."""
        assert self.cache is not None
        found = [keys[id(journey)] for journey, _ in work]
        values = iter(self.cache.get_many([key for each in found for key in each.values()]))
        left = []
        for (journey, _), each in zip(work, found, strict=True):
            missing = set()
            for request in each:
                value = next(values)
                if value is None:
                    missing.add(request)
                else:
                    journey.computed[(producer.name, request)] = json.loads(value)
            if missing:
                left.append((journey, frozenset(missing)))
        return left

    def _to_cache(self, producer: SignalProducer, work: list[Work], keys: CacheKeys) -> None:
        """Store what was just computed; values are JSON, as on the verdict topic."""
        assert self.cache is not None
        items = {}
        for journey, requests in work:
            if journey.failure is not None:
                continue
            for request in requests:
                value = journey.computed[(producer.name, request)]
                items[keys[id(journey)][request]] = json.dumps(value).encode()
        self.cache.set_many(items)

    def _infer(self, journeys: Sequence[Journey], replica: list[str]) -> None:
        """Model tasks of every post in one call to the replica pool."""
        requests = [_inference_request(j, replica) for j in journeys]
        sent = [(j, r) for j, r in zip(journeys, requests, strict=True) if r.tasks]
        for journey, request in zip(journeys, requests, strict=True):
            _answer_without_model(journey, replica, request)
        if not sent:
            return
        with self.telemetry.tracer.start_as_current_span("infer", context=sent[0][0].context) as s:
            s.set_attribute("batch.posts", len(sent))
            results = self._call_replicas([r for _, r in sent])
        for (journey, _), result in zip(sent, results, strict=True):
            self._keep_result(journey, replica, result)

    def _call_replicas(self, requests: list[InferenceRequest]) -> list[InferenceResult]:
        try:
            return self.source.compute(requests)
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


def _cache_keys(
    producer: SignalProducer, journey: Journey, requests: frozenset[Hashable]
) -> dict[Hashable, str]:
    """Each request's cache key: the content the producer reads, the producer, its version."""
    content = content_hash(producer, _producer_job(journey, requests, producer))
    return {request: cache_key(producer, content, request) for request in requests}


def _open(journey: Journey, producers: Sequence[str]) -> frozenset[Hashable]:
    """Requests of `producers` in the journey's plan that are not computed yet."""
    return frozenset(
        request
        for name in producers
        for request in journey.plan.requests.get(name, ())
        if (name, request) not in journey.computed
    )


def _reads_images(journey: Journey, producers: Sequence[SignalProducer]) -> bool:
    """True when the post has images and some planned producer of the stage reads them."""
    if journey.post is None or not journey.post.images:
        return False
    return any(Input.IMAGES in p.inputs and _open(journey, [p.name]) for p in producers)


def _has_url(journey: Journey) -> bool:
    """True when an image must come over the network: only those are worth a thread."""
    return any(ref.url for ref in journey.post.images) if journey.post else False


def _producer_job(
    journey: Journey, requests: frozenset[Hashable], producer: SignalProducer
) -> ProducerJob:
    assert journey.post is not None
    signals: dict[str, dict[Hashable, Any]] = {}
    for (name, request), value in journey.computed.items():
        if name in producer.after:
            signals.setdefault(name, {})[request] = value
    return ProducerJob(journey.post, requests, journey.images or (), signals)


def _keep(journey: Journey, producer: str, requests: frozenset[Hashable], output: Any) -> None:
    """Store a consumer-side producer's values for one post, or fail the post."""
    if isinstance(output, Exception):
        failure = Failure.of(output)
        journey.fail(Failure(Stage.INFER, failure.error_type, f"{producer}: {failure.reason}"))
        return
    missing = [r for r in requests if r not in output]
    if missing:
        reason = f"{producer}: gave no value for {missing[0]!r}"
        journey.fail(Failure(Stage.INFER, "ProducerError", reason))
        return
    for request in requests:
        journey.computed[(producer, request)] = output[request]


def _inference_request(journey: Journey, replica: list[str]) -> InferenceRequest:
    """The model tasks that need the model: none about images when the post has none."""
    post = journey.post
    assert post is not None
    tasks = frozenset(t for t in _open(journey, replica) if isinstance(t, VlmTask))
    if not post.images:
        tasks = frozenset(t for t in tasks if t.about is About.POST and post.text)
    return InferenceRequest(
        post_id=post.id,
        images=journey.images or (),
        tasks=tasks,
        text=post.text,
        trace_headers=tuple(journey.trace_headers),
    )


def _answer_without_model(journey: Journey, replica: list[str], request: InferenceRequest) -> None:
    """Tasks with nothing to look at (image tasks on a post without images) get empty values."""
    for name in replica:
        for task in journey.plan.requests.get(name, ()):
            unasked = task not in request.tasks and (name, task) not in journey.computed
            if isinstance(task, VlmTask) and unasked:
                journey.computed[(name, task)] = empty_value(task)
