"""Appeals over real Redis and Tansu: the store's final decisions and appeal tasks, the appeals
topic ingested into the appeals queue (bad appeals dead-lettered with why), and an appeal
decided over HTTP and published once, marked as an appeal."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from contracts.records import Action
from contracts.review import AppealRequest, ReviewStage
from review.appeals import AppealInvalid, appeal_key, queue_appeal
from review.task_meta import FinalDecision, TaskStage
from review.tasks import AlreadyDecided, TaskStore
from tests.integration.consoles import (
    Client,
    read_decisions,
    read_records,
    review_task,
    send_records,
)
from tests.unit.review.qa_records import decision, task

APPEALED_AT = datetime(2025, 3, 1, tzinfo=UTC)


@pytest.fixture
def store(redis_url):
    return TaskStore(redis_url, namespace=f"appeals-{uuid.uuid4().hex[:8]}")


def appeal_of(key: str, reason: str = "it was satire", post_id: str | None = None) -> AppealRequest:
    return AppealRequest(
        key=key, post_id=post_id or f"post-{key}", reason=reason, submitted_at=APPEALED_AT
    )


def decided(store: TaskStore, key: str, reviewer: str = "ana") -> FinalDecision:
    """Task `key` in spam, claimed and upheld by `reviewer`, its decision final."""
    store.add(task(key))
    assert store.claim("spam", reviewer) is not None
    final = FinalDecision(decision=decision(key, reviewer=reviewer), task=key)
    store.decide(key, reviewer, "", final=final)
    return final


def test_an_appeal_of_a_decided_key_is_queued_once_and_never_given_to_its_reviewer(store):
    final = decided(store, "k1")
    assert store.final("k1") == final
    appeal = appeal_of("k1")
    assert queue_appeal(store, appeal, "appeals") is True
    assert queue_appeal(store, appeal, "appeals") is False, "the same appeal read again"
    assert store.claim("appeals", "ana") is None, "ana made the decision appealed"
    claim = store.claim("appeals", "ben")
    assert claim is not None and claim.task.key == appeal_key(appeal)
    assert claim.meta is not None and claim.meta.stage is TaskStage.APPEAL
    assert claim.meta.original == final.decision and claim.meta.appeal == appeal
    assert claim.task.post == task("k1").post


def test_an_appeal_names_a_decided_key_and_its_post(store):
    with pytest.raises(AppealInvalid, match="no final decision on key 'k2' in this console"):
        queue_appeal(store, appeal_of("k2"), "appeals")
    store.add(task("k2"))
    with pytest.raises(AppealInvalid, match="no final decision"):
        queue_appeal(store, appeal_of("k2"), "appeals")
    decided(store, "k2")
    with pytest.raises(AppealInvalid, match="names post 'other', but key 'k2' was decided"):
        queue_appeal(store, appeal_of("k2", post_id="other"), "appeals")


def test_an_escalation_is_no_final_decision_and_a_decided_task_stays_decided(store):
    store.add(task("k3"))
    store.claim("spam", "ana")
    store.decide("k3", "ana", "")  # an escalation records no final decision
    assert store.final("k3") is None
    with pytest.raises(AlreadyDecided):
        store.decide("k3", "ana", "", final=FinalDecision(decision=decision("k3"), task="k3"))
    assert store.final("k3") is None, "a refused decision records nothing"


def test_bad_appeals_are_dead_lettered_with_the_reason_and_good_ones_queued(start_console):
    console = start_console()
    assert console.config.appeals is not None
    good, other = review_task(priority=1), review_task(priority=2)
    console.publish(good, other)
    ana = Client(console)
    ana.log_in("ana")
    assert ana.claim("spam") == good.key
    ana.post("/decide", {"key": good.key, "kind": "uphold", "csrf": ana.csrf("/")})

    unknown = appeal_of("no-such-key", post_id="p-1")
    wrong_post = appeal_of(good.key, post_id="someone-else")
    send_records(
        console,
        console.config.appeals.topic,
        b"{not json",
        unknown.model_dump_json().encode(),
        wrong_post.model_dump_json().encode(),
        appeal_of(good.key, post_id=good.post.id).model_dump_json().encode(),
    )
    letters = read_records(console, console.config.dead_letter_topic, 3, settle_s=2)
    reasons = sorted(letter["error"] for letter in letters)
    assert len(reasons) == 3
    assert reasons[0].startswith("no final decision on key 'no-such-key'")
    assert reasons[1].startswith("not an AppealRequest")
    assert "names post 'someone-else'" in reasons[2]
    assert {letter["topic"] for letter in letters} == {console.config.appeals.topic}
    assert {letter["post_id"] for letter in letters} == {None, "p-1", "someone-else"}
    appealed = appeal_of(good.key, post_id=good.post.id)
    assert console.store.get(appeal_key(appealed)) is not None


def test_an_appeal_overturned_over_http_is_published_once_marked_as_an_appeal(
    start_console, password_hash
):
    reviewers = {
        "ana": {"password_argon2": password_hash, "queues": ["spam"]},
        "ben": {"password_argon2": password_hash, "queues": ["appeals"]},
    }
    console = start_console(reviewers=reviewers)
    assert console.config.appeals is not None
    task_ = review_task()
    console.publish(task_)
    ana, ben = Client(console), Client(console)
    ana.log_in("ana")
    ben.log_in("ben")
    assert ana.claim("spam") == task_.key
    ana.post("/decide", {"key": task_.key, "kind": "uphold", "csrf": ana.csrf("/")})
    (upheld,) = read_decisions(console, 1)

    appeal = appeal_of(task_.key, "a harmless flyer", post_id=task_.post.id)
    send_records(console, console.config.appeals.topic, appeal.model_dump_json().encode())
    key = appeal_key(appeal)
    _wait_for_task(console, key)
    assert ben.claim("appeals") == key
    page = ben.get("/queue/appeals").text
    assert 'id="original-reviewer">ana<' in page and "a harmless flyer" in page
    assert 'id="escalate"' not in page
    form = {"key": key, "kind": "overturn", "action": "allow", "csrf": ben.csrf("/")}
    assert ben.post("/decide", form).status_code == 303
    assert ben.post("/decide", form).status_code == 409, "decided once"
    assert ana.get("/queue/appeals").status_code == 403, "ana may not work appeals"

    records = read_records(console, console.config.decisions_topic, 2, settle_s=2)
    assert len(records) == 2
    appealed = records[1]
    assert appealed["stage"] == ReviewStage.APPEAL and appealed["final"] is True
    assert appealed["appeal_of"] == upheld["decision_id"] and appealed["key"] == task_.key
    assert appealed["decision"] == "overturn" and appealed["action"] == Action.ALLOW
    assert appealed["reviewer"] == "ben" and appealed["queue"] == "appeals"
    final = console.store.final(task_.key)
    assert final is not None and final.decision.decision_id == appealed["decision_id"]


def _wait_for_task(console, key: str) -> None:
    from demo.harness import wait_until

    wait_until(lambda: console.store.get(key) is not None, what=f"appeal task {key}")
