"""One consumed message and its way through the steps, until it ends as verdicts or a failure."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from opentelemetry.context import Context

from contracts.records import RECHECK_HEADER, InputChange, Post, ProducerRun, utc_now
from kafka_io.tracing import Headers, headers_with_trace, trace_fields
from pipelines.signal_records import Failure
from policies.policy_set import PlanMemo, SignalKey, SignalPlan
from policies.scope import PostScope


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
    """One message's way through the steps; ends with verdicts or a failure.

    `computed` collects every producer's values, keyed by (producer, request); `plan` is what
    some rule can still use that is not computed yet, across every stage. `unavailable` says
    why a value could not be had (its store was down); `runs` is each producer's work on it;
    `models` names the models that answered for it, in the order they were asked.
    """

    message: SourceMessage
    context: Context
    post: Post | None = None
    changes: tuple[InputChange, ...] = ()
    plan: SignalPlan = field(default_factory=SignalPlan)
    computed: dict[SignalKey, Any] = field(default_factory=dict)
    unavailable: dict[SignalKey, str] = field(default_factory=dict)
    runs: dict[str, ProducerRun] = field(default_factory=dict)
    models: list[str] = field(default_factory=list)
    planned_with: int = -1  # how many values were computed when `plan` was made
    plan_memo: PlanMemo = field(default_factory=dict)  # each policy's last plan for this post
    scope: PostScope | None = None  # the post's CEL values, shared by every plan and decision
    images: tuple[bytes, ...] | None = None
    failure: Failure | None = None
    attempts: int = 0
    first_failed_at: datetime | None = None

    @property
    def recheck(self) -> str | None:
        """Why the post is decided again (its `vlmod-recheck` header), or None the first time."""
        for name, value in self.message.headers:
            if name == RECHECK_HEADER:
                return value.decode("utf-8", "replace") or None
        return None

    @property
    def live(self) -> bool:
        """True while the post is decoded and nothing has failed."""
        return self.post is not None and self.failure is None

    def fail(self, failure: Failure) -> None:
        """Record a failure of the current attempt."""
        self.failure = failure
        self.first_failed_at = self.first_failed_at or utc_now()

    def ran(self, run: ProducerRun) -> None:
        """Record a producer's work on this post; a second run (a retry) adds its time."""
        before = self.runs.get(run.name)
        if before is not None:
            run = run.model_copy(update={"ms": before.ms + run.ms})
        self.runs[run.name] = run

    def answered_by(self, model: str) -> None:
        """Record that `model` answered tasks for this post (once per model)."""
        if model not in self.models:
            self.models.append(model)

    def note(self, change: InputChange) -> None:
        """Record a change made to the post's input, for the verdict."""
        self.changes = (*self.changes, change)

    def policy_scope(self) -> PostScope:
        """The post's PostScope, made on first use (the post must be decoded)."""
        if self.scope is None:
            assert self.post is not None
            self.scope = PostScope(self.post, growing=True)
        return self.scope

    @property
    def trace(self) -> dict[str, str]:
        """W3C trace fields of this post's consume span, for every outcome."""
        return trace_fields(self.context)

    @property
    def trace_headers(self) -> Headers:
        """traceparent/tracestate of this post's consume span, for every output message."""
        return headers_with_trace((), self.context)
