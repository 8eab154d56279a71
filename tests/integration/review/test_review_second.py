"""Second reviews and adjudication over real Redis and Tansu and plain HTTP: the second reviewer
is never the first and never sees the first decision; a disagreement reaches only a lead; the
decisions topic gets first, second and final, each once."""

from __future__ import annotations

import re

from contracts.review import ReviewTask
from review.decision_plans import derived_key
from tests.integration.consoles import (
    Client,
    RunningConsole,
    decide_at_once,
    read_records,
    review_task,
)


def reviewers(password_hash: str) -> dict:
    def grant(queues: list[str], role: str = "reviewer") -> dict:
        return {"password_argon2": password_hash, "queues": queues, "role": role}

    return {"ana": grant(["spam"]), "ben": grant(["spam"]), "lea": grant(["spam"], "lead")}


def start(start_console, password_hash) -> RunningConsole:
    return start_console(reviewers=reviewers(password_hash), second_review={"spam": {"share": 1.0}})


def logged_in(console: RunningConsole, *names: str) -> list[Client]:
    clients = []
    for name in names:
        client = Client(console)
        assert client.log_in(name).status_code == 303
        clients.append(client)
    return clients


def decide(client: Client, key: str, kind: str, action: str = "") -> int:
    form = {"key": key, "kind": kind, "action": action, "csrf": client.csrf("/")}
    return client.post("/decide", form).status_code


def _as_seen(page: str, key: str) -> str:
    """The task page below its header (which names the reviewer), without what differs between
    two claims of one post: the task key, the CSRF token and the seconds left on the lease."""
    body = page.split("</header>", 1)[1].replace(key, "KEY")
    body = re.sub(r'name="csrf" value="[^"]+"', "CSRF", body)
    return re.sub(r'id="lease">\d+ s left', "LEASE", body)


def test_a_disagreement_is_adjudicated_by_a_lead_and_only_the_final_decision_is_final(
    start_console, password_hash
):
    console = start(start_console, password_hash)
    task: ReviewTask = review_task()
    console.publish(task)
    ana, ben, lea = logged_in(console, "ana", "ben", "lea")

    assert ana.claim("spam") == task.key
    first_page = _as_seen(ana.get("/queue/spam").text, task.key)
    assert decide(ana, task.key, "uphold") == 303
    assert "no task" in _claim_none(ana), "ana never gets the second review of her own task"
    second_key = derived_key(task.key, "second")
    assert ben.claim("spam") == second_key
    second_page = _as_seen(ben.get("/queue/spam").text, second_key)
    assert second_page == first_page, "the second reviewer sees what the first saw, no more"
    assert decide(ben, second_key, "overturn", "allow") == 303

    adjudication_key = derived_key(second_key, "adjudication")
    for outsider in (ana, ben):
        assert outsider.get("/queue/adjudication").status_code == 403
        refused = outsider.post("/queue/adjudication/claim", {"csrf": outsider.csrf("/")})
        assert refused.status_code == 403
    assert lea.claim("adjudication") == adjudication_key
    page = lea.get("/queue/adjudication").text
    reviews = re.sub(r"\s+", " ", page.split('id="reviews"', 1)[1].split("</table>", 1)[0])
    assert "first</td><td>ana</td><td>uphold</td> <td>block" in reviews
    assert "second</td><td>ben</td><td>overturn</td> <td>allow" in reviews
    assert 'id="escalate"' not in page
    assert decide(ben, adjudication_key, "uphold") == 403, "ben is no lead"
    assert decide(lea, adjudication_key, "overturn", "allow") == 303
    assert decide(lea, adjudication_key, "overturn", "allow") == 409

    records = read_records(console, console.config.decisions_topic, 3, settle_s=2)
    assert [(r["stage"], r["final"], r["reviewer"], r["action"]) for r in records] == [
        ("first", False, "ana", "block"),
        ("second", False, "ben", "allow"),
        ("adjudication", True, "lea", "allow"),
    ]
    assert {r["key"] for r in records} == {task.key}
    final = console.store.final(task.key)
    assert final is not None and final.decision.reviewer == "lea"
    stats = lea.get("/api/stats").json()
    assert stats["second_reviews"] == {"spam": {"agreed": 0, "disagreed": 1}}


def test_a_second_review_that_agrees_is_final_and_nothing_goes_to_a_lead(
    start_console, password_hash
):
    console = start(start_console, password_hash)
    task = review_task()
    console.publish(task)
    ana, ben, lea = logged_in(console, "ana", "ben", "lea")
    assert ana.claim("spam") == task.key
    decide(ana, task.key, "overturn", "allow")
    second_key = derived_key(task.key, "second")
    assert ben.claim("spam") == second_key
    decide(ben, second_key, "overturn", "allow")

    records = read_records(console, console.config.decisions_topic, 2, settle_s=2)
    assert [(r["stage"], r["final"]) for r in records] == [("first", False), ("second", True)]
    assert "no task" in _claim_none(lea, "adjudication")
    final = console.store.final(task.key)
    assert final is not None and final.decision.reviewer == "ben"


def test_concurrent_decisions_on_a_second_review_publish_one_and_queue_one_adjudication(
    start_console, password_hash
):
    console = start(start_console, password_hash)
    task = review_task()
    console.publish(task)
    ana, ben = logged_in(console, "ana", "ben")
    assert ana.claim("spam") == task.key
    decide(ana, task.key, "uphold")
    second_key = derived_key(task.key, "second")
    assert ben.claim("spam") == second_key
    forms = [{"kind": "overturn", "action": "allow"}, {"kind": "overturn", "action": "review"}]
    statuses = sorted(status for status, _ in decide_at_once(console, ben, second_key, forms))
    assert statuses == [303, 409]

    records = read_records(console, console.config.decisions_topic, 2, settle_s=3)
    assert [r["stage"] for r in records] == ["first", "second"], "one second review, once"
    adjudication = console.store.stats().get("adjudication")
    assert adjudication is not None and adjudication.open == 1


def _claim_none(client: Client, queue: str = "spam") -> str:
    """Claim in `queue` when nothing is for this reviewer: the queue page, with "no task"."""
    client.post(f"/queue/{queue}/claim", {"csrf": client.csrf(f"/queue/{queue}")})
    page = client.get(f"/queue/{queue}").text
    return "no task" if 'data-task-key="' not in page else page
