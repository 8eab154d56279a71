"""`vlmod report`'s inputs: reviewer decisions, verdicts and golden results, from JSONL files or
Kafka topics.

A source is a JSONL file path or `topic:NAME`. A topic is read from the beginning up to the end
offsets it had when reading began, so a topic that keeps growing still gives a bounded report.
Files are read line by line in bounded chunks, topics record by record as they are polled.
A bad record is skipped and described in one line naming `FILE:LINE` or
`topic:NAME[PARTITION]@OFFSET`; the report goes on with the others. A record is bad when it is
over `RecordLimits.max_bytes` (never read whole: only its size is counted), nested deeper than
`RecordLimits.max_depth`, not a JSON object, or not the record the source should hold.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Generic, TypeVar

from pydantic import ValidationError

from contracts.decoding import check_depth
from contracts.errors import ModerationError, PostValidationError
from contracts.records import ShadowVerdict, Verdict, describe_validation_error
from contracts.review import GoldenResult, ReviewDecision
from kafka_io.settings import KafkaSettings

T = TypeVar("T")
TOPIC_PREFIX = "topic:"
SHOWN_PROBLEMS = 20  # past this a broken file is better read with jq than in a terminal
STALL_S = 30.0  # a topic that stops short of its end offsets for this long is an error
MAX_RECORD_BYTES = 1 << 20  # decisions and verdicts are a few KB; 1 MiB leaves room for evidence
# A verdict carries post values (rule evidence) that posts.max_depth allows 32 levels deep, under
# a few levels of its own; 64 leaves room for that and stays far below json's ~1,000-level limit.
MAX_DEPTH = 64
CHUNK_BYTES = 1 << 16  # how much of a file is read at a time
REASON_CHARS = 400  # a record with 500,000 bad fields must not print a 90 MB line
# Naming 500,000 bad fields (a 1 MiB list of wrong items) takes 1.5 s and 250 MB in pydantic's
# `errors()` alone; past this many only the count is given, which costs nothing.
NAMED_FIELDS = 100


class ReportSourceError(ModerationError):
    """A decisions or verdicts source cannot be used; `problems` holds one line each."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__(problems[0] if len(problems) == 1 else f"{len(problems)} problems")
        self.problems = list(problems)


class SourceUnreadable(ReportSourceError):
    """The file or topic is not there, or could not be read to its end."""


class SourceEmpty(ReportSourceError):
    """The source holds no usable record at all."""


class BadRecord(ModerationError):
    """One record cannot be used and is skipped; the reason is one line."""


class RecordTooLarge(BadRecord):
    """The record is over `RecordLimits.max_bytes`."""

    def __init__(self, size: int, max_bytes: int) -> None:
        super().__init__(f"record of {size:,} bytes is over the {max_bytes:,}-byte limit")


class RecordTooDeep(BadRecord):
    """The record's JSON nests deeper than `RecordLimits.max_depth`."""

    def __init__(self, max_depth: int) -> None:
        super().__init__(f"nested more than {max_depth} levels")


@dataclass(frozen=True)
class RecordLimits:
    """Bounds on one record of a report source; a record past them is skipped."""

    max_bytes: int = MAX_RECORD_BYTES
    max_depth: int = MAX_DEPTH


@dataclass(frozen=True)
class RawRecord:
    """One record as read: where, its bytes (None: a tombstone; b"" when too large), its size."""

    where: str
    value: bytes | None
    size: int


@dataclass
class SourceRecords(Generic[T]):
    """A source's valid records, how many bad ones were skipped, and lines on the first ones."""

    source: str
    records: list[T] = field(default_factory=list)
    skipped: int = 0
    problems: list[str] = field(default_factory=list)

    def skip(self, where: str, error: ValidationError | BadRecord) -> None:
        """Count a bad record, and describe it while there are lines left to show."""
        self.skipped += 1
        if self.skipped <= SHOWN_PROBLEMS:
            self.problems.append(f"{where}: {_clipped(_reason(error))}")

    def problem_lines(self) -> list[str]:
        """The shown problems, how many more there are, and the count skipped; [] when none."""
        if not self.skipped:
            return []
        more = self.skipped - len(self.problems)
        total = self.skipped + len(self.records)
        return [
            *self.problems,
            *([f"... and {more} more"] if more else []),
            f"{self.source}: skipped {self.skipped} bad record{'s' * (self.skipped > 1)} "
            f"of {total}",
        ]


def read_decisions(
    spec: str, kafka: KafkaSettings | None, limits: RecordLimits | None = None
) -> SourceRecords[ReviewDecision]:
    """The ReviewDecisions in a JSONL file or topic, and the bad records skipped."""
    return _read(spec, kafka, ReviewDecision.model_validate, "decisions", limits or RecordLimits())


def read_verdicts(
    spec: str, kafka: KafkaSettings | None, limits: RecordLimits | None = None
) -> SourceRecords[Verdict]:
    """The Verdicts in a file or topic (ShadowVerdicts give their verdict), and those skipped."""
    return _read(spec, kafka, verdict_of, "verdicts", limits or RecordLimits())


def read_golden(
    spec: str, kafka: KafkaSettings | None, limits: RecordLimits | None = None
) -> SourceRecords[GoldenResult]:
    """The GoldenResults (scored answers to golden tasks) in a file or topic, and those skipped."""
    parse = GoldenResult.model_validate
    return _read(spec, kafka, parse, "golden results", limits or RecordLimits())


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
    spec: str,
    kafka: KafkaSettings | None,
    parse: Callable[[dict[str, Any]], T],
    what: str,
    limits: RecordLimits,
) -> SourceRecords[T]:
    """Parse every record of `spec`, skipping bad ones; raise when none is usable."""
    source, raws = raw_records(spec, kafka, limits)
    read = SourceRecords[T](source)
    for raw in raws:
        try:
            read.records.append(parse(record_object(raw, limits)))
        except (ValidationError, BadRecord) as error:
            read.skip(raw.where, error)
    if not read.records:
        raise SourceEmpty([*read.problem_lines(), f"{read.source}: no {what} in it"])
    return read


def raw_records(
    spec: str, kafka: KafkaSettings | None, limits: RecordLimits
) -> tuple[str, Iterator[RawRecord]]:
    """The source's name (the path, or `topic NAME`) and its records as they are read."""
    topic = topic_of(spec)
    if topic is None:
        return spec, _file_records(Path(spec), limits.max_bytes)
    return f"topic {topic}", _topic_records(topic, kafka)


def record_object(raw: RawRecord, limits: RecordLimits) -> dict[str, Any]:
    """The JSON object in `raw` within `limits`, or a BadRecord saying what it is instead."""
    if raw.value is None:
        raise BadRecord("empty message (a tombstone), not a JSON object")
    if raw.size > limits.max_bytes:
        raise RecordTooLarge(raw.size, limits.max_bytes)
    try:
        body = json.loads(raw.value)
    except RecursionError:  # json's own parser gives up near 1,000 levels
        raise RecordTooDeep(limits.max_depth) from None
    except ValueError as error:  # also undecodable UTF-8 and over-long integers
        raise BadRecord(f"not JSON: {error}") from None
    if not isinstance(body, dict):
        raise BadRecord(f"expected a JSON object, got {type(body).__name__}")
    try:
        check_depth(body, limits.max_depth)
    except PostValidationError:  # its reason names posts.max_depth, which is not this limit
        raise RecordTooDeep(limits.max_depth) from None
    return body


def _reason(error: ValidationError | BadRecord) -> str:
    """One line on why a record is bad; a ValidationError names every bad field."""
    if isinstance(error, BadRecord):
        return error.reason
    if (count := error.error_count()) > NAMED_FIELDS:
        return f"{count:,} fields are invalid, too many to name"
    return describe_validation_error(error)


def _clipped(reason: str) -> str:
    """`reason`, cut to REASON_CHARS characters."""
    if len(reason) <= REASON_CHARS:
        return reason
    return f"{reason[:REASON_CHARS]}... ({len(reason) - REASON_CHARS:,} more characters)"


def _file_records(path: Path, max_bytes: int) -> Iterator[RawRecord]:
    """A RawRecord per non-blank line of a JSONL file, read a line at a time."""
    name = str(path)
    for number, body, size in numbered_lines(path, max_bytes):
        yield RawRecord(f"{name}:{number}", body, size)


def numbered_lines(path: Path, max_bytes: int) -> Iterator[tuple[int, bytes, int]]:
    """(line number, the line without its newline, its size) of each non-blank line of a JSONL
    file; past `max_bytes` the line is b"" and only its size is kept."""
    try:
        # Bytes: a bad byte is then one bad line, and U+2028 inside a string ends no line.
        with path.open("rb") as file:
            for number, (body, size) in enumerate(_split_lines(file, max_bytes), start=1):
                if size > max_bytes:
                    yield number, b"", size
                elif not body.isspace() and body:
                    yield number, body, size
    except OSError as error:
        raise SourceUnreadable([f"{path}: cannot read it: {error.strerror or error}"]) from None


def _split_lines(file: IO[bytes], max_bytes: int) -> Iterator[tuple[bytes, int]]:
    """Each line of `file` without its newline, and its size; b"" for a line over `max_bytes`,
    whose bytes are counted, not kept. Read CHUNK_BYTES at a time: a line costs one split."""
    head = b""  # the start of the current line, while it is within max_bytes
    over = -1  # the size so far of a current line over max_bytes, else -1
    while chunk := file.read(CHUNK_BYTES):
        lines = chunk.split(b"\n")
        tail = lines.pop()  # the start of a line the chunk does not end
        if lines:
            first = lines[0]
            if over >= 0:
                yield b"", over + len(first)
            else:
                line = head + first if head else first
                yield (line, len(line)) if len(line) <= max_bytes else (b"", len(line))
            for line in lines[1:]:
                yield (line, len(line)) if len(line) <= max_bytes else (b"", len(line))
            head, over = b"", -1
        if over >= 0:
            over += len(tail)
        elif len(head) + len(tail) > max_bytes:
            head, over = b"", len(head) + len(tail)
        else:
            head += tail
    if over >= 0:
        yield b"", over
    elif head:
        yield head, len(head)


def _topic_records(topic: str, kafka: KafkaSettings | None) -> Iterator[RawRecord]:
    """A RawRecord (`topic:T[P]@O`) per record up to the end offsets, as they are polled."""
    from kafka_io.clients import reaching_kafka

    if kafka is None:
        raise SourceUnreadable([f"topic {topic}: reading a topic needs --bootstrap HOST:PORT"])
    with reaching_kafka(kafka):
        for record in _read_to_end(kafka, topic):
            size = 0 if record.value is None else len(record.value)
            where = f"{TOPIC_PREFIX}{topic}[{record.partition}]@{record.offset}"
            yield RawRecord(where, record.value, size)


def _read_to_end(kafka: KafkaSettings, topic: str) -> Iterator[Any]:
    """Every record of `topic` from the beginning to the end offsets found when it started."""
    from kafka import KafkaConsumer

    from kafka_io.clients import BOOTSTRAP_TIMEOUT_MS

    settings = {"bootstrap_timeout_ms": BOOTSTRAP_TIMEOUT_MS, **kafka.client_kwargs()}
    # Not auto-creating: asking for a mistyped topic must not leave an empty one behind.
    consumer = KafkaConsumer(
        **settings, enable_auto_commit=False, allow_auto_create_topics=False, fetch_max_wait_ms=5
    )
    try:
        assigned = _partitions(consumer, topic, kafka.bootstrap_servers)
        consumer.assign(assigned)
        consumer.seek_to_beginning(*assigned)
        yield from _poll_until(consumer, consumer.end_offsets(assigned), topic)
    finally:
        consumer.close(autocommit=False)


def _partitions(consumer: Any, topic: str, brokers: str) -> list[Any]:
    """Every partition of `topic`; a topic that does not exist is an error naming it."""
    from kafka.structs import TopicPartition

    partitions = consumer.partitions_for_topic(topic)
    if not partitions:
        raise SourceUnreadable([f"topic {topic} does not exist on {brokers}"])
    return [TopicPartition(topic, p) for p in sorted(partitions)]


def _poll_until(consumer: Any, ends: dict[Any, int], topic: str) -> Iterator[Any]:
    """Poll until every partition's position reaches its end offset; fail if it stalls."""
    deadline = time.monotonic() + STALL_S
    while any(consumer.position(tp) < end for tp, end in ends.items()):
        polled = consumer.poll(timeout_ms=200, max_records=1000)
        batch = [record for part in polled.values() for record in part]
        yield from batch
        if batch:
            deadline = time.monotonic() + STALL_S
        elif time.monotonic() > deadline:
            raise SourceUnreadable([f"topic {topic}: no progress toward its end for {STALL_S}s"])
