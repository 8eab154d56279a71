"""Where a consumer gets signals from: the protocol, and a source that needs no model."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from contracts.records import ModelRef, Signals
from pipelines.signal_records import InferenceRequest, InferenceResult


class SignalSource(Protocol):
    """Anything that turns inference requests into results, one per request, in order."""

    @property
    def model(self) -> ModelRef:
        """The model whose signals these are."""
        ...

    def compute(self, requests: Sequence[InferenceRequest]) -> list[InferenceResult]:
        """Results for `requests`; never raises for one bad post."""
        ...


@dataclass
class NoopSignals:
    """Answers every prompt with 0.0 without a model: measures the plumbing alone."""

    model: ModelRef = field(default_factory=lambda: ModelRef(name="noop", revision=None))

    def compute(self, requests: Sequence[InferenceRequest]) -> list[InferenceResult]:
        """Zero for every label and question, an empty caption when one is asked for."""
        return [
            InferenceResult(
                r.post_id,
                Signals(
                    labels=dict.fromkeys(r.labels, 0.0),
                    answers=dict.fromkeys(r.questions, 0.0),
                    description="" if r.describe else None,
                ),
            )
            for r in requests
        ]
