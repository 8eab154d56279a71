"""The review task store on a real Redis, and the ingester on a real Tansu topic."""

from __future__ import annotations

import base64
import json
import threading
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from contracts.records import Action, DeadLetter, PolicyRef, Post, Verdict
from contracts.review import ReviewTask
from kafka_io.clients import KafkaWriter, OutMessage
from review.ingest import ReviewIngest, UnknownReviewTopic
from review.tasks import (
    AlreadyDecided,
    LeaseLost,
    ReviewStoreUnavailable,
    TaskStore,
)
from tests.integration.topics import ingest_until, read_until

GROUP_TIMEOUTS = {"session_timeout_ms": 6000, "heartbeat_interval_ms": 500}
POLICY = PolicyRef(id="p", version=1, sha256="0" * 64)
T0 = datetime(2025, 1, 1, tzinfo=UTC)


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = T0.timestamp() + 3600) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def task(key, queue="q", priority=100, age_s=0.0):
    """A valid task enqueued `age_s` seconds after T0."""
    verdict = Verdict(
        post_id=f"post-{key}",
        key=key,
        action=Action.REVIEW,
        queue=queue,
        policy=POLICY,
        processed_at=T0,
    )
    post = Post(id=f"post-{key}", text=f"text of {key}")
    enqueued = T0 + timedelta(seconds=age_s)
    return ReviewTask(
        key=key, queue=queue, priority=priority, enqueued_at=enqueued, verdict=verdict, post=post
    )


@pytest.fixture
def make_store(redis_url):
    """TaskStores on a namespace of their own, sharing one injected clock."""
    namespace = f"t-{uuid.uuid4().hex[:8]}"
    clock = Clock()

    def make(**kwargs):
        return TaskStore(redis_url, namespace=namespace, clock=clock, **kwargs)

    make.clock = clock
    return make


def claim_all(store, queue="q"):
    """Claim until the queue is empty, each claim by a new reviewer; the keys in order."""
    keys = []
    while claim := store.claim(queue, f"r{len(keys)}"):
        keys.append(claim.task.key)
    return keys


MIXED = [("old-low", 100, 0), ("new-urgent", 10, 50), ("old-urgent", 10, 5), ("vip", -3, 90)]


def test_claims_come_by_priority_then_age(make_store):
    store = make_store()
    for key, priority, age in [*MIXED, ("huge-priority", 10**12, 1)]:
        assert store.add(task(key, priority=priority, age_s=age))
    assert claim_all(store) == ["vip", "old-urgent", "new-urgent", "old-low", "huge-priority"]


def test_order_age_takes_the_oldest_first_from_the_same_queue(make_store):
    by_priority, by_age = make_store(), make_store(order="age")
    for key, priority, age in MIXED:
        by_priority.add(task(key, priority=priority, age_s=age))
    assert by_age.claim("q", "ana").task.key == "old-low"
    assert by_priority.claim("q", "bea").task.key == "vip"
    assert claim_all(by_age) == ["old-urgent", "new-urgent"]


def test_eight_threads_never_get_the_same_task(make_store):
    store = make_store()
    for n in range(200):
        store.add(task(f"k{n}", priority=n % 3, age_s=n))
    start = threading.Barrier(8)
    got: list[list[str]] = [[] for _ in range(8)]

    def reviewer(t):
        start.wait()
        for i in range(50):
            claim = store.claim("q", f"r{t}-{i}")
            if claim:
                got[t].append(claim.task.key)

    run_threads(reviewer, 8)
    counts = Counter(key for keys in got for key in keys)
    assert set(counts) == {f"k{n}" for n in range(200)}
    assert set(counts.values()) == {1}
    assert store.stats()["q"].claimed == 200


def test_eight_reviewers_claiming_and_deciding_decide_every_task_once(make_store):
    store = make_store()
    for n in range(200):
        store.add(task(f"k{n}", age_s=n))
    start = threading.Barrier(8)
    decided: list[list[str]] = [[] for _ in range(8)]

    def reviewer(t):
        start.wait()
        while claim := store.claim("q", f"r{t}"):
            decided[t].append(store.decide(claim.task.key, f"r{t}").key)

    run_threads(reviewer, 8)
    counts = Counter(key for keys in decided for key in keys)
    assert len(counts) == 200 and set(counts.values()) == {1}
    assert store.stats()["q"].open == store.stats()["q"].claimed == 0


def run_threads(target, count):
    errors = []

    def guarded(t):
        try:
            target(t)
        except Exception as exc:  # surfaced below, not lost in a thread
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(t,)) for t in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    assert not any(thread.is_alive() for thread in threads)


def test_an_expired_lease_returns_the_task_and_its_old_holder_loses_it(make_store):
    store = make_store(lease_s=60)
    store.add(task("k1"))
    first = store.claim("q", "ana")
    assert first.expires_at == pytest.approx(make_store.clock.now + 60)
    assert store.claim("q", "bea") is None
    make_store.clock.now += 60.5
    assert store.stats()["q"].open == 1 and store.stats()["q"].claimed == 0
    assert store.claimed_by("ana", "q") is None
    assert store.claim("q", "bea").task.key == "k1"
    with pytest.raises(LeaseLost, match="claimed by another reviewer"):
        store.decide("k1", "ana")
    with pytest.raises(LeaseLost):
        store.renew("k1", "ana")
    assert store.decide("k1", "bea").key == "k1"


def test_the_holder_of_an_expired_lease_cannot_decide_even_when_nobody_took_it(make_store):
    store = make_store(lease_s=60)
    store.add(task("k1"))
    store.claim("q", "ana")
    make_store.clock.now += 61
    with pytest.raises(LeaseLost, match="lease expired"):
        store.decide("k1", "ana")
    assert store.claim("q", "ana").task.key == "k1", "an expired task is claimable again"


def test_the_same_reviewer_claiming_again_gets_the_same_task_back(make_store):
    store = make_store()
    for n in range(3):
        store.add(task(f"k{n}", age_s=n))
    store.add(task("other-queue", queue="q2"))
    first = store.claim("q", "ana")
    assert store.claim("q", "ana") == first
    assert store.claimed_by("ana", "q") == first
    assert store.claim("q2", "ana").task.key == "other-queue", "one claim per queue"
    assert store.claim("q", "bea").task.key == "k1"
    assert store.claimed_by("bea", "q2") is None


def test_release_puts_the_task_back_at_its_old_place(make_store):
    store = make_store()
    store.add(task("first", age_s=1))
    store.add(task("second", age_s=2))
    store.claim("q", "ana")
    with pytest.raises(LeaseLost, match="claimed by another reviewer"):
        store.release("first", "bea")
    store.release("first", "ana")
    assert store.claimed_by("ana", "q") is None
    with pytest.raises(LeaseLost, match="waiting in its queue"):
        store.release("first", "ana")
    assert claim_all(store) == ["first", "second"]


def test_renew_extends_the_lease(make_store):
    store = make_store(lease_s=60)
    store.add(task("k1"))
    claimed = store.claim("q", "ana")
    make_store.clock.now += 50
    renewed = store.renew("k1", "ana")
    assert renewed.expires_at == pytest.approx(claimed.expires_at + 50)
    assert renewed.task == claimed.task and renewed.reviewer == "ana"
    make_store.clock.now += 20  # past the first expiry, within the renewed one
    assert store.claim("q", "bea") is None
    assert store.decide("k1", "ana").key == "k1"
    with pytest.raises(LeaseLost, match="decided already"):
        store.renew("k1", "ana")


def test_a_task_is_decided_once_and_never_queued_again(make_store):
    store = make_store()
    store.add(task("k1"))
    store.claim("q", "ana")
    assert store.decide("k1", "ana") == task("k1")
    with pytest.raises(AlreadyDecided, match="by ana"):
        store.decide("k1", "ana")
    assert store.add(task("k1")) is False
    assert store.claim("q", "bea") is None
    with pytest.raises(AlreadyDecided):
        store.decide("k1", "bea")
    assert store.get("k1") == task("k1")
    assert store.stats()["q"].open == store.stats()["q"].claimed == 0


def test_add_is_idempotent_and_unknown_keys_are_not_held(make_store):
    store = make_store()
    assert store.add(task("k1")) is True
    assert store.add(task("k1", priority=1)) is False
    store.claim("q", "ana")
    assert store.add(task("k1")) is False, "a claimed key is known"
    assert store.get("nope") is None
    with pytest.raises(LeaseLost, match="not a known task"):
        store.decide("nope", "ana")
    store.add(task("k2"))
    with pytest.raises(LeaseLost, match="waiting in its queue"):
        store.decide("k2", "ana")


def test_stats_and_queues(make_store):
    store = make_store(lease_s=60)
    assert store.queues() == [] and store.stats() == {}
    for n in range(3):
        store.add(task(f"a{n}", queue="a", age_s=n * 10))
    store.add(task("b0", queue="b", age_s=100))
    store.claim("a", "ana")
    stats = store.stats()
    assert store.queues() == ["a", "b"]
    assert (stats["a"].open, stats["a"].claimed) == (2, 1)
    assert stats["a"].oldest_age_s == pytest.approx(3600.0), "the claimed task is the oldest"
    assert stats["b"].oldest_age_s == pytest.approx(3500.0)
    store.claim("b", "bea")
    store.decide("b0", "bea")
    assert store.stats()["b"].oldest_age_s is None


def test_a_stopped_redis_is_named_without_its_password(redis_factory):
    server = redis_factory()
    url = f"redis://:sesame@127.0.0.1:{server.port}/0"
    server.stop()
    store = TaskStore(url, namespace=f"t-{uuid.uuid4().hex[:8]}")
    with pytest.raises(ReviewStoreUnavailable) as caught:
        store.claim("q", "ana")
    message = str(caught.value)
    assert f"127.0.0.1:{server.port}" in message and "sesame" not in message
    for call in (lambda: store.add(task("k1")), store.stats, lambda: store.decide("k", "a")):
        with pytest.raises(ReviewStoreUnavailable):
            call()


def test_the_store_works_again_once_redis_is_back(redis_factory):
    server = redis_factory()
    store = TaskStore(f"redis://127.0.0.1:{server.port}/0", namespace="t")
    store.add(task("k1"))
    server.stop()
    with pytest.raises(ReviewStoreUnavailable):
        store.claim("q", "ana")
    server.start()  # no persistence: an empty Redis, and the scripts must be loaded again
    assert store.add(task("k2")) and store.claim("q", "ana").task.key == "k2"


# --- ingest -------------------------------------------------------------------------------


def publish(kafka_settings, topic, values):
    writer = KafkaWriter(kafka_settings)
    try:
        writer.send_all([OutMessage(topic, value, key=f"m{n}".encode()) for n, value in values])
    finally:
        writer.close()


def test_ingest_stores_tasks_and_dead_letters_the_malformed(
    kafka_settings, topic_factory, group_id, make_store
):
    review, dead = topic_factory("review"), topic_factory("review-dl")
    tasks = [task(f"k{n}", priority=n) for n in range(3)]
    malformed = json.dumps({"key": "x", "queue": "q", "post": {"id": "post-x"}}).encode()
    values = [t.model_dump_json().encode() for t in tasks] + [malformed, b"not json"]
    last = task("last")  # one partition: once it is stored, every record before it was read
    again = [tasks[0].model_dump_json().encode(), last.model_dump_json().encode()]
    publish(kafka_settings, review, list(enumerate([*values, *again])))
    store = make_store()
    ingest = ReviewIngest(
        kafka_settings, [review], group_id, store, dead_letter_topic=dead, **GROUP_TIMEOUTS
    )
    try:
        added = ingest_until(ingest, lambda: store.get(last.key) is not None)
    finally:
        ingest.close()
    assert [store.get(t.key) for t in tasks] == tasks
    assert added == 4, "the task published twice was added once"
    assert store.stats()["q"].open == 4
    letters = [DeadLetter.model_validate_json(r.value) for r in read_until(kafka_settings, dead, 2)]
    assert [(d.offset, d.stage, d.error_type) for d in letters] == [
        (3, "validate", "ReviewTaskInvalid"),
        (4, "validate", "ReviewTaskInvalid"),
    ]
    assert base64.b64decode(letters[0].original) == malformed
    assert letters[0].post_id == "post-x" and "verdict: Field required" in letters[0].error


def test_ingest_reads_the_batch_again_after_a_redis_outage(
    kafka_settings, topic_factory, group_id, redis_factory
):
    review = topic_factory("review")
    server = redis_factory()
    store = TaskStore(f"redis://127.0.0.1:{server.port}/0", namespace="t")
    publish(kafka_settings, review, [(0, task("k0").model_dump_json().encode())])
    server.stop()
    ingest = ReviewIngest(kafka_settings, [review], group_id, store, **GROUP_TIMEOUTS)
    try:
        with pytest.raises(ReviewStoreUnavailable):
            ingest_until(ingest, lambda: False)
        server.start()
        added = ingest_until(ingest, lambda: store.get("k0") is not None)
    finally:
        ingest.close()
    assert added == 1


def test_an_unknown_review_topic_is_named_at_start(kafka_settings, topic_factory, make_store):
    known = topic_factory("review")
    missing = f"no-such-review-{uuid.uuid4().hex[:6]}"
    with pytest.raises(UnknownReviewTopic, match=missing):
        ReviewIngest(kafka_settings, [known, missing], "g", make_store())
    with pytest.raises(UnknownReviewTopic, match=r"dead-letter"):
        ReviewIngest(kafka_settings, [known], "g", make_store(), dead_letter_topic=missing)


def test_claim_key_leases_a_named_waiting_task_beside_the_one_held_and_nothing_else(make_store):
    store = make_store(lease_s=60)
    keys = ("held", "wave-1", "wave-2", "theirs", "done", "own-second")
    for age, key in enumerate(keys):
        store.add(task(key, age_s=age), exclude=["ana"] if key == "own-second" else ())
    assert store.claim("q", "ben").task.key == "held"  # the oldest goes to ben
    store.claim_key("theirs", "ben")
    with pytest.raises(LeaseLost, match="claimed by another reviewer"):
        store.claim_key("theirs", "ana")
    store.claim_key("done", "ana")
    store.decide("done", "ana")
    with pytest.raises(LeaseLost, match="decided already"):
        store.claim_key("done", "ana")
    with pytest.raises(LeaseLost, match="ana may not take"):
        store.claim_key("own-second", "ana")
    with pytest.raises(LeaseLost, match="not a known task"):
        store.claim_key("nothing", "ana")
    store.claim_key("wave-1", "ana")
    assert store.claimed_by("ana", "q") is None, "a cluster lease is not the reviewer's claim"
    store.decide("wave-1", "ana")
    states = store.states(["held", "wave-1", "wave-2", "theirs", "done", "nothing"])
    assert states == {
        "held": "claimed",
        "wave-1": "decided",
        "wave-2": "open",
        "theirs": "claimed",
        "done": "decided",
        "nothing": "unknown",
    }
    make_store.clock.now += 61  # the cluster lease runs out like any other
    assert store.claim("q", "cam").task.key == "held"
    assert store.states(["theirs"]) == {"theirs": "open"}
