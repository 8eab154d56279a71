"""The verdict history on a real PostgreSQL: one row per verdict key and per post, whatever is
delivered twice; a post's signals are the union over its policies, its record kept from the
verdict that carries it; the schema is versioned, and a version-1 database brought up to date."""

from __future__ import annotations

import base64
import hashlib
import uuid

import psycopg
import pytest

from contracts.errors import ServiceUnavailable
from contracts.history import PostRecord, RecordedValue
from contracts.records import Action, ImageRef, PolicyRef, Post, Signals, Verdict, verdict_key
from sinks.postgres import SCHEMA_VERSION, PostgresStore

PNG = b"\x89PNG\r\n\x1a\n-not-really-an-image-"


@pytest.fixture
def store(postgres_dsn):
    """A store in its own schema, so tests do not see each other's rows."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_dsn, autocommit=True) as connection:
        connection.execute(f"CREATE SCHEMA {schema}")
    dsn = f"{postgres_dsn}?options=-csearch_path%3D{schema}"
    created = PostgresStore(dsn)
    created.ensure_schema()
    return created


def verdict(post_id: str, policy: str, action: Action, **signals) -> Verdict:
    return Verdict(
        post_id=post_id,
        key=verdict_key(post_id, policy, 3),
        action=action,
        queue="spam" if action is Action.REVIEW else None,
        policy=PolicyRef(id=policy, version=3, sha256="0" * 64),
        signals=Signals(**signals),
    )


def recorded(post_id: str, spam: float) -> PostRecord:
    return PostRecord(
        post={"id": post_id, "text": "hello", "images": [], "meta": {}},
        values=[
            RecordedValue(producer="labels", request="VlmTask(spam)", value=spam),
            RecordedValue(producer="embed", request="VlmTask(embed)", value=[0.25, -1.5]),
            RecordedValue(producer="banks", request="('bank', 'x')", unavailable="redis down"),
        ],
        versions={"labels": "replica default=org/model@abc", "embed": "replica default=org/model"},
    )


def rows(store, sql):
    with psycopg.connect(store.dsn) as connection:
        return connection.execute(sql).fetchall()


def test_each_verdict_and_post_is_one_row_however_often_it_is_written(store):
    posts = [Post(id=f"p{n}", text=f"post {n}") for n in range(3)]
    verdicts = [verdict(p.id, "spam", Action.ALLOW) for p in posts]
    verdicts += [verdict(p.id, "scams", Action.REVIEW) for p in posts]
    store.write(posts, verdicts)
    store.write(posts, verdicts)  # re-delivered after a failed commit
    assert rows(store, "SELECT count(*) FROM verdicts") == [(6,)]
    assert rows(store, "SELECT count(*) FROM posts") == [(3,)]
    found = rows(
        store,
        "SELECT policy_id, action, queue, verdict->>'key' FROM verdicts "
        "WHERE post_id = 'p1' ORDER BY policy_id",
    )
    assert found == [
        ("scams", "review", "spam", verdict_key("p1", "scams", 3)),
        ("spam", "allow", None, verdict_key("p1", "spam", 3)),
    ]


def test_a_posts_signals_are_the_union_over_its_policies_and_deliveries(store):
    post = Post(id="u1", text="hello")
    store.write([post], [verdict("u1", "spam", Action.ALLOW, labels={"spam": 0.2})])
    store.write(
        [post],
        [
            verdict("u1", "weapons", Action.ALLOW, labels={"gun": 0.7}, answers={"sale": 0.1}),
            verdict("u1", "nsfw", Action.ALLOW, nsfw={"score": 0.05}),
        ],
    )
    [(signals,)] = rows(store, "SELECT signals FROM posts WHERE post_id = 'u1'")
    assert signals == {
        "labels": {"spam": 0.2, "gun": 0.7},
        "answers": {"sale": 0.1},
        "nsfw": {"score": 0.05},
    }


def test_inline_images_are_kept_as_their_digest_not_their_bytes(store):
    data = base64.b64encode(PNG).decode()
    post = Post(
        id="i1", images=[ImageRef(data=data, mime="image/png"), ImageRef(url="https://x/a")]
    )
    store.write([post], [verdict("i1", "spam", Action.ALLOW)])
    [(kept,)] = rows(store, "SELECT post->'images' FROM posts WHERE post_id = 'i1'")
    digest = hashlib.sha256(PNG).hexdigest()
    assert kept == [
        {"sha256": digest, "bytes": len(PNG), "mime": "image/png"},
        {"url": "https://x/a"},
    ]


def test_the_schema_version_is_recorded_and_a_newer_one_refused(store):
    assert rows(store, "SELECT component, version FROM vlmod_schema") == [
        ("sink.postgres", SCHEMA_VERSION)
    ]
    with psycopg.connect(store.dsn) as connection:
        connection.execute("UPDATE vlmod_schema SET version = version + 1")
    with pytest.raises(ServiceUnavailable, match=r"newer than this vlmod's"):
        store.ensure_schema()


def test_the_filter_columns_are_indexed(store):
    names = {
        name
        for (name,) in rows(
            store, "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema()"
        )
    }
    assert {
        "verdicts_post",
        "verdicts_policy_time",
        "verdicts_action_time",
        "verdicts_queue_time",
        "posts_last_seen",
    } <= names


def test_an_unreachable_database_is_one_line_without_its_password():
    store = PostgresStore("postgresql://vlmod:s3cret@127.0.0.1:1/vlmod", connect_timeout_s=2)
    with pytest.raises(ServiceUnavailable) as refused:
        store.ensure_schema()
    assert "s3cret" not in str(refused.value) and "\n" not in str(refused.value)
    assert str(refused.value).startswith("PostgreSQL at postgresql://vlmod:***@127.0.0.1:1/vlmod")


def test_a_posts_record_is_kept_from_the_verdict_carrying_it_and_never_wiped(store):
    post = Post(id="r1", text="hello")
    first = verdict("r1", "spam", Action.ALLOW).model_copy(update={"record": recorded("r1", 0.2)})
    store.write([post], [first, verdict("r1", "scams", Action.ALLOW)])
    [(record,)] = rows(store, "SELECT record FROM posts WHERE post_id = 'r1'")
    assert PostRecord.model_validate(record) == recorded("r1", 0.2)
    store.write([post], [verdict("r1", "nsfw", Action.ALLOW)])  # a later verdict, no record
    [(record,)] = rows(store, "SELECT record FROM posts WHERE post_id = 'r1'")
    assert PostRecord.model_validate(record) == recorded("r1", 0.2), "NULL never wipes it"
    again = first.model_copy(update={"record": recorded("r1", 0.9)})
    store.write([post], [again])  # the post decided again: its newer record replaces the old
    [(record,)] = rows(store, "SELECT record FROM posts WHERE post_id = 'r1'")
    assert PostRecord.model_validate(record) == recorded("r1", 0.9)
    [(kept,)] = rows(store, "SELECT verdict FROM verdicts WHERE policy_id = 'spam'")
    assert "record" not in kept, "the record is kept once per post, in posts"


# The tables and the version row as vlmod wrote them with schema version 1.
VERSION_1 = """
CREATE TABLE vlmod_schema (component text PRIMARY KEY, version integer NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE posts (post_id text PRIMARY KEY, post jsonb NOT NULL, signals jsonb NOT NULL,
    first_seen timestamptz NOT NULL DEFAULT now(), last_seen timestamptz NOT NULL DEFAULT now());
INSERT INTO vlmod_schema (component, version) VALUES ('sink.postgres', 1);
INSERT INTO posts (post_id, post, signals) VALUES ('old', '{"id": "old"}', '{}');
"""


def test_a_version_1_database_gains_the_record_column_and_keeps_its_rows(postgres_dsn):
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_dsn, autocommit=True) as connection:
        connection.execute(f"CREATE SCHEMA {schema}")
        connection.execute(f"SET search_path TO {schema}")
        connection.execute(VERSION_1)
    store = PostgresStore(f"{postgres_dsn}?options=-csearch_path%3D{schema}")
    store.ensure_schema()
    store.ensure_schema()  # a second consumer starting: nothing left to do
    assert rows(store, "SELECT component, version FROM vlmod_schema") == [("sink.postgres", 2)]
    assert rows(store, "SELECT post_id, record FROM posts") == [("old", None)]
    post = Post(id="new", text="hello")
    carrying = verdict("new", "spam", Action.ALLOW).model_copy(
        update={"record": recorded("new", 0.4)}
    )
    store.write([post], [carrying])
    [(record,)] = rows(store, "SELECT record FROM posts WHERE post_id = 'new'")
    assert PostRecord.model_validate(record) == recorded("new", 0.4)
