"""How long to wait before trying again: shared by the pipeline's retries and the sinks'."""

from __future__ import annotations

import random


def backoff_delay(
    attempt: int, *, base_s: float, cap_s: float, rng: random.Random | None = None
) -> float:
    """Full-jitter exponential backoff before try number `attempt + 1` (attempt counts from 1)."""
    ceiling = min(cap_s, base_s * 2 ** max(0, attempt - 1))
    return (rng or random).uniform(0, ceiling)
