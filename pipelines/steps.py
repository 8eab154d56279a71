"""The pipeline's step list: where a post goes next.

    decode   message bytes -> Post               fails to the dead-letter topic (decode, validate)
    plan     Post -> signals still needed        rules decided by text alone skip the model
    fetch    image refs -> bytes                 retried with backoff, then dead-lettered
    infer    bytes + plan -> signals             on a model replica, cached; retried, then DLQ
    decide   Post + signals -> verdicts          one per policy; shadow policies only report
    route    verdicts -> output messages         verdict, review-queue, shadow, dead-letter topics
    produce  send all, wait for acks, commit     `pipelines.consumer`, after `moderate` returns

`Moderator.moderate` runs decode to route for one batch and returns the messages to produce.
It never raises for one bad post: every message ends as verdicts or as a dead letter.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.context import Context

from contracts.decoding import PostLimits, decode_post
from contracts.errors import Stage
from contracts.records import DeadLetter, InputChange, Post, Signals, utc_now
from pipelines.config import RetrySettings, TopicSettings
from pipelines.kafka_io import OutMessage
from pipelines.retry import backoff_delay, should_retry
from pipelines.routing import route_dead_letter, route_shadow, route_verdict
from pipelines.signal_records import Failure, InferenceRequest, InferenceResult
from pipelines.signal_source import SignalSource
from pipelines.telemetry import Telemetry
from pipelines.tracing import Headers, context_from_headers, headers_with_trace, trace_id_of
from policies.policy_set import PolicySet, SetDecision, SignalPlan

if TYPE_CHECKING:
    from operators.images import ImageLoader

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SourceMessage:
    """One consumed message, with where it came from."""

    value: bytes
    key: bytes | None = None
    topic: str = ""
    partition: int = -1
    offset: int = -1
    headers: tuple[tuple[str, bytes], ...] = ()
    received_at: float = field(default_factory=time.monotonic)

    @classmethod
    def from_record(cls, record: Any) -> SourceMessage:
        """From a kafka-python ConsumerRecord."""
        headers = tuple((name, value or b"") for name, value in record.headers or ())
        return cls(record.value, record.key, record.topic, record.partition, record.offset, headers)


@dataclass
class Journey:
    """One message's way through the steps; ends with verdicts or a failure."""

    message: SourceMessage
    context: Context
    post: Post | None = None
    changes: tuple[InputChange, ...] = ()
    plan: SignalPlan = field(default_factory=SignalPlan)
    images: tuple[bytes, ...] | None = None
    signals: Signals | None = None
    failure: Failure | None = None
    attempts: int = 0
    first_failed_at: datetime | None = None

    def fail(self, failure: Failure) -> None:
        """Record a failure of the current attempt."""
        self.failure = failure
        self.first_failed_at = self.first_failed_at or utc_now()

    @property
    def trace_headers(self) -> Headers:
        """traceparent/tracestate of this post's consume span, for every output message."""
        return headers_with_trace((), self.context)


@dataclass
class Moderator:
    """Runs decode to route over a batch; shared by the consumers, the HTTP API and the CLI."""

    policies: Callable[[], PolicySet]
    source: SignalSource
    loader: ImageLoader
    topics: TopicSettings
    retry: RetrySettings
    telemetry: Telemetry
    limits: PostLimits = field(default_factory=PostLimits)
    policy_budget_s: float | None = 0.25
    sleep: Callable[[float], None] = time.sleep
    fetch_pool: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(8, thread_name_prefix="fetch")
    )

    def moderate(self, messages: Sequence[SourceMessage]) -> list[OutMessage]:
        """Output messages for a batch: verdicts and review copies, shadow reports, dead letters."""
        policy_set = self.policies()  # one snapshot per batch: reloads swap between batches
        journeys = [self.decode(message) for message in messages]
        for journey in journeys:
            self.plan(journey, policy_set)
        self.fetch_and_infer([j for j in journeys if j.failure is None])
        self.telemetry.batch_size.record(len(messages))
        return [out for journey in journeys for out in self.finish(journey, policy_set)]

    def decode(self, message: SourceMessage) -> Journey:
        """Step decode: parse, bound, normalize and validate, or fail at decode/validate."""
        journey = Journey(message, context_from_headers(message.headers))
        self.telemetry.posts_in.add(1)
        with self.telemetry.tracer.start_as_current_span(
            "consume", context=journey.context
        ) as span:
            span.set_attributes({"messaging.source": message.topic, "offset": message.offset})
            journey.context = trace.set_span_in_context(span)
            try:
                decoded = decode_post(message.value, limits=self.limits)
            except Exception as error:  # any input must end as this post's dead letter
                journey.fail(Failure.of(error, Stage.DECODE))
                return journey
            journey.post, journey.changes = decoded.post, decoded.changes
            span.set_attribute("post.id", journey.post.id)
        return journey

    def plan(self, journey: Journey, policy_set: PolicySet) -> None:
        """Step plan: the signals some rule can still use, judged on the post's free signals."""
        if journey.post is None or journey.failure is not None:
            return
        try:
            journey.plan = policy_set.plan_for_post(journey.post, budget_s=self.policy_budget_s)
        except Exception as error:  # a policy-engine fault fails this post alone
            journey.fail(Failure.of(error, Stage.POLICY))

    def fetch_and_infer(self, journeys: Sequence[Journey]) -> None:
        """Steps fetch and infer, retrying transient failures with backoff."""
        pending = [j for j in journeys if self._needs_model(j)]
        for journey in journeys:
            if not self._needs_model(journey):
                journey.signals = _without_images(journey.plan)
        attempt = 0
        while pending:
            attempt += 1
            self._attempt(pending)
            retrying = [
                j
                for j in pending
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
            pending = retrying

    @staticmethod
    def _needs_model(journey: Journey) -> bool:
        return bool(journey.post and journey.post.images and journey.plan.needs_model)

    def _attempt(self, journeys: Sequence[Journey]) -> None:
        for journey in journeys:
            journey.attempts += 1
        self._fetch([j for j in journeys if j.images is None])
        ready = [j for j in journeys if j.failure is None]
        if not ready:
            return
        with self.telemetry.tracer.start_as_current_span("infer", context=ready[0].context) as span:
            span.set_attribute("batch.posts", len(ready))
            results = self._infer(ready)
        for journey, result in zip(ready, results, strict=True):
            if result.failure:
                journey.fail(result.failure)
            else:
                journey.signals = result.signals
                self.telemetry.cache_hits.add(result.cache_hits)
                self.telemetry.cache_misses.add(result.cache_misses)

    def _infer(self, journeys: Sequence[Journey]) -> list[InferenceResult]:
        requests = [_request(j) for j in journeys]
        try:
            return self.source.compute(requests)
        except Exception as error:  # a lost replica or a broken model: every post may retry
            log.warning("inference failed for %d posts: %s", len(requests), error)
            return [InferenceResult(r.post_id, failure=Failure.of(error)) for r in requests]

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

    def finish(self, journey: Journey, policy_set: PolicySet) -> list[OutMessage]:
        """Steps decide and route: verdicts for a moderated post, a dead letter for a failed one."""
        if journey.failure is None:
            try:
                decided = self._decide(journey, policy_set)
            except Exception as error:  # a policy bug must not lose the post
                log.exception("policy evaluation failed")
                journey.fail(Failure.of(error, Stage.POLICY))
            else:
                try:
                    return self._route(journey, decided)
                except Exception as error:  # a verdict that cannot be written: dead-letter it
                    journey.fail(Failure.of(error, Stage.ROUTE))
        return [self.dead_letter(journey)]

    def _decide(self, journey: Journey, policy_set: PolicySet) -> SetDecision:
        assert journey.post is not None and journey.signals is not None
        with self.telemetry.tracer.start_as_current_span("policy", context=journey.context):
            return policy_set.evaluate(journey.post, journey.signals, budget_s=self.policy_budget_s)

    def _route(self, journey: Journey, decided: SetDecision) -> list[OutMessage]:
        post = journey.post
        assert post is not None
        headers = journey.trace_headers
        common: dict[str, Any] = {
            "model": self.source.model,
            "trace_id": trace_id_of(journey.context),
            "latency_ms": (time.monotonic() - journey.message.received_at) * 1000,
            "input_changes": journey.changes,
        }
        messages: list[OutMessage] = []
        for outcome in decided.active:
            verdict = outcome.to_verdict(post.id, **common)
            self.telemetry.posts_out.add(1, {"action": verdict.action.value})
            messages += route_verdict(outcome, verdict, self.topics, headers)
        for outcome in decided.shadow:
            verdict = outcome.to_verdict(post.id, **common)
            messages.append(route_shadow(outcome, verdict, self.topics, headers))
        return messages

    def fail_message(self, message: SourceMessage, failure: Failure) -> OutMessage:
        """A dead letter for a message that failed outside the steps (e.g. a whole batch)."""
        journey = Journey(message, context_from_headers(message.headers), attempts=1)
        journey.fail(failure)
        try:
            journey.post = decode_post(message.value, limits=self.limits).post
        except Exception:  # the dead letter still goes out without a post id
            log.debug("dead letter without a post id", exc_info=True)
        return self.dead_letter(journey)

    def dead_letter(self, journey: Journey) -> OutMessage:
        """The dead-letter message for a journey that failed."""
        failure = journey.failure
        assert failure is not None
        message = journey.message
        letter = DeadLetter(
            original=DeadLetter.encode_bytes(message.value) or "",
            original_key=DeadLetter.encode_bytes(message.key),
            topic=message.topic,
            partition=message.partition,
            offset=message.offset,
            post_id=journey.post.id if journey.post else None,
            stage=failure.stage,
            error_type=failure.error_type,
            error=failure.reason,
            attempts=max(1, journey.attempts),
            first_seen=journey.first_failed_at or utc_now(),
        )
        self.telemetry.dead_letters.add(1, {"stage": failure.stage.value})
        return route_dead_letter(letter, message.key, self.topics, journey.trace_headers)


def _has_url(journey: Journey) -> bool:
    """True when an image must come over the network: only those are worth a thread."""
    return any(ref.url for ref in journey.post.images) if journey.post else False


def _request(journey: Journey) -> InferenceRequest:
    assert journey.post is not None and journey.images is not None
    return InferenceRequest(
        post_id=journey.post.id,
        images=journey.images,
        labels=journey.plan.labels,
        questions=journey.plan.questions,
        describe=journey.plan.describe,
        trace_headers=tuple(journey.trace_headers),
    )


def _without_images(plan: SignalPlan) -> Signals:
    """Signals of a post the model need not see: image questions on no image answer 0."""
    return Signals(
        labels=dict.fromkeys(plan.labels, 0.0),
        answers=dict.fromkeys(plan.questions, 0.0),
    )
