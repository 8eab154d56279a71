"""Which review-queue topics a policy set can route to (created at start-up)."""

from __future__ import annotations

from pipelines.runner import review_topics
from policies.loader import load_policy_dir


def test_review_topics_are_those_of_active_policies_queues(tmp_path):
    active = (
        "id: a\nversion: 1\nqueues:\n  spam: custom.spam\nrules:\n"
        "  - {id: r1, when: \"text == 'x'\", action: review, queue: spam}\n"
        "  - {id: r2, when: \"text == 'y'\", action: block, queue: weapons}\n"
        "  - {id: r3, when: \"text == 'z'\", action: block}\n"
    )
    shadow = (
        "id: a\nversion: 2\nmode: shadow\nrules:\n"
        "  - {id: r1, when: \"text == 'x'\", action: review, queue: only-in-shadow}\n"
    )
    (tmp_path / "a.yaml").write_text(active)
    (tmp_path / "a-next.yaml").write_text(shadow)
    # a reads no post.truncated: a cut post it would allow goes to the cut-text queue
    expected = {"custom.spam", "review.weapons", "review.cut-text"}
    assert review_topics(load_policy_dir(tmp_path)) == expected


def test_a_policy_that_says_how_to_treat_cut_text_routes_nothing_to_cut_text(tmp_path):
    policy = (
        "id: b\nversion: 1\nrules:\n"
        "  - {id: cut, when: post.truncated, action: review, queue: spam}\n"
    )
    (tmp_path / "b.yaml").write_text(policy)
    assert review_topics(load_policy_dir(tmp_path)) == {"review.spam"}
