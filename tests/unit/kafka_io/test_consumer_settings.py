"""`kafka.consumer`: consumer overrides keep kafka-python's names whichever client reads, and a
setting librdkafka cannot take is refused when the configuration loads, naming it."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from kafka_io.rdkafka import consumer_config
from pipelines.config import PipelineConfig
from review.settings import ReviewConfig


def test_kafka_python_names_become_librdkafka_names():
    config = consumer_config(
        {
            "session_timeout_ms": 6000,
            "heartbeat_interval_ms": 500,
            "fetch_max_wait_ms": 5,
            "request_timeout_ms": 20_000,
            "auto_offset_reset": "earliest",
            "max_poll_records": 4,  # poll's own argument with librdkafka: nothing to pass
        }
    )
    assert config == {
        "session.timeout.ms": 6000,
        "heartbeat.interval.ms": 500,
        "fetch.wait.max.ms": 5,
        "socket.timeout.ms": 20_000,
        "auto.offset.reset": "earliest",
    }


def test_a_setting_without_a_librdkafka_counterpart_is_refused_at_load():
    kafka = {"bootstrap_servers": "broker:9092", "consumer": "librdkafka"}
    with pytest.raises(ValidationError) as refused:
        PipelineConfig.model_validate(
            {"kafka": kafka, "consumer_overrides": {"partition_assignment_strategy": "x"}}
        )
    (error,) = refused.value.errors()
    assert error["loc"] == ("consumer_overrides",)
    assert "'partition_assignment_strategy' has no librdkafka counterpart" in error["msg"]
    assert "kafka.librdkafka" in error["msg"]


def test_kafka_python_takes_its_own_settings_as_they_are():
    overrides = {"partition_assignment_strategy": "x", "session_timeout_ms": 6000}
    config = PipelineConfig.model_validate(
        {"kafka": {"bootstrap_servers": "broker:9092"}, "consumer_overrides": overrides}
    )
    assert config.kafka.consumer == "kafka-python"
    assert config.consumer_overrides == overrides


def test_the_review_console_checks_its_overrides_too():
    with pytest.raises(ValidationError, match="'nope_ms' has no librdkafka counterpart"):
        ReviewConfig.model_validate(
            {
                "kafka": {"bootstrap_servers": "broker:9092", "consumer": "librdkafka"},
                "consumer_overrides": {"nope_ms": 1},
                "redis_url": "redis://localhost:6379/0",
                "session_secret": "s" * 40,
            }
        )
