"""When to try an inference again, and how long to wait first."""

from __future__ import annotations

import random

from policies.exceptions import ModerationError, Stage

# Stages whose failures can pass on their own (a busy host, a lost replica); decode and validate
# failures are facts about the message and never change on a retry.
RETRYABLE_STAGES = frozenset({Stage.FETCH_IMAGE, Stage.INFER})


def should_retry(error: ModerationError, attempts: int, max_attempts: int) -> bool:
    """True when `error` may pass on its own and the post has tries left."""
    retryable = getattr(error, "retryable", error.stage in RETRYABLE_STAGES)
    return bool(retryable) and attempts < max_attempts


def backoff_delay(
    attempt: int, *, base_s: float, cap_s: float, rng: random.Random | None = None
) -> float:
    """Full-jitter exponential backoff before try number `attempt + 1` (attempt counts from 1)."""
    ceiling = min(cap_s, base_s * 2 ** max(0, attempt - 1))
    return (rng or random).uniform(0, ceiling)
