"""The pipeline's step list: where a post goes next.

    decode   message bytes -> Post               fails to the dead-letter topic (decode, validate)
    then, for each cost stage, cheapest first; the model's, once per model cost rank
    (`pipelines.stages`, `pipelines.gathering`):
      plan     Post + signals so far -> needed   rules already decided skip dearer producers
      fetch    image refs -> bytes               retried with backoff, then dead-lettered
      compute  the stage's producers             cheap ones here, each model on its replicas
                                                 (cached); retried, then dead-lettered
    decide   Post + signals -> verdicts          one per policy; shadow policies only report
    route    verdicts -> outcome                 active verdicts with their review tasks, shadow
                                                 verdicts, the post's record (what its policies
                                                 read) on the first; or the message's dead letter
    produce  write outcomes, wait, commit        `pipelines.consumer` through a sink
                                                 (`sinks.kafka_topics`), after `moderate` returns

`Moderator.moderate` runs decode to route for one batch and returns one `Outcome` per message,
in order. It never raises for one bad post: every message ends as verdicts or as a dead letter.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from opentelemetry import trace

from contracts.decoding import PostLimits, decode_post
from contracts.errors import Stage
from contracts.history import PostRecord
from contracts.outcomes import ActiveVerdict, Outcome, ReviewRoute, SourceRef
from contracts.records import DeadLetter, Post, ShadowVerdict, Verdict, utc_now
from contracts.review import PostEmbedding, ReviewTask
from contracts.vlm_signals import EMBED_PRODUCER, POST_EMBEDDING
from kafka_io.settings import TopicSettings
from kafka_io.tracing import context_from_headers, trace_id_of
from pipelines.gathering import SignalGatherer
from pipelines.journey import Journey, SourceMessage
from pipelines.recording import Recorder
from pipelines.signal_records import Failure
from pipelines.telemetry import Telemetry
from policies.policy_set import PolicyOutcome, PolicySet, SetDecision, SignalPlan
from policies.scope import PostScope

log = logging.getLogger(__name__)

# With `review_embeddings: true`, every post asks the model for this (`Moderator.always`).
REVIEW_EMBEDDING = SignalPlan({EMBED_PRODUCER: frozenset({POST_EMBEDDING})})


@dataclass
class Moderator:
    """Runs decode to route over a batch; shared by the consumers, the HTTP API and the CLI."""

    policies: Callable[[], PolicySet]
    gatherer: SignalGatherer
    topics: TopicSettings
    telemetry: Telemetry
    limits: PostLimits = field(default_factory=PostLimits)
    policy_budget_s: float | None = 0.25
    always: SignalPlan = field(default_factory=SignalPlan)  # asked for every post, rules or not

    @cached_property
    def recorder(self) -> Recorder:
        """Builds each post's record from the gatherer's producers and models."""
        return Recorder(self.gatherer.registry, self.gatherer.models)

    def moderate(self, messages: Sequence[SourceMessage]) -> list[Outcome]:
        """One outcome per message, in order: its verdicts and review tasks, or its dead letter."""
        policy_set = self.policies()  # one snapshot per batch: reloads swap between batches
        journeys = [self.decode(message) for message in messages]
        for stage in self.gatherer.stages():
            for journey in journeys:
                self.plan(journey, policy_set)
            self.gatherer.gather(stage, journeys)
        self.telemetry.batch_size.record(len(messages))
        return [self.finish(journey, policy_set) for journey in journeys]

    def decode(self, message: SourceMessage) -> Journey:
        """Step decode: parse, bound, normalize and validate, or fail at decode/validate."""
        journey = Journey(message, context_from_headers(message.headers))
        self.telemetry.posts_in.add(1)
        with self.telemetry.post_span("consume", journey.context) as span:
            if span is not None:
                span.set_attributes({"messaging.source": message.topic, "offset": message.offset})
                journey.context = trace.set_span_in_context(span)
            try:
                decoded = decode_post(message.value, limits=self.limits)
            except Exception as error:  # any input must end as this post's dead letter
                journey.fail(Failure.of(error, Stage.DECODE))
                return journey
            journey.post, journey.changes = decoded.post, decoded.changes
            # Only the decoder's cut sets `post.truncated`: a later note (the model's prompt cut
            # to model.max_text_tokens) leaves the text that rules read whole.
            journey.scope = PostScope(decoded.post, truncated=decoded.truncated, growing=True)
            if span is not None:
                span.set_attribute("post.id", journey.post.id)
        return journey

    def plan(self, journey: Journey, policy_set: PolicySet) -> None:
        """Step plan: the signals some rule can still use, judged on what is known so far.

        Nothing new known since the last plan (no producer ran for this post): it still holds.
        """
        if journey.post is None or journey.failure is not None:
            return
        if journey.planned_with == len(journey.computed):
            return
        try:
            planned = policy_set.plan_for_post(
                journey.post,
                journey.computed,
                budget_s=self.policy_budget_s,
                memo=journey.plan_memo,
                scope=journey.policy_scope(),
            )
            journey.plan = planned | self.always.without(journey.computed)
        except Exception as error:  # a policy-engine fault fails this post alone
            journey.fail(Failure.of(error, Stage.POLICY))
        journey.planned_with = len(journey.computed)

    def finish(self, journey: Journey, policy_set: PolicySet) -> Outcome:
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
                except Exception as error:  # an outcome that cannot be built: dead-letter it
                    journey.fail(Failure.of(error, Stage.ROUTE))
        return self.dead_letter(journey)

    def _decide(self, journey: Journey, policy_set: PolicySet) -> SetDecision:
        assert journey.post is not None
        with self.telemetry.post_span("policy", journey.context):
            budget_s = self.policy_budget_s
            return policy_set.evaluate(
                journey.post,
                journey.computed,
                budget_s=budget_s,
                unavailable=journey.unavailable,
                scope=journey.policy_scope(),
            )

    def _route(self, journey: Journey, decided: SetDecision) -> Outcome:
        post, models = journey.post, self.gatherer.models
        assert post is not None
        common: dict[str, Any] = {
            "model": models.default.model,
            "models": {name: models.ref(name) for name in journey.models},
            "trace_id": trace_id_of(journey.context),
            "latency_ms": (time.monotonic() - journey.message.received_at) * 1000,
            "input_changes": journey.changes,
            "producers": list(journey.runs.values()),
            "recheck": journey.recheck,
        }
        embedding = self._embedding(journey)
        # The post's record rides on its first verdict: the first active one, else the first
        # shadow one (`contracts.history`).
        record: PostRecord | None = self.recorder.record(journey)
        active = []
        for decision in decided.active:
            verdict = decision.to_verdict(post.id, **common, record=record)
            record = None
            self.telemetry.posts_out.add(1, {"action": verdict.action.value})
            active.append(
                ActiveVerdict(
                    verdict=verdict, review=review_route(decision, verdict, post, embedding)
                )
            )
        shadows = []
        for decision in decided.shadow:
            verdict = decision.to_verdict(post.id, **common, record=record)
            record = None
            shadows.append(ShadowVerdict(verdict=verdict, diff=decision.diff))
        return Outcome(
            source=source_ref(journey.message),
            post_id=post.id,
            post=post,
            verdicts=tuple(active),
            shadows=tuple(shadows),
            trace=journey.trace,
        )

    def _embedding(self, journey: Journey) -> PostEmbedding | None:
        """The post embedding its review tasks carry, when it was asked for (`always`)."""
        vector = journey.computed.get((EMBED_PRODUCER, POST_EMBEDDING))
        if not vector:  # not asked, or a model without embeddings (the no-op model's is empty)
            return None
        name = self.gatherer.models.default.model.name
        return PostEmbedding(model=name, vector=[float(x) for x in vector])

    def fail_message(self, message: SourceMessage, failure: Failure) -> Outcome:
        """A dead letter for a message that failed outside the steps (e.g. a whole batch)."""
        journey = Journey(message, context_from_headers(message.headers), attempts=1)
        journey.fail(failure)
        try:
            journey.post = decode_post(message.value, limits=self.limits).post
        except Exception:  # the dead letter still goes out without a post id
            log.debug("dead letter without a post id", exc_info=True)
        return self.dead_letter(journey)

    def dead_letter(self, journey: Journey) -> Outcome:
        """The dead-letter outcome of a journey that failed."""
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
        return Outcome(
            source=source_ref(message),
            post_id=letter.post_id,
            dead_letter=letter,
            trace=journey.trace,
        )


def review_route(
    decision: PolicyOutcome, verdict: Verdict, post: Post, embedding: PostEmbedding | None = None
) -> ReviewRoute | None:
    """The review task of an active verdict whose queue the policy maps to a topic."""
    if not (decision.decision.topic and verdict.queue):
        return None
    if verdict.record is not None:  # the verdict topic keeps it; a reviewer has no use for it
        verdict = verdict.model_copy(update={"record": None})
    task = ReviewTask(
        key=verdict.key,
        queue=verdict.queue,
        priority=verdict.priority,
        verdict=verdict,
        post=post,
        embedding=embedding,
    )
    return ReviewRoute(topic=decision.decision.topic, task=task)


def source_ref(message: SourceMessage) -> SourceRef:
    """Where a consumed message was read."""
    return SourceRef(
        topic=message.topic, partition=message.partition, offset=message.offset, key=message.key
    )
