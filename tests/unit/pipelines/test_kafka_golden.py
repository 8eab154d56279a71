"""The bytes the pipeline writes to every topic, for the example policies over the sample posts.

A golden file holds each output message (topic, key, headers, value) as the pipeline wrote it
before `Moderator.moderate` returned typed outcomes; only the values that change from run to
run (times, durations) are masked. Regenerate it with `VLMOD_WRITE_GOLDEN=1` only when a
change of the bytes is meant.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from opentelemetry.trace import NoOpTracerProvider

from contracts.errors import Stage
from demo.samples import sample_posts
from kafka_io.settings import KafkaSettings
from pipelines.config import PipelineConfig
from pipelines.local import build_moderator
from pipelines.model_settings import ModelSettings
from pipelines.producer_registry import pipeline_registry
from pipelines.signal_records import Failure
from pipelines.steps import SourceMessage
from pipelines.telemetry import telemetry
from pipelines.wiring import build_model_sources
from policies.loader import load_policy_dir
from sinks.kafka_topics import kafka_batch

ROOT = Path(__file__).resolve().parents[3]
GOLDEN = Path(__file__).parent / "golden" / "kafka_messages.jsonl"
TRACEPARENT = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
# Values that differ between runs; everything else must match byte for byte.
VOLATILE = re.compile(
    rb'"(processed_at|enqueued_at|first_seen)":"[^"]*"|"(latency_ms|ms)":[0-9.eE+-]+'
)


def masked(value: bytes) -> str:
    return VOLATILE.sub(lambda m: b'"' + (m[1] or m[2]) + b'":"<masked>"', value).decode()


def source_messages() -> list[SourceMessage]:
    """Sample posts (showcase, text with images, malformed), half of them carrying a trace."""
    samples = sample_posts(12, seed=3)
    return [
        SourceMessage(
            s.value,
            s.key,
            "posts",
            n % 2,
            100 + n,
            (("traceparent", TRACEPARENT),) if n % 2 else (),
        )
        for n, s in enumerate(samples)
    ]


def produced_messages() -> list[dict[str, object]]:
    """Every output message of one batch, as the consumer loop's Kafka sink sends them."""
    config = PipelineConfig(
        kafka=KafkaSettings(bootstrap_servers="unused:9092"),
        policy_dir=str(ROOT / "policies" / "examples"),
        model=ModelSettings(name_or_path="noop"),
    )
    registry = pipeline_registry(config)
    policies = load_policy_dir(config.policy_dir, registry=registry)
    source = build_model_sources(config)
    tele = telemetry(tracer_provider=NoOpTracerProvider())
    moderator = build_moderator(config, policies, source, tele, registry=registry)
    messages = source_messages()
    outcomes = moderator.moderate(messages)
    assert [o.source.offset for o in outcomes] == [m.offset for m in messages]
    # A batch that failed as a whole, then failed alone: the consumer loop's dead letters.
    refused = Failure(Stage.PRODUCE, "ProduceFailed", "verdicts: not acknowledged", False)
    outcomes += [moderator.fail_message(m, refused) for m in (messages[1], messages[-4])]
    produced = kafka_batch(outcomes, config.topics)
    return [
        {
            "topic": out.topic,
            "key": None if out.key is None else out.key.decode(),
            "headers": [[name, value.decode()] for name, value in out.headers],
            "value": masked(out.value),
        }
        for out in produced
    ]


def test_every_topic_gets_the_golden_bytes():
    produced = produced_messages()
    if os.environ.get("VLMOD_WRITE_GOLDEN"):
        GOLDEN.write_text("".join(json.dumps(m, sort_keys=True) + "\n" for m in produced))
    golden = [json.loads(line) for line in GOLDEN.read_text().splitlines()]
    assert {m["topic"] for m in golden} >= {
        "moderation.verdicts",
        "moderation.shadow",
        "moderation.dead-letter",
    }
    assert len(produced) == len(golden)
    for got, want in zip(produced, golden, strict=True):
        assert got == want
