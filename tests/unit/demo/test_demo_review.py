"""The demo's review console takes every review topic of the example policies."""

from __future__ import annotations

from pathlib import Path

from demo.review import review_topics
from pipelines.runner import review_topics as routed_topics
from policies.loader import load_policy_dir
from review.settings import QueueSettings

EXAMPLES = Path(__file__).resolve().parents[3] / "policies" / "examples"


def test_every_review_topic_of_the_examples_is_a_console_queue():
    policy_set = load_policy_dir(EXAMPLES)
    queues = review_topics(policy_set)
    topics = [q.topic if isinstance(q, QueueSettings) else q for q in queues.values()]
    assert sorted(topics) == sorted(routed_topics(policy_set)), "no topic is left out"
    assert len(set(topics)) == len(topics), "one queue per topic"


def test_a_queue_name_two_policies_share_becomes_two_queues():
    queues = review_topics(load_policy_dir(EXAMPLES))
    assert queues["weapons"] == "review.weapons"
    assert queues["marketplace-listings.weapons"] == QueueSettings(
        topic="marketplace.review.weapons", queue="weapons"
    )
