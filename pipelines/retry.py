"""When to try a post again, and how long to wait first."""

from __future__ import annotations

from contracts.errors import ModerationError
from operators.exceptions import ImageFetchError, ImageFetchTimeout, InferenceError

# Failures that can pass on their own: a slow or flaky image host, a model that failed on a batch.
# Every other deliberate error is a fact about the message (bad JSON, an image too large) that
# no retry changes. A producer names errors of its own that a retry may cure (`retryable`,
# contracts.producers), and the gatherer retries those too.
RETRYABLE_ERRORS = (ImageFetchError, ImageFetchTimeout, InferenceError)


def is_retryable(error: BaseException) -> bool:
    """True for transient failures: the ones above, and infrastructure errors (a lost replica)."""
    if isinstance(error, RETRYABLE_ERRORS):
        return True
    return not isinstance(error, ModerationError)


def should_retry(retryable: bool, attempts: int, max_attempts: int) -> bool:
    """True when the failure is transient and the post has tries left."""
    return retryable and attempts < max_attempts
