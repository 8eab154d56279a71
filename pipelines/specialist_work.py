"""The specialist pool's pure core: what a consumer sends it, and running the producers on it.

With `specialists.placement: pool`, the consumer-side producers of specialist cost (nsfw, ocr,
banks, profanity) run on a Serve deployment of their own (`pipelines.specialist_pool`). The
consumer keeps the cache and sends only the misses: one `SpecialistWork` per decoding group
per batch, each post's image bytes once. `run_specialists` runs the producers as the consumer
would (`SignalGatherer._run_decoded`): in order, each image decoded once per group, a post that
fails for one producer skipped by the rest. The replica only wraps it; `InProcessSpecialists`
runs it here, for tests and single processes.
"""

from __future__ import annotations

import time
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from contracts.errors import Stage
from contracts.producers import (
    ProducerJob,
    ProducerOutput,
    ProducerRegistry,
    SignalProducer,
    as_output,
)
from contracts.records import Post
from pipelines.shared_images import SHARED_IMAGES, chunks, decoding_groups
from pipelines.signal_records import Failure, producer_failure

if TYPE_CHECKING:
    from operators.limits import ImageLimits

Outcome = ProducerOutput | Failure  # one producer's result for one post, as it crosses Ray
Values = Mapping[Hashable, Any]
Answers = dict[int, tuple[dict[str, Outcome], dict[str, float]]]  # id(post) -> outputs, ms


@dataclass(frozen=True)
class SpecialistPost:
    """One post's work for the pool: each producer's requests, the images, the values read.

    `post` has no images of its own (`without_images`): their bytes travel once, in `images`,
    and only to a group that reads them. `signals` holds, per producer, the values of the
    producers it runs after (`ProducerJob.signals`).
    """

    post: Post
    requests: Mapping[str, frozenset[Hashable]]
    images: tuple[bytes, ...] = ()
    signals: Mapping[str, Mapping[str, Values]] = field(default_factory=dict)
    recheck: str | None = None  # `ProducerJob.recheck`

    def job(self, producer: str, decoded: Any = None) -> ProducerJob:
        """The ProducerJob `producer` gets for this post, as the consumer would build it."""
        signals = self.signals.get(producer, {})
        requests = self.requests[producer]
        return ProducerJob(self.post, requests, self.images, signals, decoded, self.recheck)


@dataclass(frozen=True)
class SpecialistWork:
    """One call to the pool: a decoding group's producers, in order, over a batch's misses."""

    producers: tuple[str, ...]
    posts: tuple[SpecialistPost, ...]


@dataclass(frozen=True)
class SpecialistAnswer:
    """One post's results: for each producer run on it, its output or failure, and its time."""

    outputs: Mapping[str, Outcome] = field(default_factory=dict)
    ms: Mapping[str, float] = field(default_factory=dict)  # the post's share of each call


class SpecialistSource(Protocol):
    """Where the pool's work runs: in this process, or on the Serve deployment."""

    @property
    def name(self) -> str:
        """What failures and unavailable values call the pool."""
        ...

    def compute(self, work: SpecialistWork) -> list[SpecialistAnswer]:
        """One answer per post of `work`, in order; raises when the pool cannot answer."""
        ...


@dataclass
class InProcessSpecialists:
    """The pool's work run in this process: what each Serve replica does."""

    registry: ProducerRegistry
    limits: ImageLimits
    name: str = "in-process"

    def compute(self, work: SpecialistWork) -> list[SpecialistAnswer]:
        """`run_specialists` over `work`."""
        return run_specialists(self.registry, self.limits, work)


def without_images(post: Post) -> Post:
    """`post` with no image refs: the pool gets the images' bytes once, beside it."""
    return post.model_copy(update={"images": []}) if post.images else post


def run_specialists(
    registry: ProducerRegistry, limits: ImageLimits, work: SpecialistWork
) -> list[SpecialistAnswer]:
    """Every producer of `work` over its posts, as the consumer runs a decoding group."""
    from operators.decoded import DecodedImages, widest

    answers: Answers = {id(post): ({}, {}) for post in work.posts}
    producers = [registry.get(name) for name in work.producers]
    for group, fits in decoding_groups(producers, registry):
        if not fits:
            for producer in group:
                _compute(registry, producer, work.posts, answers)
            continue
        fit = widest(fits)
        for chunk in chunks(work.posts, SHARED_IMAGES):
            decoded = {id(post): DecodedImages(post.images, limits, fit) for post in chunk}
            for producer in group:
                _compute(registry, producer, chunk, answers, decoded)
    return [SpecialistAnswer(*answers[id(post)]) for post in work.posts]


def _compute(
    registry: ProducerRegistry,
    producer: SignalProducer,
    posts: Sequence[SpecialistPost],
    answers: Answers,
    decoded: Mapping[int, Any] | None = None,
) -> None:
    """One `compute` call over the posts that ask `producer` and have not failed."""
    todo = [p for p in posts if producer.name in p.requests and not _failed(answers[id(p)][0])]
    if not todo:
        return
    shared = decoded or {}
    jobs = [post.job(producer.name, shared.get(id(post))) for post in todo]
    outputs, share_ms = timed_compute(producer, jobs)
    retryable = registry.traits(producer.name).retryable
    for post, output in zip(todo, outputs, strict=True):
        outcomes, ms = answers[id(post)]
        outcomes[producer.name] = _outcome(output, post.requests[producer.name], retryable)
        ms[producer.name] = share_ms


def timed_compute(producer: SignalProducer, jobs: Sequence[ProducerJob]) -> tuple[list[Any], float]:
    """One `compute` call: each job's output (an exception if the call broke), and each job's
    share of the call's milliseconds."""
    started = time.perf_counter()
    try:
        outputs = list(producer.compute(jobs))
    except Exception as error:  # the producer broke: each of its posts fails alone
        outputs = [error] * len(jobs)
    return outputs, (time.perf_counter() - started) * 1000 / len(jobs)


def _outcome(
    output: Any, requests: frozenset[Hashable], retryable: tuple[type[BaseException], ...]
) -> Outcome:
    """A producer's result for a post as it crosses back: values, or the failure `keep` makes."""
    if isinstance(output, Exception):
        return producer_failure(output, retryable)
    values = as_output(output)
    missing = [r for r in requests if r not in values.values]
    if missing:
        return Failure(Stage.INFER, "ProducerError", f"gave no value for {missing[0]!r}")
    return values


def _failed(outcomes: Mapping[str, Outcome]) -> bool:
    """True once a producer failed the post: the group's later producers skip it, as here."""
    return any(isinstance(outcome, Failure) for outcome in outcomes.values())
