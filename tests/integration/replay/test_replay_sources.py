"""`vlmod replay` on a real Tansu topic and a real PostgreSQL sink: the report JSONL gives."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest

from contracts.records import Action, Post
from kafka_io.clients import KafkaWriter, OutMessage
from sinks.postgres import PostgresStore
from tests.unit.replay.builders import (
    START,
    compile_text,
    decided,
    record_of,
    replay_json,
    review,
    write_jsonl,
)

POLICY = """\
id: weapons
version: {version}
mode: {mode}
signals:
  labels:
    weapon: "a weapon such as a gun or a knife"
  nsfw: true
default: allow
rules:
  - id: explicit
    when: nsfw > 0.9
    action: block
  - id: weapon-display
    when: labels.weapon > {threshold}
    action: review
    queue: weapons
"""


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """200 posts' active and shadow verdicts (the first carrying the record), and decisions."""
    folder = tmp_path_factory.mktemp("replay-sources")
    active = compile_text(
        folder / "v1", "w.yaml", POLICY.format(version=1, mode="active", threshold=0.8)
    )
    shadow = compile_text(
        folder / "v1", "w-next.yaml", POLICY.format(version=2, mode="shadow", threshold=0.6)
    )
    rng = random.Random(3)
    verdicts, decisions = [], []
    for n in range(200):
        values = {"labels.weapon": rng.random(), "nsfw": rng.random() ** 4}
        if n % 17 == 0:
            values.pop("nsfw")  # not recorded: the candidate cannot replay it where it matters
        post = {"id": f"p{n}", "text": "look", "images": [], "meta": {}}
        at = START + timedelta(seconds=n)
        first = decided(active, record_of(active, post, values), at=at)
        verdicts += [
            first,
            decided(shadow, record_of(shadow, post, values), at=at, with_record=False),
        ]
        if n % 2 == 0:
            final = first.action if rng.random() < 0.7 else Action.ALLOW
            decisions.append(review(first, final))
    candidates = folder / "candidates"
    compile_text(candidates, "w.yaml", POLICY.format(version=3, mode="active", threshold=0.7))
    compile_text(candidates, "w-next.yaml", POLICY.format(version=4, mode="shadow", threshold=0.5))
    history = write_jsonl(folder / "history.jsonl", verdicts)
    decided_file = write_jsonl(folder / "decisions.jsonl", decisions)
    expected = replay_json(
        "--policy", candidates, "--history", history, "--decisions", decided_file
    )
    assert expected["policies"]["weapons"]["changed"] > 0
    assert expected["not_replayable"]["count"] > 0
    return verdicts, decisions, candidates, decided_file, expected


def publish(settings, topic: str, records) -> None:
    writer = KafkaWriter(settings)
    try:
        writer.send_all(
            [OutMessage(topic, r.model_dump_json().encode(), r.post_id.encode()) for r in records]
        )
    finally:
        writer.close()


def test_a_topic_gives_the_same_report_as_the_jsonl_file(recorded, kafka_settings, topic_factory):
    verdicts, decisions, candidates, _, expected = recorded
    history, decided_topic = topic_factory("verdicts"), topic_factory("decisions")
    publish(kafka_settings, history, verdicts)
    publish(kafka_settings, decided_topic, decisions)
    report = replay_json(
        "--policy",
        candidates,
        "--history",
        f"topic:{history}",
        "--decisions",
        f"topic:{decided_topic}",
        "--bootstrap",
        kafka_settings.bootstrap_servers,
    )
    assert report == expected


def test_the_postgres_sink_gives_the_same_report_as_the_jsonl_file(recorded, postgres_schema):
    verdicts, _, candidates, decided_file, expected = recorded
    dsn = postgres_schema
    store = PostgresStore(dsn)
    store.ensure_schema()
    posts = [Post(id=v.post_id, text="look") for v in verdicts if v.record is not None]
    store.write(posts, verdicts)
    report = replay_json("--policy", candidates, "--history", dsn, "--decisions", decided_file)
    assert report == expected
