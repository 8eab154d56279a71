"""The pipeline with `sinks: [kafka, postgres]` on real Tansu, Ray and PostgreSQL: one `verdicts`
row per post and active policy and one `posts` row per post with its record, however often the
posts come; with PostgreSQL stopped nothing gets past it, and once it is back every verdict
arrives once."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from demo.postgres import PostgresServer
from pipelines.config import PoolSettings
from sinks.settings import KafkaSinkSettings, PostgresSinkSettings
from tests.integration.pipeline_run import post_messages, publish

POSTS = 1000


def count(dsn: str, sql: str) -> int:
    """The first value of `sql`; 0 before the sink (in a consumer still starting) made tables."""
    with psycopg.connect(dsn) as connection:
        try:
            return int(connection.execute(sql).fetchone()[0])
        except psycopg.errors.UndefinedTable:
            return 0


def wait_until(condition: Callable[[], bool], what: str, timeout_s: float = 180.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting until {what}")
        time.sleep(0.2)


def with_postgres(config, dsn: str):
    sinks = [KafkaSinkSettings(), PostgresSinkSettings(kind="postgres", dsn=dsn)]
    return config.model_copy(update={"sinks": sinks})


def messages_on_verdict_topic(collector) -> int:
    return sum(len(verdicts) for verdicts in collector.outputs.verdicts.values())


def test_posts_published_twice_leave_one_row_per_verdict_and_post(
    e2e_config, start_pipeline, postgres_schema
):
    dsn = postgres_schema
    config = with_postgres(e2e_config(model="noop"), dsn)
    _run, collector = start_pipeline(config)
    messages = post_messages(POSTS, topic=config.topics.inputs[0])
    publish(config, messages)
    collector.wait_for(POSTS)
    assert count(dsn, "SELECT count(*) FROM verdicts WHERE NOT shadow") == POSTS  # one policy
    assert count(dsn, "SELECT count(*) FROM posts") == POSTS
    assert count(dsn, "SELECT count(DISTINCT post_id) FROM verdicts") == POSTS
    recorded = "SELECT count(*) FROM posts WHERE record->'post'->>'id' = post_id"
    assert count(dsn, recorded) == POSTS, "each post's record, from its first verdict"

    publish(config, messages)  # the same posts again
    wait_until(lambda: messages_on_verdict_topic(collector) >= 2 * POSTS, "the second round")
    assert count(dsn, "SELECT count(*) FROM verdicts") == POSTS
    assert count(dsn, "SELECT count(*) FROM posts") == POSTS
    assert count(dsn, "SELECT count(*) FROM posts WHERE last_seen > first_seen") == POSTS
    assert count(dsn, recorded) == POSTS


@pytest.fixture
def own_postgres():
    server = PostgresServer(Path(tempfile.mkdtemp(prefix="vlmod-postgres-e2e-")))
    server.start()
    yield server
    server.stop()


def test_postgres_stopped_mid_run_holds_the_stream_and_loses_nothing(
    e2e_config, start_pipeline, own_postgres
):
    total = 300
    pool = PoolSettings(num_cpus=0.25, consumer_num_cpus=0.25, max_poll_records=8)
    config = with_postgres(e2e_config(model="noop", pool=pool), own_postgres.dsn)
    run, collector = start_pipeline(config)
    messages = post_messages(total, topic=config.topics.inputs[0])
    publish(config, messages[:100])
    wait_until(lambda: count(own_postgres.dsn, "SELECT count(*) FROM posts") >= 40, "rows")

    own_postgres.stop()
    failed = lambda: sum(s.get("failed_batches", 0) for s in run.stats())  # noqa: E731
    publish(config, messages[100:])
    wait_until(lambda: failed() >= 2, "batches fail while PostgreSQL is down")
    held = collector.resolved()
    wait_until(lambda: failed() >= 6, "more batches fail")
    assert collector.resolved() == held, "verdicts reached Kafka past a stopped PostgreSQL"
    assert held < total

    own_postgres.start()
    outputs = collector.wait_for(total)
    assert not outputs.dead_letters
    assert sorted(outputs.verdicts) == sorted(m.key.decode() for m in messages)
    assert count(own_postgres.dsn, "SELECT count(*) FROM verdicts") == total
    assert count(own_postgres.dsn, "SELECT count(*) FROM posts") == total
