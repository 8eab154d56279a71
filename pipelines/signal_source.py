"""Where a consumer gets signals from: the protocol, and a source that needs no model."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from contracts.records import ModelRef
from contracts.vlm import empty_value
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
    """Answers every task with its empty value without a model: measures the plumbing alone."""

    model: ModelRef = field(default_factory=lambda: ModelRef(name="noop", revision=None))

    def compute(self, requests: Sequence[InferenceRequest]) -> list[InferenceResult]:
        """0.0 for every label and question, "" for a caption, [] for an embedding."""
        return [
            InferenceResult(r.post_id, {task: empty_value(task) for task in r.tasks})
            for r in requests
        ]
