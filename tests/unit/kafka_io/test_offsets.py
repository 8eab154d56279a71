from kafka_io.offsets import OffsetTracker


def tracker_with(partition, offsets):
    tracker = OffsetTracker()
    for offset in offsets:
        tracker.track(partition, offset)
    return tracker


def test_commit_waits_for_the_lowest_outstanding_offset():
    tracker = tracker_with("p0", range(10, 15))
    tracker.mark_done("p0", 12)
    tracker.mark_done("p0", 13)
    assert tracker.to_commit() == {}
    tracker.mark_done("p0", 10)
    assert tracker.to_commit() == {"p0": 11}
    tracker.mark_done("p0", 11)
    assert tracker.to_commit() == {"p0": 14}
    assert tracker.pending() == 1


def test_committed_positions_are_not_offered_again():
    tracker = tracker_with("p0", [0, 1])
    tracker.mark_done("p0", 0)
    tracker.committed(tracker.to_commit())
    assert tracker.to_commit() == {}
    tracker.mark_done("p0", 1)
    assert tracker.to_commit() == {"p0": 2}


def test_partitions_are_independent():
    tracker = tracker_with("a", [0, 1])
    tracker.track("b", 7)
    tracker.mark_done("b", 7)
    tracker.mark_done("a", 1)
    assert tracker.to_commit() == {"b": 8}


def test_forgotten_partition_ignores_late_completions():
    tracker = tracker_with("a", [0, 1])
    tracker.forget(["a"])
    tracker.mark_done("a", 0)
    assert tracker.to_commit() == {}
    assert tracker.pending() == 0


def test_rewind_drops_offsets_that_will_be_redelivered():
    tracker = tracker_with("a", [0, 1, 2, 3])
    tracker.mark_done("a", 3)
    tracker.rewind("a", 1)
    assert tracker.pending() == 1
    tracker.mark_done("a", 0)
    assert tracker.to_commit() == {"a": 1}
    for offset in (1, 2, 3):
        tracker.track("a", offset)
        tracker.mark_done("a", offset)
    assert tracker.to_commit() == {"a": 4}
