"""`vlmod demo --review`: the review console over the demo's review topics, until Ctrl-C.

A demo reviewer with a fresh random password may work every queue; the console consumes the
review topics the demo just filled, in its own group, and publishes decisions to
`moderation.decisions` on the demo's broker.
"""

from __future__ import annotations

import secrets
import threading

from rich.console import Console

from pipelines.config import KafkaSettings
from policies.policy_set import PolicySet

DEMO_REVIEWER = "demo"


def review_topics(policy_set: PolicySet) -> tuple[dict[str, str], list[str]]:
    """Queue name -> topic over the active policies' rules; topics whose name is taken, apart."""
    topics: dict[str, str] = {}
    left_out = []
    for policy in policy_set.active:
        for rule in policy.rules:
            if rule.queue is None:
                continue
            topic = policy.queue_topic(rule.queue)
            if topics.setdefault(rule.queue, topic) != topic and topic not in left_out:
                left_out.append(topic)
    return topics, left_out


def serve_demo_console(
    console: Console,
    *,
    kafka: KafkaSettings,
    redis_url: str,
    policy_set: PolicySet,
    port: int,
    consumer_overrides: dict[str, int],
) -> None:
    """Serve the console on 127.0.0.1:`port` until Ctrl-C, and say how to log in."""
    from pipelines.commands.review import serve_console
    from pipelines.review.auth import hash_password
    from pipelines.review.settings import ReviewConfig, ReviewerSettings

    password = secrets.token_urlsafe(12)
    topics, left_out = review_topics(policy_set)
    config = ReviewConfig(
        kafka=kafka,
        redis_url=redis_url,
        review_topics=topics,
        consumer_overrides=consumer_overrides,
        session_secret=secrets.token_urlsafe(32),
        reviewers={
            DEMO_REVIEWER: ReviewerSettings(password_argon2=hash_password(password), queues=["*"])
        },
    )
    if left_out:
        console.print(f"not in the console (queue name taken by another topic): {left_out}")

    def ready(url: str) -> None:
        console.print(
            f"review console: {url} · reviewer [bold]{DEMO_REVIEWER}[/bold], password "
            f"[bold]{password}[/bold] · Ctrl-C stops everything"
        )

    serve_console(config, host="127.0.0.1", port=port, stop_event=threading.Event(), on_ready=ready)
