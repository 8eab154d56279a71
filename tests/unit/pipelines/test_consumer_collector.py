"""`pool.consumer_gc_thresholds`: the consumer actor's collector thresholds."""

from __future__ import annotations

import gc

import pytest
from pydantic import ValidationError

from pipelines.actors import tune_collector
from pipelines.config import PoolSettings


def test_given_thresholds_are_set_and_absent_ones_leave_pythons():
    before = gc.get_threshold()
    try:
        tune_collector(None)
        assert gc.get_threshold() == before
        tune_collector(PoolSettings(consumer_gc_thresholds=[50000, 50, 100]).consumer_gc_thresholds)
        assert gc.get_threshold() == (50000, 50, 100)
    finally:
        gc.set_threshold(*before)


@pytest.mark.parametrize("bad", [[0, 10, 10], [700, 10], [700, "many", 10]])
def test_thresholds_are_three_positive_integers(bad):
    with pytest.raises(ValidationError, match="consumer_gc_thresholds"):
        PoolSettings(consumer_gc_thresholds=bad)
