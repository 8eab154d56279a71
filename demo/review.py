"""`vlmod demo --review`: the review console over the demo's review topics, until Ctrl-C.

A demo reviewer with a fresh random password may work every queue; the console consumes the
review topics the demo just filled, in its own group, and publishes decisions to
`moderation.decisions` on the demo's broker.
"""

from __future__ import annotations

import secrets
import threading

from rich.console import Console

from kafka_io.settings import KafkaSettings
from policies.policy_set import PolicySet
from review.settings import QueueSettings

DEMO_REVIEWER = "demo"


def review_topics(policy_set: PolicySet) -> dict[str, str | QueueSettings]:
    """Console queue -> topic over the active policies' rules, every topic its own queue.

    A queue name that two policies send to different topics becomes two console queues: the
    first keeps the name, a later one is `<policy id>.<name>` and still takes the tasks named
    `<name>` on its own topic.
    """
    queues: dict[str, str | QueueSettings] = {}
    seen_topics: set[str] = set()
    for policy in policy_set.active:
        for queue, topic in policy.routed_queues().items():
            if topic in seen_topics:
                continue
            seen_topics.add(topic)
            if queue not in queues:
                queues[queue] = topic
            else:
                queues[f"{policy.ref.id}.{queue}"] = QueueSettings(topic=topic, queue=queue)
    return queues


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
    from review.auth import hash_password
    from review.serve import serve_console
    from review.settings import ReviewConfig, ReviewerSettings

    password = secrets.token_urlsafe(12)
    config = ReviewConfig(
        kafka=kafka,
        redis_url=redis_url,
        review_topics=review_topics(policy_set),
        consumer_overrides=consumer_overrides,
        session_secret=secrets.token_urlsafe(48),
        reviewers={
            DEMO_REVIEWER: ReviewerSettings(password_argon2=hash_password(password), queues=["*"])
        },
    )

    def ready(url: str) -> None:
        console.print(
            f"review console: {url} · reviewer [bold]{DEMO_REVIEWER}[/bold], password "
            f"[bold]{password}[/bold] · Ctrl-C stops everything"
        )

    serve_console(config, host="127.0.0.1", port=port, stop_event=threading.Event(), on_ready=ready)
