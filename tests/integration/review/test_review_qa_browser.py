"""Review QA in a real browser (Debian chromium, Playwright) against a console over real Tansu
and Redis: a golden task served and scored with no decision published; a second review that
disagrees, adjudicated by a lead while a reviewer is refused the adjudication queue; an appeal
overturned and published marked as an appeal.

Every wait is on a condition with a deadline, never a fixed sleep. Screenshots of the adjudication
and appeal pages go to test-artifacts/.
"""

from __future__ import annotations

import re

from contracts.records import Action
from contracts.review import AppealRequest, GoldenTask
from demo.harness import wait_until
from review.appeals import appeal_key
from review.decision_plans import derived_key
from review.golden import GoldenSet
from tests.integration.browsers import (
    ARTIFACTS,
    browser_fixture,  # noqa: F401 (a fixture)
    claim,
    contexts_fixture,  # noqa: F401 (a fixture)
    log_in,
)
from tests.integration.consoles import (
    read_decisions,
    read_records,
    review_task,
    send_records,
)

HEX_KEY = re.compile(r"^[0-9a-f]{32}$")


def reviewers(password_hash: str, **grants: tuple[list[str], str]) -> dict:
    return {
        name: {"password_argon2": password_hash, "queues": queues, "role": role}
        for name, (queues, role) in grants.items()
    }


def decide_by_key(page, key: str, done: str, action: str | None = None) -> None:
    """Press the decision's shortcut (after choosing the overturn action); wait for the redirect."""
    if action is not None:
        page.select_option("#overturn-action", action)
    page.keyboard.press(key)
    page.wait_for_url(re.compile(rf"done={done}$"))


def rows_of(page, table: str) -> str:
    """A table's text, whitespace collapsed."""
    return re.sub(r"\s+", " ", page.locator(table).inner_text())


def test_a_golden_task_is_served_like_any_other_and_scored_without_a_decision(
    start_console, contexts, password_hash
):
    grants = {"ana": (["spam", "senior"], "reviewer"), "lea": (["spam"], "lead")}
    console = start_console(
        reviewers=reviewers(password_hash, **grants), golden={"spam": {"rate": 1.0}}
    )
    known = review_task(text="a bake sale flyer")
    GoldenSet(console.store).add("spam", [GoldenTask(task=known, answer=Action.ALLOW)])
    real = review_task()
    console.publish(real)

    ana = log_in(contexts(), console, "ana")
    key = claim(ana, console)
    assert key is not None and key not in (real.key, known.key) and HEX_KEY.match(key)
    assert ana.locator("#post-id").inner_text() == known.post.id
    assert ana.locator("#post-text").inner_text() == "a bake sale flyer"
    for part in ("#uphold", "#overturn", "#escalate", "#skip", "#rules", "#media"):
        assert ana.locator(part).count() == 1, f"{part} is on the page as on any task"
    assert ana.locator("#appeal, #adjudication").count() == 0
    decide_by_key(ana, "o", "overturn", "allow")
    assert ana.locator("#task").get_attribute("data-task-key") == real.key, "next: the real one"

    assert console.config.golden_topic is not None
    (scored,) = read_records(console, console.config.golden_topic, 1, settle_s=1)
    assert (scored["reviewer"], scored["correct"], scored["given"]) == ("ana", True, "allow")
    published = read_records(console, console.config.decisions_topic, 0, timeout_s=2, settle_s=3)
    assert published == [], "a golden answer never reaches the decisions topic"

    lea = log_in(contexts(), console, "lea")
    lea.goto(f"{console.url}/dashboard")
    assert "ana 1 1 100 %" in rows_of(lea, "#golden-stats")
    ana.goto(f"{console.url}/dashboard")
    assert ana.locator("#golden-stats").count() == 0, "a reviewer never sees golden scores"


def test_a_disagreement_goes_to_a_lead_and_no_reviewer_can_open_it(
    start_console, contexts, password_hash
):
    grants = {"ana": (["spam"], "reviewer"), "ben": (["*"], "reviewer"), "lea": (["spam"], "lead")}
    console = start_console(
        reviewers=reviewers(password_hash, **grants), second_review={"spam": {"share": 1.0}}
    )
    task = review_task()
    console.publish(task)

    ana = log_in(contexts(), console, "ana")
    assert claim(ana, console) == task.key
    decide_by_key(ana, "u", "uphold")
    assert ana.locator("#task").count() == 0, "ana is never given her own task again"

    ben = log_in(contexts(), console, "ben")
    assert claim(ben, console) == derived_key(task.key, "second")
    assert ben.locator("#post-id").inner_text() == task.post.id
    assert ben.locator("#adjudication, #appeal").count() == 0, "blind to the first review"
    assert "ana" not in ben.locator("main").inner_text()
    decide_by_key(ben, "o", "overturn", "allow")

    ben.goto(f"{console.url}/")
    assert "adjudication" not in ben.locator("#queues").inner_text(), '"*" is no lead'
    ben.goto(f"{console.url}/queue/adjudication")
    assert ben.locator("#error-title").inner_text() == "Not allowed"
    csrf = ben.locator("input[name=csrf]").first.get_attribute("value") or ""
    refused = ben.request.post(
        f"{console.url}/queue/adjudication/claim", form={"csrf": csrf}, max_redirects=0
    )
    assert refused.status == 403

    lea = log_in(contexts(), console, "lea")
    lea.wait_for_url(f"{console.url}/")
    assert re.search(r"adjudication 1 0", rows_of(lea, "#queues"))
    assert claim(lea, console, "adjudication") == derived_key(
        derived_key(task.key, "second"), "adjudication"
    )
    reviews = rows_of(lea, "#reviews")
    assert "first ana uphold block" in reviews and "second ben overturn allow" in reviews
    assert lea.locator("#escalate").count() == 0
    ARTIFACTS.mkdir(exist_ok=True)
    lea.screenshot(path=str(ARTIFACTS / "review-adjudication.png"), full_page=True)
    decide_by_key(lea, "o", "overturn", "allow")

    records = read_decisions(console, 3)
    assert [(r["stage"], r["final"], r["reviewer"]) for r in records] == [
        ("first", False, "ana"),
        ("second", False, "ben"),
        ("adjudication", True, "lea"),
    ]
    assert records[2]["action"] == "allow" and {r["key"] for r in records} == {task.key}


def test_an_appeal_is_overturned_and_published_marked_as_an_appeal(
    start_console, contexts, password_hash
):
    grants = {"ana": (["spam"], "reviewer"), "ben": (["appeals"], "reviewer")}
    console = start_console(reviewers=reviewers(password_hash, **grants))
    assert console.config.appeals is not None
    task = review_task()
    console.publish(task)

    ana = log_in(contexts(), console, "ana")
    assert claim(ana, console) == task.key
    ana.fill("#note", "spam flyer")
    ana.locator("#note").press("Escape")
    decide_by_key(ana, "u", "uphold")
    (upheld,) = read_decisions(console, 1)

    appeal = AppealRequest(
        key=task.key,
        post_id=task.post.id,
        reason="it is my bakery's flyer",
        submitted_at=upheld["decided_at"],
    )
    send_records(console, console.config.appeals.topic, appeal.model_dump_json().encode())
    wait_until(lambda: console.store.get(appeal_key(appeal)) is not None, what="the appeal task")

    ben = log_in(contexts(), console, "ben")
    assert claim(ben, console, "appeals") == appeal_key(appeal)
    assert ben.locator("#original-reviewer").inner_text() == "ana"
    assert ben.locator("#original-decision").inner_text() == "uphold: block"
    assert ben.locator("#original-note").inner_text() == "spam flyer"
    assert ben.locator("#appeal-reason").inner_text() == "it is my bakery's flyer"
    assert "Uphold block" in ben.locator("#uphold").inner_text()
    assert ben.locator("#escalate").count() == 0
    ARTIFACTS.mkdir(exist_ok=True)
    ben.screenshot(path=str(ARTIFACTS / "review-appeal.png"), full_page=True)
    decide_by_key(ben, "o", "overturn", "allow")

    records = read_records(console, console.config.decisions_topic, 2, settle_s=2)
    assert len(records) == 2, "the appeal's decision, once"
    appealed = records[1]
    assert (appealed["stage"], appealed["final"], appealed["reviewer"]) == ("appeal", True, "ben")
    assert appealed["appeal_of"] == upheld["decision_id"]
    assert (appealed["decision"], appealed["action"], appealed["key"]) == (
        "overturn",
        "allow",
        task.key,
    )
