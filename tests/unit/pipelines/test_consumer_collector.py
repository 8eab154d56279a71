"""The consumer actor's collector thresholds: `pool.consumer_gc_thresholds` at start,
`pool.consumer_gc_thresholds_behind` while the consumer is behind."""

from __future__ import annotations

import gc

import pytest
from pydantic import ValidationError

from pipelines.collector import CollectorPace, tune_collector
from pipelines.config import PoolSettings


@pytest.fixture
def thresholds():
    """Python's thresholds before the test, put back after it."""
    before = gc.get_threshold()
    yield before
    gc.set_threshold(*before)


def test_given_thresholds_are_set_and_absent_ones_leave_pythons(thresholds):
    assert tune_collector(None).caught_up == thresholds
    assert gc.get_threshold() == thresholds
    pool = PoolSettings(consumer_gc_thresholds=[50000, 50, 100])
    pace = tune_collector(pool.consumer_gc_thresholds, pool.consumer_gc_thresholds_behind)
    assert gc.get_threshold() == (50000, 50, 100)
    assert pace.caught_up == (50000, 50, 100)


def test_behind_the_thresholds_are_rarer_and_caught_up_they_are_back(thresholds):
    behind = PoolSettings().consumer_gc_thresholds_behind
    assert behind is not None and behind[0] > thresholds[0]
    pace = tune_collector(None, behind)
    pace.set_behind(True)
    assert gc.get_threshold() == behind
    pace.set_behind(True)
    assert gc.get_threshold() == behind
    pace.set_behind(False)
    assert gc.get_threshold() == thresholds


def test_the_thresholds_are_set_only_when_the_state_changes(thresholds):
    pace = CollectorPace(caught_up=thresholds, behind=(9000, 9, 9))
    pace.set_behind(False)  # caught up already: what someone else set stays
    gc.set_threshold(1234, 5, 6)
    pace.set_behind(False)
    assert gc.get_threshold() == (1234, 5, 6)
    pace.set_behind(True)
    assert gc.get_threshold() == (9000, 9, 9)


def test_without_behind_thresholds_they_never_change(thresholds):
    pace = tune_collector(None, None)
    pace.set_behind(True)
    assert gc.get_threshold() == thresholds


@pytest.mark.parametrize("field", ["consumer_gc_thresholds", "consumer_gc_thresholds_behind"])
@pytest.mark.parametrize("bad", [[0, 10, 10], [700, 10], [700, "many", 10]])
def test_thresholds_are_three_positive_integers(field, bad):
    with pytest.raises(ValidationError, match=field):
        PoolSettings(**{field: bad})


def test_behind_thresholds_may_be_turned_off():
    assert PoolSettings(consumer_gc_thresholds_behind=None).consumer_gc_thresholds_behind is None
