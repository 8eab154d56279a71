import random

import pytest

from contracts.backoff import backoff_delay
from contracts.errors import PostDecodeError
from operators.exceptions import ImageDecodeError, ImageFetchTimeout, ImageTooLarge, InferenceError
from pipelines.retry import is_retryable, should_retry


@pytest.mark.parametrize(
    "error",
    [
        InferenceError("the model failed"),
        ImageFetchTimeout("slow host", limit="fetch_timeout_s"),
        RuntimeError("replica actor died"),
    ],
)
def test_transient_failures_are_retryable(error):
    assert is_retryable(error)


@pytest.mark.parametrize(
    "error",
    [
        PostDecodeError("not JSON"),
        ImageDecodeError("truncated"),
        ImageTooLarge("too many pixels", limit="max_pixels"),
    ],
)
def test_facts_about_the_message_are_not_retryable(error):
    assert not is_retryable(error)


def test_retries_stop_when_attempts_run_out():
    assert should_retry(True, attempts=1, max_attempts=3)
    assert should_retry(True, attempts=2, max_attempts=3)
    assert not should_retry(True, attempts=3, max_attempts=3)
    assert not should_retry(False, attempts=1, max_attempts=3)


@pytest.mark.parametrize(("attempt", "ceiling"), [(1, 0.2), (2, 0.4), (3, 0.8), (10, 5.0)])
def test_backoff_grows_exponentially_up_to_the_cap(attempt, ceiling):
    rng = random.Random(7)
    delays = [backoff_delay(attempt, base_s=0.2, cap_s=5.0, rng=rng) for _ in range(200)]
    assert all(0 <= d <= ceiling for d in delays)
    assert max(delays) > 0.8 * ceiling
