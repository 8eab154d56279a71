"""The harness starts real services, and leaves no process of its own behind."""

from __future__ import annotations

import subprocess

import redis

from demo.harness import Services, running_services
from kafka_io.clients import KafkaWriter, OutMessage, create_topics
from kafka_io.settings import KafkaSettings


def live_pids() -> set[int]:
    out = subprocess.run(["ps", "-e", "-o", "pid="], capture_output=True, text=True, check=True)
    return {int(line) for line in out.stdout.split()}


def owned_pids(services: Services) -> list[int]:
    """Process ids of the servers `running_services` started itself."""
    return [s.process.pid for s in services.owned if s.process is not None]


def test_services_answer_and_are_gone_after_exit(tmp_path):
    with running_services(kafka=True, redis=True, ray=False, workdir=tmp_path) as services:
        pids = owned_pids(services)
        assert len(pids) == 2 and set(pids) <= live_pids()
        assert redis.Redis.from_url(services.redis_url).ping()
        settings = KafkaSettings(bootstrap_servers=services.kafka_bootstrap)
        create_topics(settings, ["harness-check"])
        writer = KafkaWriter(settings)
        writer.send(OutMessage("harness-check", b"{}"))
        writer.close()
    assert not set(pids) & live_pids(), "a service process outlived the harness"


def test_services_stop_when_the_body_fails(tmp_path):
    pids: list[int] = []
    try:
        with running_services(kafka=False, redis=True, ray=False, workdir=tmp_path) as services:
            pids = owned_pids(services)
            raise RuntimeError("test failed half way")
    except RuntimeError:
        pass
    assert pids and not set(pids) & live_pids()


def test_existing_servers_from_the_environment_are_used_not_started(monkeypatch, redis_url):
    monkeypatch.setenv("VLMOD_REDIS_URL", redis_url)
    with running_services(kafka=False, redis=True, ray=False) as services:
        assert services.redis_url == redis_url
        assert owned_pids(services) == []


def test_redis_restarts_on_the_same_port(redis_factory):
    server = redis_factory()
    client = redis.Redis.from_url(server.url)
    client.set("k", "v")
    server.stop()
    server.start()
    assert client.ping() and client.get("k") is None


def test_local_ray_runs_a_task(ray_local):
    import ray

    @ray.remote
    def square(x: int) -> int:
        return x * x

    assert ray.get(square.remote(7)) == 49
    assert ray.cluster_resources()["CPU"] == 2


SERVE_UNTIL_KILLED = """
import sys, threading
from pathlib import Path
from demo.harness import running_services
from demo.harness import Services, running_services
with running_services(kafka=True, redis=True, ray=False, workdir=Path(sys.argv[1])) as services:
    print(*(s.process.pid for s in services.owned), flush=True)
    threading.Event().wait()
"""


def test_servers_die_with_a_parent_killed_before_its_clean_up(tmp_path):
    import sys

    parent = subprocess.Popen(
        [sys.executable, "-c", SERVE_UNTIL_KILLED, str(tmp_path)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        pids = {int(pid) for pid in parent.stdout.readline().split()}
        assert len(pids) == 2 and pids <= live_pids()
    finally:
        parent.kill()  # SIGKILL: no handler, no `finally`, no atexit
        parent.wait(30)
    check_gone(pids)


def check_gone(pids: set[int], timeout_s: float = 20.0) -> None:
    import time

    deadline = time.monotonic() + timeout_s
    while pids & live_pids() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not pids & live_pids(), "a server outlived the process that started it"
