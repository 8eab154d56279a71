"""The verdict history in PostgreSQL: one `verdicts` row per verdict key, one `posts` row per post.

    store = PostgresStore("postgresql://vlmod@127.0.0.1:5432/vlmod")
    store.ensure_schema()
    store.write(posts, verdicts)      # returns once the transaction has committed

- `verdicts`: the whole verdict as `jsonb`, with the columns reviewers and analysts filter by
  (post, policy and version, action, queue, shadow, time). The key is the verdict's idempotency
  key (post id + policy id + version), so a re-delivered verdict replaces its row, never adds one.
- `posts`: the post as received, inline image bytes replaced by their sha256, size and type
  (the history keeps what a replay reads, not the uploads), and the union of every signal value
  computed for it across its policies' verdicts: `signals` merges one level deep, so `labels` from
  one policy and `labels` from another end up in one object. `record` is the post's record
  (`contracts.history.PostRecord`: the fields its policies read, every producer value by request,
  their versions), taken from the verdict that carries it and kept there only: a replay reads it
  (issue 21). A later write without one leaves it as it is.
- `vlmod_schema` records the schema version; a database written by a newer version is refused
  in one line rather than written in an old layout, and an older one is brought up to date
  (version 1 lacked `posts.record`).
"""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Iterable, Sequence
from typing import Any

from contracts.backoff import backoff_delay
from contracts.errors import ServiceUnavailable
from contracts.outcomes import Outcome
from contracts.records import Post, Verdict
from contracts.services import redact_url
from sinks.base import Refusal

SCHEMA_VERSION = 2
COMPONENT = "sink.postgres"
SCHEMA_LOCK = 0x766C6D6F64  # "vlmod": one lock id for schema changes

SCHEMA = """
CREATE TABLE IF NOT EXISTS vlmod_schema (
    component text PRIMARY KEY,
    version integer NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS verdicts (
    key text PRIMARY KEY,
    post_id text NOT NULL,
    policy_id text NOT NULL,
    policy_version text NOT NULL,
    action text NOT NULL,
    queue text,
    shadow boolean NOT NULL,
    processed_at timestamptz NOT NULL,
    verdict jsonb NOT NULL
);
CREATE INDEX IF NOT EXISTS verdicts_post ON verdicts (post_id);
CREATE INDEX IF NOT EXISTS verdicts_policy_time
    ON verdicts (policy_id, policy_version, processed_at);
CREATE INDEX IF NOT EXISTS verdicts_action_time ON verdicts (action, processed_at);
CREATE INDEX IF NOT EXISTS verdicts_queue_time ON verdicts (queue, processed_at)
    WHERE queue IS NOT NULL;
CREATE TABLE IF NOT EXISTS posts (
    post_id text PRIMARY KEY,
    post jsonb NOT NULL,
    signals jsonb NOT NULL,
    record jsonb,
    first_seen timestamptz NOT NULL DEFAULT now(),
    last_seen timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS posts_last_seen ON posts (last_seen);
"""
# What each version added, run in order on an older database (under the schema lock).
MIGRATIONS = {2: "ALTER TABLE posts ADD COLUMN IF NOT EXISTS record jsonb"}

UPSERT_VERDICT = """
INSERT INTO verdicts (key, post_id, policy_id, policy_version, action, queue, shadow,
                      processed_at, verdict)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (key) DO UPDATE SET
    action = EXCLUDED.action, queue = EXCLUDED.queue, shadow = EXCLUDED.shadow,
    processed_at = EXCLUDED.processed_at, verdict = EXCLUDED.verdict
"""

# Signals merge one level deep: {"labels": {...}} from two policies become one `labels` object.
UPSERT_POST = """
INSERT INTO posts AS kept (post_id, post, signals, record) VALUES (%s, %s, %s, %s)
ON CONFLICT (post_id) DO UPDATE SET
    post = EXCLUDED.post,
    last_seen = now(),
    record = coalesce(EXCLUDED.record, kept.record),
    signals = (
        SELECT coalesce(jsonb_object_agg(key, CASE
            WHEN jsonb_typeof(old.value) = 'object' AND jsonb_typeof(new.value) = 'object'
                THEN old.value || new.value
            ELSE coalesce(new.value, old.value) END), '{}'::jsonb)
        FROM jsonb_each(kept.signals) AS old
        FULL JOIN jsonb_each(EXCLUDED.signals) AS new USING (key)
    )
"""


class PostgresStore:
    """Writes verdicts and posts in one transaction per call; reads nothing back but the schema."""

    def __init__(self, dsn: str, connect_timeout_s: float = 10.0) -> None:
        self.dsn = dsn
        self.connect_timeout_s = connect_timeout_s

    def _connect(self) -> Any:
        import psycopg

        try:
            return psycopg.connect(self.dsn, connect_timeout=int(self.connect_timeout_s))
        except psycopg.OperationalError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ServiceUnavailable(f"PostgreSQL at {redact_url(self.dsn)}: {first}") from exc

    def ensure_schema(self) -> None:
        """Create the tables and indexes where missing; refuse a newer schema than this one."""
        with self._connect() as connection:
            # Several consumers start at once; CREATE ... IF NOT EXISTS alone can still collide.
            connection.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
            connection.execute(SCHEMA)
            found = connection.execute(
                "SELECT version FROM vlmod_schema WHERE component = %s", (COMPONENT,)
            ).fetchone()
            if found is not None and found[0] > SCHEMA_VERSION:
                raise ServiceUnavailable(
                    f"PostgreSQL at {redact_url(self.dsn)} holds verdict schema version "
                    f"{found[0]}, newer than this vlmod's {SCHEMA_VERSION}: upgrade vlmod to "
                    "write to it"
                )
            for version in range(found[0] + 1 if found else 1, SCHEMA_VERSION + 1):
                if version in MIGRATIONS:
                    connection.execute(MIGRATIONS[version])
            connection.execute(
                "INSERT INTO vlmod_schema (component, version) VALUES (%s, %s) "
                "ON CONFLICT (component) DO UPDATE SET version = EXCLUDED.version, "
                "updated_at = now()",
                (COMPONENT, SCHEMA_VERSION),
            )

    def write(self, posts: Sequence[Post], verdicts: Sequence[Verdict]) -> None:
        """Upsert `posts` (with their verdicts' signals) and `verdicts`; durable on return."""
        import psycopg
        from psycopg.types.json import Jsonb

        signals = signal_union(verdicts)
        records = {v.post_id: Jsonb(v.record.model_dump(mode="json")) for v in verdicts if v.record}
        try:
            with self._connect() as connection, connection.cursor() as cursor:
                cursor.executemany(UPSERT_VERDICT, [verdict_row(v, Jsonb) for v in verdicts])
                cursor.executemany(
                    UPSERT_POST,
                    [
                        (
                            p.id,
                            Jsonb(post_record(p)),
                            Jsonb(signals.get(p.id, {})),
                            records.get(p.id),
                        )
                        for p in posts
                    ],
                )
        except psycopg.OperationalError as exc:  # the server went away mid-transaction
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ServiceUnavailable(f"PostgreSQL at {redact_url(self.dsn)}: {first}") from exc


class PostgresSink:
    """`kind: postgres`: every verdict (shadow ones marked) and every judged post, per batch."""

    def __init__(self, dsn: str, name: str = "postgres", attempts: int = 3) -> None:
        self.name = name
        self.store = PostgresStore(dsn)
        self.attempts = attempts
        self.store.ensure_schema()  # at start: a wrong address or a newer schema stops it there

    def write(self, outcomes: Sequence[Outcome]) -> Sequence[Refusal]:
        """One transaction per batch, tried `attempts` times; refuses nothing one by one."""
        posts = [outcome.post for outcome in outcomes if outcome.post is not None]
        verdicts = [active.verdict for outcome in outcomes for active in outcome.verdicts]
        verdicts += [shadow.verdict for outcome in outcomes for shadow in outcome.shadows]
        for attempt in range(1, self.attempts + 1):
            try:
                self.store.write(posts, verdicts)
                return []
            except ServiceUnavailable:
                if attempt == self.attempts:
                    raise
                time.sleep(backoff_delay(attempt, base_s=0.2, cap_s=2.0))
        return []

    def close(self) -> None:
        """Nothing held between batches."""


def verdict_row(verdict: Verdict, jsonb: Any) -> tuple[Any, ...]:
    """The `verdicts` columns of one verdict; its record goes to `posts.record`, not here."""
    return (
        verdict.key,
        verdict.post_id,
        verdict.policy.id,
        str(verdict.policy.version),
        verdict.action.value,
        verdict.queue,
        verdict.shadow,
        verdict.processed_at,
        jsonb(verdict.model_dump(mode="json", exclude={"record"})),
    )


def signal_union(verdicts: Iterable[Verdict]) -> dict[str, dict[str, Any]]:
    """Per post id, every signal its verdicts read, merged one level deep."""
    merged: dict[str, dict[str, Any]] = {}
    for verdict in verdicts:
        into = merged.setdefault(verdict.post_id, {})
        for group, values in verdict.signals.model_dump(mode="json", exclude_none=True).items():
            if isinstance(values, dict) and isinstance(into.get(group), dict):
                into[group] = {**into[group], **values}
            else:
                into[group] = values
    return merged


def post_record(post: Post) -> dict[str, Any]:
    """The post as JSON, each inline image's bytes replaced by their sha256, size and type."""
    record = post.model_dump(mode="json", exclude_none=True)
    images: list[dict[str, Any]] = []
    for image in post.images:
        if image.data is None:
            images.append({"url": image.url})
            continue
        raw = base64.b64decode(image.data)
        inline: dict[str, Any] = {"sha256": hashlib.sha256(raw).hexdigest(), "bytes": len(raw)}
        images.append({**inline, "mime": image.mime} if image.mime else inline)
    record["images"] = images
    return record
