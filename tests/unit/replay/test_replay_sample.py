"""The replay-QA sample: its allocation over strata, and which changed posts it draws.

Expected allocations are worked out by hand from the rule in `replay.sample` (one per stratum,
the rest in proportion to the sizes beyond that one, largest remainder first); the posts drawn
are checked against keys computed independently of the code under test.
"""

from __future__ import annotations

from collections import Counter

import pytest

from contracts.records import Action
from replay.metrics import labels_from
from replay.run import replay_posts
from replay.sample import StratifiedSample, allocate
from tests.unit.replay.builders import review
from tests.unit.replay.qa_world import (
    POSTS,
    candidates,
    history,
    posts,
    reference_key,
    transition_of,
)

P = "weapons"


@pytest.mark.parametrize(
    ("sizes", "n", "expected"),
    [
        # 90, 9, 1 and N=10: one each; 7 shared over 89, 8, 0 (of 97): quotas 6.42, 0.58, 0;
        # floors 6, 0, 0 leave one seat, to the largest remainder (0.58).
        ({"a": 90, "b": 9, "c": 1}, 10, {"a": 7, "b": 2, "c": 1}),
        # N at least the total: everything.
        ({"a": 3, "b": 1}, 4, {"a": 3, "b": 1}),
        ({"a": 3, "b": 1}, 50, {"a": 3, "b": 1}),
        # Fewer seats than strata: the largest strata, ties by name.
        ({"a": 5, "b": 5, "c": 7}, 2, {"a": 1, "b": 0, "c": 1}),
        ({"a": 5, "b": 5, "c": 7}, 3, {"a": 1, "b": 1, "c": 1}),
        # Equal remainders: the stratum first by name.
        ({"a": 3, "b": 3}, 3, {"a": 2, "b": 1}),
        # Empty strata are no strata.
        ({"a": 4, "b": 0}, 2, {"a": 2}),
    ],
)
def test_allocation_is_one_per_stratum_then_proportional(sizes, n, expected):
    strata = {(P, name): size for name, size in sizes.items()}
    assert allocate(strata, n) == {(P, name): k for name, k in expected.items()}


def test_allocation_sums_to_n_and_stays_within_one_of_the_proportional_share():
    sizes = {(P, f"s{k}"): size for k, size in enumerate([1, 2, 3, 5, 8, 13, 21, 34, 55])}
    total, strata = sum(sizes.values()), len(sizes)
    for n in range(1, total + 3):
        given = allocate(sizes, n)
        assert sum(given.values()) == min(n, total)
        assert all(0 <= given[s] <= sizes[s] for s in sizes)
        if strata <= n < total:
            share = {s: (n - strata) * (sizes[s] - 1) / (total - strata) for s in sizes}
            assert all(given[s] >= 1 and abs(given[s] - 1 - share[s]) < 1 for s in sizes)


def sampled(tmp_path, n, labels=None):
    _, policies = candidates(tmp_path)
    sample = StratifiedSample(n)
    report = replay_posts(posts(tmp_path), policies, labels, sample=sample)
    return report, sample, policies.policies[0].ref.sha256


def test_the_sample_draws_the_allocated_count_per_transition_with_the_first_keys(tmp_path):
    report, sample, sha = sampled(tmp_path, 6)
    assert report.policies[P].changed == 17
    assert dict(sample.sizes) == {
        (P, "allow->block"): 2,
        (P, "allow->review"): 12,
        (P, "review->block"): 3,
    }
    drawn = sample.drawn()
    # N=6 over 2, 12, 3: one each; 3 shared over 1, 11, 2 (of 14): quotas 0.21, 2.36, 0.43;
    # floors 0, 2, 0 leave one seat, to review->block (remainder 6/14 over 5/14 and 3/14).
    assert Counter(d.transition for d in drawn) == {
        "allow->block": 1,
        "allow->review": 3,
        "review->block": 2,
    }
    for transition, count in (("allow->block", 1), ("allow->review", 3), ("review->block", 2)):
        ids = [post_id for post_id, _, _ in POSTS if transition_of(post_id) == transition]
        first = sorted(ids, key=lambda i: reference_key(i, P, sha))[:count]
        got = [d.post.post_id for d in drawn if d.transition == transition]
        assert sorted(got) == sorted(first)
    assert all(d.key == reference_key(d.post.post_id, P, sha) for d in drawn)


def test_the_same_history_draws_the_same_sample(tmp_path):
    _, first, _ = sampled(tmp_path, 5)
    _, again, _ = sampled(tmp_path, 5)
    assert [d.key for d in first.drawn()] == [d.key for d in again.drawn()]


def test_fewer_seats_than_strata_go_to_the_largest(tmp_path):
    _, sample, _ = sampled(tmp_path, 2)
    assert Counter(d.transition for d in sample.drawn()) == {
        "allow->review": 1,
        "review->block": 1,
    }


def test_posts_a_reviewer_labelled_are_not_drawn(tmp_path):
    verdicts = {v.post_id: v for v in history(tmp_path)}
    labelled = ["w-low-0", "w-low-1", "w-high-0"]
    decisions = [review(verdicts[i], Action.ALLOW) for i in labelled]
    _, sample, _ = sampled(tmp_path, 100, labels_from(decisions))
    assert dict(sample.sizes) == {
        (P, "allow->block"): 2,
        (P, "allow->review"): 10,
        (P, "review->block"): 2,
    }
    drawn = {d.post.post_id for d in sample.drawn()}
    assert len(drawn) == 14 and not drawn & set(labelled)
