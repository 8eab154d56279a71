"""The review console under attack, over real Tansu and Redis and plain HTTP (no browser):
forged and replayed cookies, concurrent decisions on one task, a crash between deciding and
publishing, tasks that name another queue, escalation grants, spoofed client addresses and
oversized bodies."""

from __future__ import annotations

import secrets
from collections import Counter

import redis
import requests

from contracts.records import Action
from kafka_io.clients import KafkaWriter, OutMessage
from review.auth import SESSION_COOKIE, SessionSigner
from review.decisions import DecisionChoice, DecisionDesk, DecisionStats
from review.sessions import SessionStore
from tests.integration.consoles import (
    Client,
    RunningConsole,
    decide_at_once,
    read_records,
    review_task,
)

# --- sessions ------------------------------------------------------------------------------------


def test_a_cookie_signed_with_any_other_secret_gets_the_login_page(start_console):
    console = start_console()
    ana = Client(console)
    assert ana.log_in("ana").status_code == 303
    assert ana.get("/").status_code == 200
    token = _token_of(console, ana)
    for secret in (
        secrets.token_urlsafe(32),
        "replace-with-64-random-characters-from-a-secret-store",
    ):
        forged = SessionSigner(secret, max_age_s=3600).cookie_for(token)
        page = _get_with_cookie(console, "/", forged)
        assert page.status_code == 303 and page.headers["location"] == "/login"
        assert _get_with_cookie(console, "/api/stats", forged).status_code == 401


def test_a_cookie_replayed_after_logout_is_refused(start_console):
    console = start_console()
    ana = Client(console)
    ana.log_in("ana")
    cookie = ana.http.cookies[SESSION_COOKIE]
    assert _get_with_cookie(console, "/", cookie).status_code == 200
    assert ana.post("/logout", {"csrf": ana.csrf("/")}).status_code == 303
    replayed = _get_with_cookie(console, "/", cookie)
    assert replayed.status_code == 303 and replayed.headers["location"] == "/login"
    assert _get_with_cookie(console, "/api/stats", cookie).status_code == 401


def test_a_login_makes_a_new_session_each_time(start_console):
    console = start_console()
    ana = Client(console)
    ana.csrf()
    before = ana.http.cookies[SESSION_COOKIE]
    assert ana.log_in("ana").status_code == 303
    first = ana.http.cookies[SESSION_COOKIE]
    ana.post("/logout", {"csrf": ana.csrf("/")})
    assert ana.log_in("ana").status_code == 303
    second = ana.http.cookies[SESSION_COOKIE]
    assert len({before, first, second}) == 3
    assert _get_with_cookie(console, "/", before).status_code == 303, "pre-login grants nothing"
    assert _get_with_cookie(console, "/", first).status_code == 303, "logged out"
    assert _get_with_cookie(console, "/", second).status_code == 200


def test_a_reviewer_removed_from_the_config_loses_their_sessions_at_start(start_console):
    console = start_console()
    ben = Client(console)
    ben.log_in("ben")
    cookie = ben.http.cookies[SESSION_COOKIE]
    console.stop_now()
    without_ben = {k: v for k, v in console.config.reviewers.items() if k != "ben"}
    start_console(config=console.config.model_copy(update={"reviewers": without_ben}))
    back = start_console(config=console.config)  # ben is back in the config, his cookie is not
    assert _get_with_cookie(back, "/", cookie).status_code == 303


def test_sessions_end_when_idle_or_too_old_and_when_revoked(redis_url):
    clock = _Clock()
    namespace = f"s-{secrets.token_hex(4)}"
    store = SessionStore(redis_url, namespace=namespace, max_age_s=3600, idle_s=600, clock=clock)
    idle, busy = store.create("ana"), store.create("ana")
    assert store.read(idle.token) == idle
    for _ in range(6):  # busy is used every 9 minutes; idle is left alone
        clock.now += 540
        assert store.read(busy.token) is not None
    assert store.read(idle.token) is None, "unused for 54 minutes"
    clock.now += 540
    assert store.read(busy.token) is None, "older than its max age, however busy"
    fresh, other = store.create("ben"), store.create("ben")
    store.revoke(fresh.token)
    assert store.read(fresh.token) is None and store.read(other.token) is not None
    kept = store.create("ana")
    assert store.revoke_all_but(["ana"]) == ["ben"]
    assert store.read(other.token) is None
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    sessions = client.scan_iter(f"{{{namespace}}}:session:*")
    assert "ben" not in {client.hget(key, "reviewer") for key in sessions}, "his sessions are gone"
    assert store.read(kept.token) is not None


# --- one decision per task ---------------------------------------------------------------------

PAIRS = [
    ({"kind": "uphold"}, {"kind": "overturn", "action": "allow"}),
    ({"kind": "uphold"}, {"kind": "escalate", "escalate_to": "senior"}),
    ({"kind": "overturn", "action": "allow"}, {"kind": "escalate", "escalate_to": "senior"}),
    ({"kind": "escalate", "escalate_to": "senior"}, {"kind": "escalate", "escalate_to": "senior"}),
]


def test_concurrent_decisions_on_one_task_publish_exactly_one_record(start_console):
    console = start_console()
    rounds = 3
    tasks = [review_task(priority=n) for n in range(len(PAIRS) * rounds)]
    console.publish(*tasks)
    statuses: Counter[int] = Counter()
    winners: dict[str, str] = {}
    ana = Client(console)
    ana.log_in("ana")
    for n, task in enumerate(tasks):
        assert ana.claim("spam") == task.key
        first, second = PAIRS[n % len(PAIRS)]
        results = decide_at_once(console, ana, task.key, [first, second])
        statuses.update(status for status, _ in results)
        won = [form for status, form in results if status == 303]
        assert len(won) == 1, f"task {n}: {results}"
        winners[task.key] = won[0]["kind"]
    assert statuses == Counter({303: len(tasks), 409: len(tasks)})

    records = read_records(console, console.config.decisions_topic, len(tasks), settle_s=3)
    assert Counter(r["key"] for r in records) == Counter({t.key: 1 for t in tasks})
    assert {r["key"]: r["decision"] for r in records} == winners
    assert all(r["decision_id"] for r in records)
    escalated = sum(kind == "escalate" for kind in winners.values())
    moved = read_records(console, console.config.topics["senior"], escalated, settle_s=2)
    assert len(moved) == escalated, "an escalation is queued only when the escalation won"


def test_a_decision_a_crash_left_unpublished_is_published_at_the_next_start(start_console):
    console = start_console()
    task = review_task()
    console.publish(task)
    console.stop_now()

    class Crashing:  # the broker never gets the decision: the process dies right after deciding
        def send_all(self, messages, *, timeout_s=30.0):
            raise ConnectionError("killed before the acks")

    stats = DecisionStats(
        console.config.redis_url, namespace=console.config.namespace, clock=_Clock()
    )
    desk = DecisionDesk(
        console.store,
        Crashing(),
        stats,
        decisions_topic=console.config.decisions_topic,
        review_topics=console.config.topics,
    )
    console.store.claim("spam", "ana")
    submitted = desk.submit(task.key, "ana", DecisionChoice("overturn", action=Action.ALLOW))
    assert submitted is not None and not submitted.published
    assert list(console.store.unpublished()) == [task.key]

    restarted = start_console(config=console.config)
    (record,) = read_records(restarted, console.config.decisions_topic, 1, settle_s=2)
    assert record["key"] == task.key and record["action"] == "allow"
    assert record["decision_id"] == submitted.decision.decision_id
    assert restarted.store.unpublished() == {}


# --- queues --------------------------------------------------------------------------------------


def test_a_task_naming_another_queue_is_dead_lettered_with_the_reason(start_console):
    console = start_console()
    stray = review_task("senior")  # a senior task, written to the spam queue's topic
    writer = KafkaWriter(console.config.kafka)
    try:
        writer.send_all(
            [OutMessage(console.config.topics["spam"], stray.model_dump_json().encode(), b"k")]
        )
    finally:
        writer.close()
    (record,) = read_records(console, console.config.dead_letter_topic, 1, settle_s=1)
    assert "the task names queue 'senior', but topic" in record["error"]
    assert record["stage"] == "validate" and record["post_id"] == stray.post.id
    assert console.store.get(stray.key) is None


def test_a_reviewer_escalates_only_into_queues_they_may_work(start_console):
    console = start_console()
    task = review_task("senior")
    console.publish(task)
    cam = Client(console)  # cam works the senior queue only
    cam.log_in("cam")
    assert cam.claim("senior") == task.key
    page = cam.get("/queue/senior").text
    assert 'id="escalate"' not in page, "no queue to escalate into is offered"
    refused = cam.post(
        "/decide",
        {"key": task.key, "kind": "escalate", "escalate_to": "spam", "csrf": cam.csrf("/")},
    )
    assert refused.status_code == 400 and "you may escalate only into: none" in refused.text


# --- login -----------------------------------------------------------------------------------


def test_a_new_forwarded_for_per_attempt_does_not_skip_the_limit(start_console):
    console = start_console()
    mallory = Client(console)
    statuses = []
    for n in range(console.config.login_max_failures + 1):
        form = {"name": "ana", "password": f"guess-{n}", "csrf": mallory.csrf()}
        response = mallory.http.post(
            f"{console.url}/login",
            data=form,
            headers={"X-Forwarded-For": f"203.0.113.{n}"},
            allow_redirects=False,
            timeout=60,
        )
        statuses.append(response.status_code)
    assert statuses == [401] * console.config.login_max_failures + [429]


def test_an_oversized_body_is_refused_unread(start_console):
    console = start_console()
    client = Client(console)
    form = {"name": "x" * 200_000, "password": "y", "csrf": client.csrf()}
    assert client.post("/login", form).status_code == 413
    assert client.get("/healthz").status_code == 200


# --- helpers -------------------------------------------------------------------------------------


class _Clock:
    def __init__(self) -> None:
        self.now = 2_000_000_000.0

    def __call__(self) -> float:
        return self.now


def _token_of(console: RunningConsole, client: Client) -> str:
    read = SessionSigner(console.config.secret_value(), max_age_s=60).read(
        client.http.cookies[SESSION_COOKIE]
    )
    assert read is not None and read.token is not None
    return read.token


def _get_with_cookie(console: RunningConsole, path: str, cookie: str) -> requests.Response:
    return requests.get(
        f"{console.url}{path}",
        cookies={SESSION_COOKIE: cookie},
        allow_redirects=False,
        timeout=30,
    )
