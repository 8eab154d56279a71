"""`vlmod run` against brokers nobody runs: one line naming them, in seconds, before Ray starts."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from contracts.errors import ServiceUnavailable
from demo.harness import free_port
from kafka_io.clients import create_topics
from kafka_io.settings import KafkaSettings

EXAMPLES = Path(__file__).resolve().parents[3] / "policies" / "examples"
# Generous on purpose: the point is "seconds, not the 30 s bootstrap plus Ray's start-up".
WITHIN_S = 25.0


@pytest.fixture(autouse=True)
def _restore_kafka_log_level():
    kafka_logger = logging.getLogger("kafka")
    level = kafka_logger.level
    yield
    kafka_logger.setLevel(level)


@pytest.fixture
def unreachable_config(tmp_path) -> tuple[Path, str]:
    bootstrap = f"127.0.0.1:{free_port()}"  # free now: nothing listens there
    config = tmp_path / "pipeline.yaml"
    config.write_text(f"kafka:\n  bootstrap_servers: {bootstrap}\npolicy_dir: {EXAMPLES}\n")
    return config, bootstrap


def run_vlmod(*args: str):
    started = time.monotonic()
    result = CliRunner().invoke(app, ["run", *args])
    return result, time.monotonic() - started


def test_unreachable_brokers_fail_fast_in_one_line_before_ray(unreachable_config, caplog):
    config, bootstrap = unreachable_config
    caplog.set_level(logging.INFO)
    result, took_s = run_vlmod("--config", str(config))
    # conftest makes ray.init raise: reaching it would exit 1 with a RuntimeError, not exit 2
    assert result.exit_code == 2, f"{result.exception!r}\n{result.output}"
    assert isinstance(result.exception, SystemExit)
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith(f"error: Kafka at {bootstrap} failed: "), line
    assert took_s < WITHIN_S, f"took {took_s:.1f}s"
    kafka_lines = [r.getMessage() for r in caplog.records if r.name.startswith("kafka")]
    assert kafka_lines == [], "kafka-python's own log lines are quiet without --verbose"


def test_verbose_shows_kafka_python_logs(unreachable_config, caplog):
    config, _ = unreachable_config
    caplog.set_level(logging.INFO)
    result, _ = run_vlmod("--config", str(config), "--verbose")
    assert result.exit_code == 2, f"{result.exception!r}\n{result.output}"
    assert any(r.name.startswith("kafka") for r in caplog.records)


def test_create_topics_gives_up_on_silent_brokers_in_seconds():
    settings = KafkaSettings(bootstrap_servers=f"127.0.0.1:{free_port()}")
    started = time.monotonic()
    with pytest.raises(ServiceUnavailable, match=r"^Kafka at 127\.0\.0\.1:\d+ failed: "):
        create_topics(settings, ["posts"])
    assert time.monotonic() - started < WITHIN_S
