"""Real Tansu, Redis, PostgreSQL and Ray, started once per session by the harness; factories,
end-to-end pipeline runs (`e2e_config`, `start_pipeline`) and review consoles (`start_console`)."""

from __future__ import annotations

import itertools
import os
import uuid

import pytest

from demo.harness import RedisServer, running_services
from demo.postgres import running_postgres
from kafka_io.clients import create_topics
from kafka_io.settings import KafkaSettings, TopicSettings
from pipelines.config import ModelSettings, PipelineConfig, PoolSettings, RetrySettings
from pipelines.runner import PipelineRun
from tests.integration.consoles import password_hash, start_console  # noqa: F401 (fixtures)
from tests.integration.pipeline_run import E2E_POLICY, GROUP_TIMEOUTS, OutputCollector
from tests.integration.processes import servers_left


def pytest_collection_modifyitems(items):
    for item in items:
        if "/integration/" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def kafka_bootstrap():
    with running_services(kafka=True, redis=False, ray=False) as services:
        yield services.kafka_bootstrap


@pytest.fixture(scope="session")
def redis_url():
    with running_services(kafka=False, redis=True, ray=False) as services:
        yield services.redis_url


@pytest.fixture(scope="session")
def postgres_dsn():
    with running_postgres() as dsn:
        yield dsn


@pytest.fixture
def postgres_schema(postgres_dsn):
    """A DSN whose search path is a schema of this test's own, so tests do not see each
    other's rows."""
    import psycopg

    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_dsn, autocommit=True) as connection:
        connection.execute(f"CREATE SCHEMA {schema}")
    return f"{postgres_dsn}?options=-csearch_path%3D{schema}"


@pytest.fixture(scope="session")
def ray_local():
    with running_services(kafka=False, redis=False, ray=True) as services:
        yield services


@pytest.fixture
def kafka_settings(kafka_bootstrap):
    return KafkaSettings(bootstrap_servers=kafka_bootstrap)


_topic_numbers = itertools.count()


@pytest.fixture
def topic_factory(kafka_settings):
    """Creates uniquely named topics: `topic_factory("posts", partitions=2)` -> name."""

    def make(prefix: str = "t", *, partitions: int = 1) -> str:
        name = f"{prefix}-{next(_topic_numbers)}-{uuid.uuid4().hex[:6]}"
        create_topics(kafka_settings, [name], partitions=partitions)
        return name

    return make


@pytest.fixture
def group_id():
    return f"g-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def redis_factory(tmp_path):
    """Private Redis servers that a test may stop and restart; all stopped at teardown."""
    servers: list[RedisServer] = []

    def make() -> RedisServer:
        server = RedisServer(tmp_path)
        server.start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


@pytest.fixture
def e2e_config(kafka_bootstrap, tmp_path):
    """A pipeline config over fresh topics and a one-policy directory; override with kwargs."""
    prefix = f"e2e-{uuid.uuid4().hex[:8]}"
    policy_dir = tmp_path / "policies"
    policy_dir.mkdir()
    (policy_dir / "e2e.yaml").write_text(E2E_POLICY.format(prefix=prefix))

    def make(*, model="tiny:smolvlm", redis_url=None, pool=None, retry=None) -> PipelineConfig:
        return PipelineConfig(
            kafka=KafkaSettings(bootstrap_servers=kafka_bootstrap),
            consumer_group=prefix,
            consumer_overrides=GROUP_TIMEOUTS,
            topics=TopicSettings.namespaced(prefix),
            redis_url=redis_url,
            model=ModelSettings(name_or_path=model, device="cpu"),
            policy_dir=str(policy_dir),
            pool=pool
            or PoolSettings(
                num_cpus=0.5, consumer_num_cpus=0.25, max_batch_size=16, max_poll_records=16
            ),
            retry=retry or RetrySettings(max_attempts=5, backoff_base_s=0.2, backoff_cap_s=2.0),
        )

    return make


@pytest.fixture
def start_pipeline(ray_local):
    """Starts PipelineRuns and stops them at teardown."""
    runs: list[PipelineRun] = []
    collectors: list[OutputCollector] = []

    def start(config: PipelineConfig) -> tuple[PipelineRun, OutputCollector]:
        from pipelines.producer_registry import pipeline_registry
        from pipelines.runner import review_topics
        from policies.loader import load_policy_dir

        policy_set = load_policy_dir(config.policy_dir, registry=pipeline_registry(config))
        run = PipelineRun(config)
        run.start(policy_set)
        runs.append(run)
        collector = OutputCollector(config, sorted(review_topics(policy_set)))
        collectors.append(collector)
        return run, collector

    yield start
    for collector in collectors:
        collector.close()
    for run in runs:
        run.stop(timeout_s=60)


def pytest_sessionfinish(session, exitstatus):
    """Fail the run when a server the harness started is still alive at the end: the harness
    starts each in its own session, as a child of this process."""
    leaked = servers_left(os.getpid())
    if leaked:
        print("\nprocesses left behind by the harness:\n  " + "\n  ".join(leaked))
        session.exitstatus = 1
