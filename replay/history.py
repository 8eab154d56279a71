"""A replay's history: recorded verdicts grouped by post, each post with its `PostRecord`.

A source is a JSONL file of verdicts, `topic:NAME` (both read by `review.report_io`, which skips
a bad record naming `FILE:LINE` or `topic:NAME[PARTITION]@OFFSET`), or a PostgreSQL DSN
(`postgresql://...`) of the PostgreSQL sink: its `verdicts` rows, and each post's record from
the `record` column of `posts` (schema 2, whose verdict rows leave the record out), or from a
verdict row that carries it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from contracts.history import PostRecord
from contracts.records import Verdict
from review.report_io import (
    RecordLimits,
    SourceEmpty,
    SourceRecords,
    SourceUnreadable,
    read_verdicts,
    verdict_of,
)

if TYPE_CHECKING:
    from kafka_io.settings import KafkaSettings

DSN_PREFIXES = ("postgresql://", "postgres://")
NO_RECORD = "no record in the history"

PolicySlot = tuple[str, bool]  # (policy id, shadow)


@dataclass
class RecordedPost:
    """One post of the history: its record (None when none was kept) and its verdicts."""

    post_id: str
    record: PostRecord | None = None
    verdicts: dict[PolicySlot, Verdict] = field(default_factory=dict)
    at: datetime | None = None  # when its first verdict was decided

    def add(self, verdict: Verdict) -> None:
        """Keep `verdict` (the latest per policy id and mode) and the first record seen."""
        slot = (verdict.policy.id, verdict.shadow)
        held = self.verdicts.get(slot)
        if held is None or _aware(verdict.processed_at) >= _aware(held.processed_at):
            self.verdicts[slot] = verdict
        if self.record is None and verdict.record is not None:
            self.record = verdict.record
        moment = _aware(verdict.processed_at)
        self.at = moment if self.at is None else min(self.at, moment)


def _aware(moment: datetime) -> datetime:
    """A naive time read as UTC, so that it compares with aware ones."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def group_posts(
    verdicts: Iterable[Verdict], records: Mapping[str, PostRecord] | None = None
) -> list[RecordedPost]:
    """Verdicts grouped by post, in the order posts first appear; `records` fills missing ones."""
    posts: dict[str, RecordedPost] = {}
    for verdict in verdicts:
        post = posts.get(verdict.post_id)
        if post is None:
            post = posts[verdict.post_id] = RecordedPost(verdict.post_id)
        post.add(verdict)
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
    """What a source gave: its verdicts read (and bad records skipped), records kept apart."""

    read: SourceRecords[Verdict]
    records: dict[str, PostRecord] = field(default_factory=dict)

    def posts(self) -> list[RecordedPost]:
        """The posts of the history, in the order they first appear."""
        return group_posts(self.read.records, self.records)


def is_dsn(spec: str) -> bool:
    """True for a PostgreSQL connection address."""
    return spec.startswith(DSN_PREFIXES)


def read_history(
    spec: str, kafka: KafkaSettings | None, limits: RecordLimits | None = None
) -> History:
    """The history in a JSONL file, a topic or a PostgreSQL DSN; bad records skipped, counted."""
    if is_dsn(spec):
        return _read_postgres(spec, limits or RecordLimits())
    return History(read_verdicts(spec, kafka, limits))


def _read_postgres(dsn: str, limits: RecordLimits) -> History:
    """Every `verdicts` row of the sink's database, and the `posts.record` column if it exists."""
    import psycopg

    from operators.specialists.hashbank import redact_url

    where = redact_url(dsn)
    read = SourceRecords[Verdict](f"PostgreSQL at {where}")
    try:
        with psycopg.connect(dsn, connect_timeout=10) as connection:
            for key, body in _verdict_rows(connection):
                _parse_row(read, f"{where} verdicts[{key}]", body, limits)
            records = _post_records(connection, read, where)
    except psycopg.Error as error:
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise SourceUnreadable([f"PostgreSQL at {where}: {first}"]) from None
    if not read.records:
        raise SourceEmpty([*read.problem_lines(), f"{read.source}: no verdicts in it"])
    return History(read, records)


def _verdict_rows(connection: Any) -> Iterator[tuple[str, Any]]:
    """(key, verdict jsonb) of every verdict, oldest first, streamed by a server-side cursor."""
    with connection.cursor(name="vlmod_replay") as cursor:
        cursor.itersize = 2000
        cursor.execute("SELECT key, verdict FROM verdicts ORDER BY processed_at, key")
        yield from cursor


def _parse_row(read: SourceRecords[Verdict], where: str, body: Any, limits: RecordLimits) -> None:
    """Add the row's verdict to `read`, or skip it with the reason."""
    from review.report_io import BadRecord, RawRecord, record_object

    try:
        raw = body if isinstance(body, bytes) else _json_bytes(body)
        read.records.append(verdict_of(record_object(RawRecord(where, raw, len(raw)), limits)))
    except (ValidationError, BadRecord) as error:
        read.skip(where, error)


def _json_bytes(body: Any) -> bytes:
    """The JSON text of a decoded jsonb value (so the same size and depth limits apply)."""
    import json

    return (body if isinstance(body, str) else json.dumps(body)).encode()


def _post_records(
    connection: Any, read: SourceRecords[Verdict], where: str
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
