"""The consumer's side of the specialist pool: the cache first, one call per group, then keep.

For each decoding group of the specialist stage (`shared_images.decoding_groups`), the
consumer looks each producer's requests up in the cache, sends the misses in one
`SpecialistWork`, and keeps each post's results through `producer_runs.keep` and `to_cache`,
as when it runs them itself. A pool that cannot answer fails the posts sent, to be retried
with the pipeline's backoff; on the last try their values become `Unavailable`, so the post is
still judged and rules reading them report them unavailable.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from contracts.errors import Stage
from contracts.producers import Cost, Input, ProducerOutput, ProducerRegistry, SignalProducer
from contracts.producers import Unavailable as UnavailableValue
from pipelines.config import RetrySettings
from pipelines.journey import Journey
from pipelines.model_tasks import open_requests
from pipelines.producer_runs import (
    CacheKeys,
    Work,
    cache_keys,
    from_cache,
    keep,
    read_signals,
    to_cache,
)
from pipelines.signal_records import Failure, one_line
from pipelines.specialist_work import (
    SpecialistAnswer,
    SpecialistPost,
    SpecialistSource,
    SpecialistWork,
    without_images,
)
from pipelines.telemetry import Telemetry

if TYPE_CHECKING:
    from operators.cache import SignalCache

log = logging.getLogger(__name__)
POOL_ERROR = "SpecialistPoolError"


@dataclass
class _Misses:
    """One producer's work left after the cache: each post's requests, and their cache keys."""

    producer: SignalProducer
    work: list[Work]
    keys: CacheKeys
    by_post: dict[int, frozenset[Hashable]] = field(init=False)

    def __post_init__(self) -> None:
        self.by_post = {id(journey): requests for journey, requests in self.work}

    def requests(self, journey: Journey) -> frozenset[Hashable]:
        """The post's requests this producer still computes (none: all cached or not asked)."""
        return self.by_post.get(id(journey), frozenset())


@dataclass
class PooledSpecialists:
    """Runs a stage's specialist groups on the pool, keeping the cache on the consumer."""

    source: SpecialistSource
    registry: ProducerRegistry
    retry: RetrySettings
    telemetry: Telemetry
    cache: SignalCache | None = None

    def run(
        self, group: Sequence[SignalProducer], journeys: Sequence[Journey], attempt: int
    ) -> None:
        """`group`'s producers over the live posts: one pool call per part (`independent_runs`)."""
        for part in independent_runs(group):
            self._run_part(part, [j for j in journeys if j.failure is None], attempt)

    def _run_part(
        self, group: Sequence[SignalProducer], journeys: Sequence[Journey], attempt: int
    ) -> None:
        misses = [self._misses(producer, journeys) for producer in group]
        sent = [j for j in journeys if any(each.requests(j) for each in misses)]
        if not sent:
            return
        work = SpecialistWork(
            tuple(p.name for p in group), tuple(_pool_post(j, misses) for j in sent)
        )
        with self.telemetry.tracer.start_as_current_span(
            "signal.specialist-pool", context=sent[0].context
        ) as span:
            span.set_attributes({"batch.posts": len(sent), "producers": list(work.producers)})
            try:
                answers = self.source.compute(work)
                by_post = {id(j): answer for j, answer in zip(sent, answers, strict=True)}
            except Exception as error:  # the pool is down or broke: every post sent may retry
                self._pool_failed(error, misses, sent, attempt)
                return
        for each in misses:
            self._keep(each, by_post)

    def _misses(self, producer: SignalProducer, journeys: Sequence[Journey]) -> _Misses:
        """`producer`'s open requests per post, less what the cache holds."""
        work = [(j, open_requests(j, [producer.name])) for j in journeys]
        work = [(j, requests) for j, requests in work if requests]
        traits = self.registry.traits(producer.name)
        if self.cache is None or producer.cost < Cost.SPECIALIST or not traits.cacheable:
            return _Misses(producer, work, {})
        keys = {id(j): cache_keys(producer, j, requests) for j, requests in work}
        return _Misses(producer, from_cache(self.cache, producer, work, keys), keys)

    def _keep(self, misses: _Misses, by_post: dict[int, SpecialistAnswer]) -> None:
        """Each post's result for one producer, kept as the consumer keeps its own; then cached."""
        name = misses.producer.name
        retryable = self.registry.traits(name).retryable
        work = [(j, requests) for j, requests in misses.work if j.failure is None]
        kept = []
        for journey, requests in work:
            answer = by_post[id(journey)]
            output = answer.outputs.get(name, _NO_RESULT)
            kept.append(keep(journey, name, requests, output, answer.ms.get(name, 0.0), retryable))
        if misses.keys and self.cache is not None:
            to_cache(self.cache, work, kept, misses.keys)

    def _pool_failed(
        self, error: Exception, misses: list[_Misses], sent: list[Journey], attempt: int
    ) -> None:
        """Retry the posts sent; on the last try, their values are unavailable, naming the pool."""
        summary = one_line(f"{type(error).__name__}: {error}", 300)
        log.warning(
            "specialist pool %s failed for %d posts: %s", self.source.name, len(sent), summary
        )
        if attempt < self.retry.max_attempts:
            reason = f"specialist pool {self.source.name}: {summary}"
            for journey in sent:
                journey.fail(Failure(Stage.INFER, POOL_ERROR, reason, retryable=True))
            return
        tries = f"{attempt} {'try' if attempt == 1 else 'tries'}"
        gone = UnavailableValue(f"specialist pool {self.source.name} failed {tries}: {summary}")
        for each in misses:
            for journey, requests in each.work:
                values = dict.fromkeys(requests, gone)
                keep(journey, each.producer.name, requests, ProducerOutput(values), 0.0)


_NO_RESULT = Failure(Stage.INFER, POOL_ERROR, "the specialist pool gave no result", True)


def independent_runs(group: Sequence[SignalProducer]) -> list[list[SignalProducer]]:
    """`group` in order, cut before any producer that reads one earlier in its run: the cache
    key of its request hashes those values, so they must be known before the call."""
    runs: list[list[SignalProducer]] = [[]]
    for producer in group:
        if any(p.name in producer.after for p in runs[-1]):
            runs.append([])
        runs[-1].append(producer)
    return runs


def _pool_post(journey: Journey, misses: Sequence[_Misses]) -> SpecialistPost:
    """What the pool needs of one post: requests per producer, images when read, values read."""
    assert journey.post is not None
    requests = {each.producer.name: each.requests(journey) for each in misses}
    asked = [each.producer for each in misses if requests[each.producer.name]]
    reads_images = any(Input.IMAGES in p.inputs for p in asked)
    return SpecialistPost(
        post=without_images(journey.post),
        requests={name: found for name, found in requests.items() if found},
        images=(journey.images or ()) if reads_images else (),
        signals={p.name: read_signals(journey, p) for p in asked if p.after},
        recheck=journey.recheck,
    )
