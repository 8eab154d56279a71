"""Heads: small classifiers trained on reviewers' labels over post embeddings, versioned in
Redis and read by policies like any producer (`heads: [spam-wave]`)."""

from heads.exceptions import HeadError, HeadNotFound, TrainingRefused
from heads.model import EmbeddingRef, Head, HeadMetrics
from heads.store import HeadInfo, HeadStore
from heads.train import Examples, train_head

__all__ = [
    "EmbeddingRef",
    "Examples",
    "Head",
    "HeadError",
    "HeadInfo",
    "HeadMetrics",
    "HeadNotFound",
    "HeadStore",
    "TrainingRefused",
    "train_head",
]
