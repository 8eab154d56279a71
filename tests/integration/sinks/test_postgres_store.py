"""The verdict history on a real PostgreSQL: one row per verdict key and per post, whatever is
delivered twice; a post's signals are the union over its policies; the schema is versioned."""

from __future__ import annotations

import base64
import hashlib
import uuid

import psycopg
import pytest

from contracts.errors import ServiceUnavailable
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
