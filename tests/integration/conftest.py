"""Real Tansu, Redis, PostgreSQL and Ray, started once per session by the harness; factories."""

from __future__ import annotations

import itertools
import os
import uuid

import pytest

from demo.harness import RedisServer, running_services
from demo.postgres import running_postgres
from kafka_io.clients import create_topics
from kafka_io.settings import KafkaSettings
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


def pytest_sessionfinish(session, exitstatus):
    """Fail the run when a server the harness started is still alive at the end: the harness
    starts each in its own session, as a child of this process."""
    leaked = servers_left(os.getpid())
    if leaked:
        print("\nprocesses left behind by the harness:\n  " + "\n  ".join(leaked))
        session.exitstatus = 1
