"""`vlmod report`'s inputs: reviewer decisions and verdicts from JSONL files or Kafka topics.

A source is a JSONL file path or `topic:NAME`. A topic is read from the beginning up to the end
offsets it had when reading began, so a topic that keeps growing still gives a bounded report.
Bad records are collected, one line each, naming `FILE:LINE` or the topic, partition and offset.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from pydantic import ValidationError

from contracts.errors import ModerationError
from contracts.records import ShadowVerdict, Verdict, describe_validation_error
from contracts.review import ReviewDecision
from pipelines.config import KafkaSettings

T = TypeVar("T")
TOPIC_PREFIX = "topic:"
SHOWN_PROBLEMS = 20  # past this a broken file is better read with jq than in a terminal
STALL_S = 30.0  # a topic that stops short of its end offsets for this long is an error


class ReportSourceError(ModerationError):
    """A decisions or verdicts source cannot be used; `problems` holds one line each."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__(problems[0] if len(problems) == 1 else f"{len(problems)} problems")
        self.problems = list(problems)


class SourceUnreadable(ReportSourceError):
    """The file or topic is not there, or could not be read to its end."""


class RecordsInvalid(ReportSourceError):
    """Some records are not JSON or not the record the source should hold."""


class SourceEmpty(ReportSourceError):
    """The source holds no records at all."""


Payload = tuple[str, bytes | str | None]  # (where it was read, the raw record)


def read_decisions(spec: str, kafka: KafkaSettings | None) -> list[ReviewDecision]:
    """Every ReviewDecision in a JSONL file or topic, or an error listing the bad ones."""
    return _read(spec, kafka, ReviewDecision.model_validate, "decisions")


def read_verdicts(spec: str, kafka: KafkaSettings | None) -> list[Verdict]:
    """Every Verdict in a file or topic; ShadowVerdict records give their (shadow) verdict."""
    return _read(spec, kafka, verdict_of, "verdicts")


def verdict_of(body: dict[str, Any]) -> Verdict:
    """A plain Verdict, or the verdict of a ShadowVerdict (`{"verdict": ..., "diff": ...}`)."""
    if "verdict" not in body:
        return Verdict.model_validate(body)
    verdict = ShadowVerdict.model_validate(body).verdict
    # Whatever its flag says, a verdict from the shadow topic must not count as an active one.
    return verdict if verdict.shadow else verdict.model_copy(update={"shadow": True})


def topic_of(spec: str) -> str | None:
    """The topic name of a `topic:NAME` source, None for a file path."""
    return spec.removeprefix(TOPIC_PREFIX) if spec.startswith(TOPIC_PREFIX) else None


def _read(
    spec: str, kafka: KafkaSettings | None, parse: Callable[[dict[str, Any]], T], what: str
) -> list[T]:
    """Parse every payload of `spec`; raise with all bad records, or when there are none."""
    topic = topic_of(spec)
    payloads = _file_payloads(Path(spec)) if topic is None else _topic_payloads(topic, kafka)
    records, problems = [], []
    for where, raw in payloads:
        try:
            records.append(parse(_json_object(raw)))
        except ValidationError as error:
            problems.append(f"{where}: {describe_validation_error(error)}")
        except ValueError as error:
            problems.append(f"{where}: {error}")
    if problems:
        raise RecordsInvalid(_shortened(problems))
    if not records:
        raise SourceEmpty([f"{spec if topic is None else f'topic {topic}'}: no {what} in it"])
    return records


def _json_object(raw: bytes | str | None) -> dict[str, Any]:
    """The JSON object in `raw`, or a ValueError saying what it is instead."""
    if raw is None:
        raise ValueError("empty message (a tombstone), not a JSON object")
    try:
        body = json.loads(raw)
    except ValueError as error:  # also undecodable UTF-8
        raise ValueError(f"not JSON: {error}") from None
    if not isinstance(body, dict):
        raise ValueError(f"expected a JSON object, got {type(body).__name__}")
    return body


def _shortened(problems: list[str]) -> list[str]:
    """The first problems, and how many more there are."""
    if len(problems) <= SHOWN_PROBLEMS:
        return problems
    return [*problems[:SHOWN_PROBLEMS], f"... and {len(problems) - SHOWN_PROBLEMS} more"]


def _file_payloads(path: Path) -> list[Payload]:
    """(`FILE:LINE`, line) for each non-blank line of a JSONL file."""
    try:
        # Bytes: a bad byte is then one bad line, and U+2028 inside a string ends no line.
        lines = path.read_bytes().splitlines()
    except OSError as error:
        raise SourceUnreadable([f"{path}: cannot read it: {error.strerror or error}"]) from None
    return [(f"{path}:{n}", line) for n, line in enumerate(lines, 1) if line.strip()]


def _topic_payloads(topic: str, kafka: KafkaSettings | None) -> list[Payload]:
    """(`topic T partition P offset O`, value) for every record up to the end offsets."""
    from pipelines.kafka_io import reaching_kafka

    if kafka is None:
        raise SourceUnreadable([f"topic {topic}: reading a topic needs --bootstrap HOST:PORT"])
    with reaching_kafka(kafka):
        records = _read_to_end(kafka, topic)
    return [(f"topic {topic} partition {r.partition} offset {r.offset}", r.value) for r in records]


def _read_to_end(kafka: KafkaSettings, topic: str) -> list[Any]:
    """Every record of `topic` from the beginning to the end offsets found when it started."""
    from kafka import KafkaConsumer

    from pipelines.kafka_io import BOOTSTRAP_TIMEOUT_MS

    settings = {"bootstrap_timeout_ms": BOOTSTRAP_TIMEOUT_MS, **kafka.client_kwargs()}
    # Not auto-creating: asking for a mistyped topic must not leave an empty one behind.
    consumer = KafkaConsumer(
        **settings, enable_auto_commit=False, allow_auto_create_topics=False, fetch_max_wait_ms=5
    )
    try:
        assigned = _partitions(consumer, topic, kafka.bootstrap_servers)
        consumer.assign(assigned)
        consumer.seek_to_beginning(*assigned)
        return _poll_until(consumer, consumer.end_offsets(assigned), topic)
    finally:
        consumer.close(autocommit=False)


def _partitions(consumer: Any, topic: str, brokers: str) -> list[Any]:
    """Every partition of `topic`; a topic that does not exist is an error naming it."""
    from kafka.structs import TopicPartition

    partitions = consumer.partitions_for_topic(topic)
    if not partitions:
        raise SourceUnreadable([f"topic {topic} does not exist on {brokers}"])
    return [TopicPartition(topic, p) for p in sorted(partitions)]


def _poll_until(consumer: Any, ends: dict[Any, int], topic: str) -> list[Any]:
    """Poll until every partition's position reaches its end offset; fail if it stalls."""
    records: list[Any] = []
    deadline = time.monotonic() + STALL_S
    while any(consumer.position(tp) < end for tp, end in ends.items()):
        polled = consumer.poll(timeout_ms=200, max_records=1000)
        batch = [record for part in polled.values() for record in part]
        records.extend(batch)
        if batch:
            deadline = time.monotonic() + STALL_S
        elif time.monotonic() > deadline:
            raise SourceUnreadable([f"topic {topic}: no progress toward its end for {STALL_S}s"])
    return records
