"""The Moderator's metrics, read back from an in-memory OpenTelemetry reader."""

from __future__ import annotations

import base64
import json

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider

from contracts.errors import Stage
from contracts.records import ModelRef
from demo.samples import drawn_image
from kafka_io.settings import KafkaSettings
from pipelines.config import PipelineConfig, RetrySettings
from pipelines.local import build_moderator
from pipelines.signal_records import Failure, InferenceResult
from pipelines.steps import SourceMessage
from pipelines.telemetry import telemetry
from policies.loader import load_policy_dir

POLICY = """
id: metrics-policy
version: 1
signals:
  labels:
    weapon: "a weapon"
rules:
  - id: spam
    when: text.matches("(?i)buy followers")
    action: review
  - id: weapon
    when: labels.weapon > 0.5
    action: block
default: allow
"""
PNG = base64.b64encode(drawn_image(1)).decode()
MAX_ATTEMPTS = 3


class ScriptedSource:
    """`weapon` per post id; posts without a score fail every time; 2 cache hits, 1 miss each."""

    model = ModelRef(name="scripted", revision="1")

    def __init__(self, weapon: dict[str, float]) -> None:
        self.weapon = weapon

    def compute(self, requests):
        return [self._result(request) for request in requests]

    def _result(self, request):
        if request.post_id not in self.weapon:
            failure = Failure(Stage.INFER, "InferenceError", "replica lost", retryable=True)
            return InferenceResult(request.post_id, failure=failure)
        values = dict.fromkeys(request.tasks, self.weapon[request.post_id])
        return InferenceResult(request.post_id, values, cache_hits=2, cache_misses=1)


@pytest.fixture
def reader():
    return InMemoryMetricReader()


@pytest.fixture
def moderator(tmp_path, reader):
    (tmp_path / "metrics-policy.yaml").write_text(POLICY)
    config = PipelineConfig(
        kafka=KafkaSettings(bootstrap_servers="unused:9092"),
        policy_dir=str(tmp_path),
        retry=RetrySettings(max_attempts=MAX_ATTEMPTS, backoff_base_s=0.0, backoff_cap_s=0.0),
    )
    tele = telemetry(
        tracer_provider=TracerProvider(), meter_provider=MeterProvider(metric_readers=[reader])
    )
    source = ScriptedSource({"img-block": 0.9, "img-allow": 0.1})
    return build_moderator(config, load_policy_dir(config.policy_dir), source, tele)


def message(body, offset):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return SourceMessage(raw, b"k", "posts", 0, offset)


BATCH = [
    {"id": "img-block", "images": [{"data": PNG}]},
    {"id": "img-allow", "images": [{"data": PNG}]},
    {"id": "spam", "text": "Buy followers today"},
    {"id": "hello", "text": "hello"},
    b"{oops",
    {"id": "img-broken-model", "images": [{"data": PNG}]},
]


def points(reader) -> dict[str, list]:
    """Data points of every vlmod metric, by metric name."""
    found: dict[str, list] = {}
    data = reader.get_metrics_data()
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                found.setdefault(metric.name, []).extend(metric.data.data_points)
    return found


def by_attribute(data_points, name: str) -> dict[str, int]:
    return {p.attributes[name]: p.value for p in data_points}


def test_counters_follow_every_message_of_a_batch(moderator, reader):
    outputs = moderator.moderate([message(body, offset) for offset, body in enumerate(BATCH)])
    metrics = points(reader)
    assert [p.value for p in metrics["vlmod.posts.in"]] == [len(BATCH)]
    out = by_attribute(metrics["vlmod.posts.out"], "action")
    assert out == {"block": 1, "allow": 2, "review": 1}
    verdicts = [active for outcome in outputs for active in outcome.verdicts]
    assert sum(out.values()) == len(verdicts)
    assert by_attribute(metrics["vlmod.dead_letters"], "stage") == {"decode": 1, "infer": 1}
    assert [p.value for p in metrics["vlmod.cache.hits"]] == [4], "2 per moderated image post"
    assert [p.value for p in metrics["vlmod.cache.misses"]] == [2]


def test_batch_size_histogram_records_one_value_per_batch(moderator, reader):
    moderator.moderate([message(body, offset) for offset, body in enumerate(BATCH)])
    moderator.moderate([message({"id": "one", "text": "hi"}, 0)])
    [histogram] = points(reader)["vlmod.batch.size"]
    assert (histogram.count, histogram.sum) == (2, len(BATCH) + 1)
    assert (histogram.min, histogram.max) == (1, len(BATCH))


def test_lag_gauge_reports_the_sum_of_registered_lag_sources(moderator, reader):
    moderator.telemetry.lag_sources += [lambda: 3, lambda: 4]
    [lag] = points(reader)["vlmod.consumer.lag"]
    assert lag.value == 7
    moderator.telemetry.lag_sources.append(lambda: 10)
    [lag] = points(reader)["vlmod.consumer.lag"]
    assert lag.value == 17, "the gauge asks its sources again on every collection"
