"""A replay's history: recorded verdicts grouped by post, each post with its record.

A source is a JSONL file of verdicts, `topic:NAME` (both read as `review.report_io` reads them,
skipping a bad record naming `FILE:LINE` or `topic:NAME[PARTITION]@OFFSET`), or a PostgreSQL
DSN (`postgresql://...`) of the PostgreSQL sink: its `verdicts` rows, and each post's record
from the `record` column of `posts` (schema 2, whose verdict rows leave the record out), or
from a verdict row that carries it. Each verdict is read by `replay.lean`: only what replay
reads of it, typed, the rest skipped unread.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from contracts.history import PostRecord
from contracts.records import Verdict
from replay.lean import RecordView, VerdictView, full_verdict, lean_verdict
from review.report_io import (
    BadRecord,
    RawRecord,
    RecordLimits,
    SourceEmpty,
    SourceRecords,
    SourceUnreadable,
    raw_records,
)

if TYPE_CHECKING:
    from kafka_io.settings import KafkaSettings

DSN_PREFIXES = ("postgresql://", "postgres://")
NO_RECORD = "no record in the history"

PolicySlot = tuple[str, bool]  # (policy id, shadow)


@dataclass(slots=True)
class RecordedPost:
    """One post of the history: its record (None when none was kept) and its verdicts."""

    post_id: str
    record: RecordView | None = None
    verdicts: dict[PolicySlot, VerdictView] = field(default_factory=dict)
    at: datetime | None = None  # when its first verdict was decided
    lines: dict[PolicySlot, bytes] | None = None  # each kept verdict's line, when read with them

    def add(self, verdict: VerdictView, line: bytes | None = None) -> None:
        """Keep `verdict` (the latest per policy id and mode; `line`: its history line) and the
        first record seen."""
        moment = verdict.processed_at
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        slot = (verdict.policy.id, verdict.shadow)
        held = self.verdicts.get(slot)
        if held is None or moment >= _aware(held.processed_at):
            self.verdicts[slot] = verdict
            if line is not None:
                if self.lines is None:
                    self.lines = {}
                self.lines[slot] = line
        if self.record is None and verdict.record is not None:
            self.record = verdict.record
        if self.at is None or moment < self.at:
            self.at = moment

    def full(self, verdict: VerdictView) -> Verdict:
        """The whole `Verdict` of one of its verdicts, validated from its line if it is lean
        (ValidationError or BadRecord where the line is no valid verdict)."""
        if isinstance(verdict, Verdict):
            return verdict
        line = (self.lines or {}).get((verdict.policy.id, verdict.shadow))
        if line is None:
            raise LookupError(f"post {self.post_id}: the history was read without its lines")
        return full_verdict(line)


def _aware(moment: datetime) -> datetime:
    """A naive time read as UTC, so that it compares with aware ones."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def group_posts(
    verdicts: Iterable[VerdictView],
    records: Mapping[str, RecordView] | None = None,
    lines: Sequence[bytes] | None = None,
) -> list[RecordedPost]:
    """Verdicts grouped by post, in the order posts first appear; `records` fills missing ones;
    `lines`, each verdict's history line, are kept with the verdicts kept."""
    posts: dict[str, RecordedPost] = {}
    if lines is None:
        for verdict in verdicts:
            post = posts.get(verdict.post_id)
            if post is None:
                post = posts[verdict.post_id] = RecordedPost(verdict.post_id)
            post.add(verdict)
    else:
        for verdict, line in zip(verdicts, lines, strict=True):
            post = posts.get(verdict.post_id)
            if post is None:
                post = posts[verdict.post_id] = RecordedPost(verdict.post_id)
            post.add(verdict, line)
    for post_id, record in (records or {}).items():
        if post_id in posts and posts[post_id].record is None:
            posts[post_id].record = record
    return list(posts.values())


def within(
    posts: Iterable[RecordedPost],
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int | None = None,
) -> Iterator[RecordedPost]:
    """The posts first decided in [since, until), at most `limit` of them, in history order."""
    taken = 0
    for post in posts:
        if limit is not None and taken >= limit:
            return
        at = post.at
        if at is not None and since is not None and at < _aware(since):
            continue
        if at is not None and until is not None and at >= _aware(until):
            continue
        taken += 1
        yield post


@dataclass
class History:
    """What a source gave: its verdicts read (and bad records skipped), records kept apart, and
    each verdict's line where they were kept."""

    read: SourceRecords[VerdictView]
    records: dict[str, RecordView] = field(default_factory=dict)
    lines: list[bytes] | None = None  # parallel to read.records

    def posts(self) -> list[RecordedPost]:
        """The posts of the history, in the order they first appear."""
        return group_posts(self.read.records, self.records, self.lines)


def is_dsn(spec: str) -> bool:
    """True for a PostgreSQL connection address."""
    return spec.startswith(DSN_PREFIXES)


def read_history(
    spec: str,
    kafka: KafkaSettings | None,
    limits: RecordLimits | None = None,
    *,
    keep_lines: bool = False,
) -> History:
    """The history in a JSONL file, a topic or a PostgreSQL DSN; bad records skipped, counted.

    `keep_lines` keeps each verdict's line, so that `RecordedPost.full` can validate it whole.
    """
    limits = limits or RecordLimits()
    if is_dsn(spec):
        return _read_postgres(spec, limits, keep_lines)
    source, raws = raw_records(spec, kafka, limits)
    history = History(SourceRecords[VerdictView](source), lines=[] if keep_lines else None)
    for raw in raws:
        take_verdict(history, raw, limits)
    if not history.read.records:
        read = history.read
        raise SourceEmpty([*read.problem_lines(), f"{read.source}: no verdicts in it"])
    return history


def take_verdict(history: History, raw: RawRecord, limits: RecordLimits) -> None:
    """Add the verdict in `raw` to the history, or skip it with the reason."""
    try:
        verdict = lean_verdict(raw, limits)
    except (ValidationError, BadRecord) as error:
        history.read.skip(raw.where, error)
        return
    history.read.records.append(verdict)
    if history.lines is not None:
        history.lines.append(raw.value or b"")


def _read_postgres(dsn: str, limits: RecordLimits, keep_lines: bool) -> History:
    """Every `verdicts` row of the sink's database, and the `posts.record` column if it exists."""
    import psycopg

    from contracts.services import redact_url

    where = redact_url(dsn)
    history = History(SourceRecords[VerdictView](f"PostgreSQL at {where}"))
    history.lines = [] if keep_lines else None
    read = history.read
    try:
        with psycopg.connect(dsn, connect_timeout=10) as connection:
            for key, body in _verdict_rows(connection):
                raw = body if isinstance(body, bytes) else _json_bytes(body)
                take_verdict(history, RawRecord(f"{where} verdicts[{key}]", raw, len(raw)), limits)
            history.records.update(_post_records(connection, read, where))
    except psycopg.Error as error:
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise SourceUnreadable([f"PostgreSQL at {where}: {first}"]) from None
    if not read.records:
        raise SourceEmpty([*read.problem_lines(), f"{read.source}: no verdicts in it"])
    return history


def _verdict_rows(connection: Any) -> Iterator[tuple[str, Any]]:
    """(key, verdict jsonb) of every verdict, oldest first, streamed by a server-side cursor."""
    with connection.cursor(name="vlmod_replay") as cursor:
        cursor.itersize = 2000
        cursor.execute("SELECT key, verdict FROM verdicts ORDER BY processed_at, key")
        yield from cursor


def _json_bytes(body: Any) -> bytes:
    """The JSON text of a decoded jsonb value (so the same size and depth limits apply)."""
    import json

    return (body if isinstance(body, str) else json.dumps(body)).encode()


def _post_records(
    connection: Any, read: SourceRecords[VerdictView], where: str
) -> dict[str, PostRecord]:
    """`posts.record` by post id, where the table has that column; bad ones skipped."""
    has_column = connection.execute(
        "SELECT 1 FROM information_schema.columns "
        "WHERE table_name = 'posts' AND column_name = 'record'"
    ).fetchone()
    if has_column is None:
        return {}
    records: dict[str, PostRecord] = {}
    for post_id, body in connection.execute(
        "SELECT post_id, record FROM posts WHERE record IS NOT NULL"
    ):
        try:
            records[post_id] = PostRecord.model_validate(body)
        except ValidationError as error:
            read.skip(f"{where} posts[{post_id}].record", error)
    return records
