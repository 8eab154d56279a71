"""A head producer holding one 2-dimension head, as if just read from Redis: its score is the
logistic of an embedding's first number (weights [1, 0], bias 0, threshold 0.5)."""

from __future__ import annotations

import time

from contracts.producers import ProducerContext
from heads.model import EmbeddingRef, Head
from heads.producer import HeadSignals


def producer_holding(context: ProducerContext, *, version: int, model: str) -> HeadSignals:
    """A bound HeadSignals holding head `wave` at `version`, trained on `model`'s embeddings."""
    producer = HeadSignals()
    producer.bind(context)
    head = Head(
        name="wave",
        version=version,
        weights=[1.0, 0.0],
        bias=0.0,
        threshold=0.5,
        embedding=EmbeddingRef(model=model, dim=2),
        training_sha256="0" * 64,
        examples=10,
        positives=5,
    )
    producer._held["wave"] = (time.monotonic(), head)
    return producer
