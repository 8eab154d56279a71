"""The review store's and ingester's pure parts: stored places, parsing, dead letters."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import pytest
from kafka.consumer.fetcher import ConsumerRecord

from contracts.records import Action, PolicyRef, Post, Verdict
from contracts.review import ReviewTask
from review.ingest import (
    ReviewTaskInvalid,
    dead_letter_for,
    dead_letter_message,
    parse_review_task,
    split_records,
)
from review.tasks import MS_DIGITS, TaskStore, enqueued_ms, place_value

POLICY = PolicyRef(id="p", version=1, sha256="0" * 64)
T0 = datetime(2025, 1, 1, tzinfo=UTC)


def task(enqueued_at=T0, priority=7, queue="scam|2"):
    verdict = Verdict(
        post_id="p1", key="k1", action=Action.REVIEW, queue=queue, policy=POLICY, processed_at=T0
    )
    return ReviewTask(
        key="k1",
        queue=queue,
        priority=priority,
        enqueued_at=enqueued_at,
        verdict=verdict,
        post=Post(id="p1", text="hi"),
    )


def record(value, offset=7):
    return ConsumerRecord(
        "review.scam", 2, -1, offset, 0, 0, b"k1", value, [], None, 2, len(value or b""), -1
    )


def test_the_place_keeps_priority_padded_milliseconds_and_any_queue_name():
    assert place_value(task()) == f"7|{1735689600000:0{MS_DIGITS}d}|scam|2"
    assert place_value(task(priority=-3)).startswith("-3|")


def test_enqueued_times_outside_the_index_are_clamped():
    assert enqueued_ms(task(datetime(1960, 1, 1, tzinfo=UTC))) == 0
    assert enqueued_ms(task(datetime(2025, 1, 1, 0, 0, 1, 500_000, tzinfo=UTC))) == 1735689601500


def test_padded_milliseconds_sort_as_text_like_numbers():
    times = [datetime(1970, 1, 2, tzinfo=UTC), datetime(2025, 1, 1, tzinfo=UTC)]
    places = [place_value(task(t)).split("|")[1] for t in times]
    assert places == sorted(places) and len(set(map(len, places))) == 1


def test_a_store_refuses_an_unknown_order_and_a_non_positive_lease():
    with pytest.raises(ValueError, match="order"):
        TaskStore("redis://127.0.0.1:1/0", order="fifo")
    with pytest.raises(ValueError, match="lease_s"):
        TaskStore("redis://127.0.0.1:1/0", lease_s=0)


def test_parse_names_what_is_wrong():
    assert parse_review_task(task().model_dump_json().encode()) == task()
    with pytest.raises(ReviewTaskInvalid, match="verdict: Field required"):
        parse_review_task(b'{"key": "k", "queue": "q", "post": {"id": "p"}}')
    with pytest.raises(ReviewTaskInvalid, match="not a ReviewTask"):
        parse_review_task(b"{not json")
    with pytest.raises(ReviewTaskInvalid, match="no value"):
        parse_review_task(None)


def test_split_keeps_good_tasks_and_pairs_bad_records_with_their_error():
    good, bad = record(task().model_dump_json().encode(), 1), record(b"[]", 2)
    tasks, errors = split_records([good, bad])
    assert tasks == [task()]
    assert [(r.offset, type(e)) for r, e in errors] == [(2, ReviewTaskInvalid)]


def test_a_dead_letter_carries_the_original_bytes_and_where_they_were_read():
    raw = b'{"post": {"id": "p9"}, "queue": 3}'
    error = ReviewTaskInvalid("not a ReviewTask: queue: Input should be a valid string")
    letter = dead_letter_for(record(raw), error)
    assert base64.b64decode(letter.original) == raw
    assert base64.b64decode(letter.original_key or "") == b"k1"
    assert (letter.topic, letter.partition, letter.offset) == ("review.scam", 2, 7)
    assert (letter.post_id, letter.stage, letter.error_type) == (
        "p9",
        "validate",
        "ReviewTaskInvalid",
    )
    assert dead_letter_for(record(None), error).original == ""
    message = dead_letter_message(record(raw), error, "dl")
    assert (message.topic, message.key) == ("dl", b"k1")
