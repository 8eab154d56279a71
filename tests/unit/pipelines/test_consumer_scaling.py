"""Sizing the consumer group from its lag: bounds, partitions, growing at once, shrinking slowly."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from kafka_io.lag import GroupLag
from pipelines.config import PoolSettings
from pipelines.consumer_scaling import ConsumerScaler, ConsumerScaling


def scaling(fewest: int = 1, most: int = 4, per: int = 100, delay: float = 60) -> ConsumerScaling:
    return ConsumerScaling(fewest, most, per, delay)


@pytest.mark.parametrize(
    ("lag", "partitions", "wanted"),
    [
        (0, 8, 1),  # never below the fewest
        (100, 8, 1),
        (101, 8, 2),  # one per 100 behind, rounded up
        (350, 8, 4),
        (10_000, 8, 4),  # never above the most
        (10_000, 3, 3),  # nor above the partitions: a fourth consumer would own none
        (10_000, 0, 1),  # topics not there yet: the fewest
    ],
)
def test_wanted_consumers_follow_the_lag_within_bounds(lag, partitions, wanted):
    assert scaling().wanted(GroupLag(lag, partitions)) == wanted


def test_fewest_wins_over_a_small_partition_count():
    assert scaling(fewest=3).wanted(GroupLag(0, 2)) == 3


def test_grows_at_once_and_shrinks_one_at_a_time_after_the_delay():
    rule = scaling(delay=60)
    assert rule.target(GroupLag(400, 8), current=1, now=0) == 4
    assert rule.target(GroupLag(0, 8), current=4, now=10) == 4  # low since 10
    assert rule.target(GroupLag(0, 8), current=4, now=69) == 4
    assert rule.target(GroupLag(0, 8), current=4, now=70) == 3
    assert rule.target(GroupLag(0, 8), current=3, now=100) == 3  # the next waits a full delay
    assert rule.target(GroupLag(0, 8), current=3, now=130) == 2


def test_a_burst_during_the_delay_starts_it_again():
    rule = scaling(delay=60)
    assert rule.target(GroupLag(0, 8), current=2, now=0) == 2
    assert rule.target(GroupLag(200, 8), current=2, now=30) == 2  # asks for 2 again
    assert rule.target(GroupLag(0, 8), current=2, now=70) == 2  # low only since 70
    assert rule.target(GroupLag(0, 8), current=2, now=130) == 1


def test_of_pool_settings_without_max_is_fixed():
    fixed = ConsumerScaling.of(PoolSettings(consumers=2))
    assert fixed.wanted(GroupLag(1_000_000, 16)) == 2
    grows = ConsumerScaling.of(PoolSettings(consumers=1, max_consumers=3, lag_per_consumer=10))
    assert grows.wanted(GroupLag(1_000_000, 16)) == 3


def test_max_consumers_below_consumers_is_refused():
    with pytest.raises(ValidationError, match=r"max_consumers \(1\) is below consumers \(2\)"):
        PoolSettings(consumers=2, max_consumers=1)


def test_scaler_step_resizes_to_the_target():
    group = [1]
    lags = iter([GroupLag(250, 4), GroupLag(250, 4), GroupLag(0, 4), GroupLag(0, 4)])
    resized: list[int] = []

    def resize(count: int) -> None:
        resized.append(count)
        group[0] = count

    scaler = ConsumerScaler(scaling(delay=5), lambda: next(lags), resize, lambda: group[0], 1.0)
    for now in (0, 1, 2, 8):
        scaler.step(now)
    assert resized == [3, 2]  # up to 3 at once; down by one once low for 5 s
