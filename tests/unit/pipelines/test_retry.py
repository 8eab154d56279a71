import random

import pytest

from pipelines.retry import backoff_delay, should_retry
from policies.exceptions import ModerationError, PostDecodeError, Stage


def test_inference_failures_are_retried_until_attempts_run_out():
    error = ModerationError("replica died", stage=Stage.INFER)
    assert should_retry(error, attempts=1, max_attempts=3)
    assert should_retry(error, attempts=2, max_attempts=3)
    assert not should_retry(error, attempts=3, max_attempts=3)


def test_decode_failures_are_never_retried():
    assert not should_retry(PostDecodeError("not JSON"), attempts=1, max_attempts=5)


def test_an_error_can_declare_itself_permanent():
    error = ModerationError("image too large", stage=Stage.FETCH_IMAGE)
    error.retryable = False  # type: ignore[attr-defined]
    assert not should_retry(error, attempts=1, max_attempts=5)


@pytest.mark.parametrize(("attempt", "ceiling"), [(1, 0.2), (2, 0.4), (3, 0.8), (10, 5.0)])
def test_backoff_grows_exponentially_up_to_the_cap(attempt, ceiling):
    rng = random.Random(7)
    delays = [backoff_delay(attempt, base_s=0.2, cap_s=5.0, rng=rng) for _ in range(200)]
    assert all(0 <= d <= ceiling for d in delays)
    assert max(delays) > 0.8 * ceiling
