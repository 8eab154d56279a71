"""`vlmod replay --to-queue` on a real Tansu and Redis: the sample lands on the queue's topic,
the console's ingester queues each task once however often the command runs, and a decision on
one (made by the console's planner) labels its post so that the next run draws another."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import UTC, datetime

from contracts.records import Action
from contracts.review import ReviewDecision, ReviewTask
from kafka_io.clients import KafkaWriter, OutMessage, create_topics
from review.decision_build import DecisionChoice
from review.decision_plans import Deciding, DecisionPlanner
from review.ingest import ReviewIngest, TopicQueue
from review.tasks import TaskStore
from tests.integration.topics import ingest_until, read_until
from tests.unit.replay.builders import replay_json, vlmod_replay, write_jsonl
from tests.unit.replay.qa_world import candidates, history, transition_of

GROUP_TIMEOUTS = {"session_timeout_ms": 6000, "heartbeat_interval_ms": 500}
NOW = datetime(2026, 12, 1, tzinfo=UTC)


def test_tasks_land_on_the_queue_topic_once_each_and_their_decisions_count(
    tmp_path, kafka_settings, redis_url, group_id
):
    queue = f"qa-{uuid.uuid4().hex[:8]}"
    topic = f"review.{queue}"  # the pipeline's default topic for a queue the policy does not map
    create_topics(kafka_settings, [topic])
    directory, _ = candidates(tmp_path)
    history_file = write_jsonl(tmp_path / "history.jsonl", history(tmp_path))
    bootstrap = ("--bootstrap", kafka_settings.bootstrap_servers)
    run = ("--policy", directory, "--history", history_file, "--to-queue", queue, "--sample", "6")

    first = replay_json(*run, *bootstrap)
    # N=6 over 2, 12 and 3 changed posts (hand-counted in qa_world, allocated in the unit test).
    strata = {"allow->block": 1, "allow->review": 3, "review->block": 2}
    assert first["to_queue"] == {"tasks": 6, "topics": {topic: 6}, "strata": {"weapons": strata}}
    records = read_until(kafka_settings, topic, 6)
    tasks = [ReviewTask.model_validate_json(r.value) for r in records]
    assert [r.key.decode() for r in records] == [t.key for t in tasks]
    assert Counter(transition_of(t.post.id) for t in tasks) == strata
    assert all(t.origin is not None and t.queue == queue for t in tasks)

    again = replay_json(*run, *bootstrap)
    assert again["to_queue"] == first["to_queue"]
    assert len(read_until(kafka_settings, topic, 12)) == 12, "written again, the same keys"

    # One partition: once a task written after both runs is stored, all 12 were read.
    last = tasks[0].model_copy(update={"key": "last", "origin": None, "priority": 10**6})
    writer = KafkaWriter(kafka_settings)
    try:
        writer.send(OutMessage(topic, last.model_dump_json().encode(), b"last"))
    finally:
        writer.close()
    store = TaskStore(redis_url, namespace=f"t-{uuid.uuid4().hex[:8]}")
    mapping = {topic: TopicQueue(queue, queue)}
    ingest = ReviewIngest(kafka_settings, mapping, group_id, store, **GROUP_TIMEOUTS)
    try:
        added = ingest_until(ingest, lambda: store.get("last") is not None)
    finally:
        ingest.close()
    assert added == 7, "6 tasks, each once, and the last one"
    assert all(store.get(t.key) == t for t in tasks)

    claim = store.claim(queue, "ana")
    assert claim is not None and claim.task.origin is not None
    planner = DecisionPlanner(decisions_topic="decisions", review_topics={queue: topic})
    choice = DecisionChoice("overturn", action=Action.ALLOW)
    plan = planner.plan(Deciding(claim, "ana", choice, [], NOW, "d-1"))
    store.decide(claim.task.key, "ana", final=plan.final)
    (decision,) = [ReviewDecision.model_validate_json(m.value) for m in plan.messages]
    decided = write_jsonl(tmp_path / "decisions.jsonl", [decision])

    third = replay_json(*run, "--decisions", decided, *bootstrap)
    assert third["to_queue"]["tasks"] == 6
    records = read_until(kafka_settings, topic, 19)
    latest = {ReviewTask.model_validate_json(r.value).key for r in records[13:]}
    assert len(latest) == 6 and claim.task.key not in latest, "a labelled post is not drawn"
    # Another post takes its place (two where the allocation shifts with the smaller stratum).
    assert 1 <= len(latest - {t.key for t in tasks}) <= 2


def test_a_missing_topic_is_one_line_and_nothing_is_written(tmp_path, kafka_settings):
    directory, _ = candidates(tmp_path)
    history_file = write_jsonl(tmp_path / "history.jsonl", history(tmp_path))
    queue = f"absent-{uuid.uuid4().hex[:8]}"
    result = vlmod_replay(
        "--policy",
        directory,
        "--history",
        history_file,
        "--to-queue",
        queue,
        "--sample",
        "3",
        "--bootstrap",
        kafka_settings.bootstrap_servers,
    )
    assert result.exit_code == 1
    assert f"no such topic at {kafka_settings.bootstrap_servers}: 'review.{queue}'" in result.output
