"""A review console served by uvicorn over the harness's Tansu and Redis, for browser and HTTP
tests alike: the `start_console` fixture, tasks to publish, a logged-in HTTP client, and a reader
of the decisions topic. Every wait is on a condition with a deadline, never a fixed sleep."""

from __future__ import annotations

import base64
import json
import re
import secrets
import threading
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests

from contracts.records import (
    Action,
    ImageRef,
    MatchedRule,
    ModelRef,
    PolicyRef,
    Post,
    ProducerRun,
    Signals,
    Verdict,
    verdict_key,
)
from contracts.review import ReviewTask
from demo.harness import free_port, wait_until
from demo.samples import drawn_image
from kafka_io.clients import KafkaWriter, OutMessage, TopicReader
from review.auth import SESSION_COOKIE, hash_password
from review.settings import ReviewConfig
from review.tasks import TaskStore

PASSWORD = "correct horse battery"
GROUP_TIMEOUTS = {"session_timeout_ms": 6000, "heartbeat_interval_ms": 500}
PNG = base64.b64encode(drawn_image(7, size=160)).decode()
CSRF_FIELD = re.compile(r'name="csrf" value="([^"]+)"')


@pytest.fixture(scope="session")
def password_hash():
    return hash_password(PASSWORD)


@dataclass
class RunningConsole:
    url: str
    config: ReviewConfig
    store: TaskStore
    stop: threading.Event
    thread: threading.Thread | None = None
    errors: list[BaseException] = field(default_factory=list)

    def publish(self, *tasks: ReviewTask, wait: bool = True) -> None:
        """Put tasks on their queues' topics; wait until the console stored each."""
        topics = self.config.topics
        writer = KafkaWriter(self.config.kafka)
        try:
            writer.send_all(
                [
                    OutMessage(topics[t.queue], t.model_dump_json().encode(), t.key.encode())
                    for t in tasks
                ]
            )
        finally:
            writer.close()
        for task in tasks if wait else ():
            wait_until(lambda t=task: self.store.get(t.key) is not None, what=f"task {task.key}")

    def stop_now(self) -> None:
        """Stop the console and wait for its threads."""
        self.stop.set()
        assert self.thread is not None
        self.thread.join(30)
        assert not self.thread.is_alive(), "the console did not stop"


@pytest.fixture
def start_console(kafka_settings, redis_url, topic_factory, group_id, password_hash):
    """Starts `serve_console` on a free port in a thread; stops it (and its ingester) after.

    `start(config=...)` serves a given config again (a restart); keyword overrides change the
    default config's fields.
    """
    from review.serve import serve_console

    running: list[RunningConsole] = []

    def start(*, config: ReviewConfig | None = None, **overrides: Any) -> RunningConsole:
        config = config or ReviewConfig(
            **{
                "kafka": kafka_settings,
                "redis_url": redis_url,
                "review_topics": {
                    "spam": topic_factory("review-spam"),
                    "senior": topic_factory("review-senior"),
                },
                "decisions_topic": topic_factory("decisions"),
                "dead_letter_topic": topic_factory("review-dead-letter"),
                "appeals": {"topic": topic_factory("appeals")},
                "golden_topic": topic_factory("golden"),
                "consumer_group": group_id,
                "consumer_overrides": GROUP_TIMEOUTS,
                "namespace": f"test-review:{uuid.uuid4().hex[:8]}",
                "session_secret": secrets.token_urlsafe(48),
                "reviewers": {
                    "ana": {"password_argon2": password_hash, "queues": ["*"]},
                    "ben": {"password_argon2": password_hash, "queues": ["spam", "senior"]},
                    "cam": {"password_argon2": password_hash, "queues": ["senior"]},
                },
                **overrides,
            }
        )
        port, stop = free_port(), threading.Event()
        store = TaskStore(config.redis_url, namespace=config.namespace)
        console = RunningConsole(f"http://127.0.0.1:{port}", config, store, stop)

        def serve() -> None:
            try:
                serve_console(config, host="127.0.0.1", port=port, stop_event=stop)
            except BaseException as error:
                console.errors.append(error)

        console.thread = threading.Thread(target=serve, name="review-console", daemon=True)
        console.thread.start()
        wait_until(lambda: _answers(console), what="review console", timeout_s=60)
        running.append(console)
        return console

    yield start
    for console in running:
        if not console.stop.is_set():
            console.stop_now()


def _answers(console: RunningConsole) -> bool:
    if console.errors:
        raise console.errors[0]
    with urllib.request.urlopen(f"{console.url}/healthz", timeout=1) as response:
        return response.status == 200


def review_task(
    queue: str = "spam",
    *,
    text: str = "cheap followers, click now",
    meta: dict | None = None,
    images: list[ImageRef] | None = None,
    priority: int = 10,
    reason: str = "looks like spam",
) -> ReviewTask:
    """A blocked post's task in `queue`, with an inline PNG unless `images` says otherwise."""
    post = Post(
        id=f"post-{uuid.uuid4().hex[:8]}",
        text=text,
        images=[ImageRef(data=PNG, mime="image/png")] if images is None else images,
        author="user-42",
        meta={"source": "integration-test"} if meta is None else meta,
    )
    policy = PolicyRef(id="review-e2e", version=2, sha256="ab" * 32)
    verdict = Verdict(
        post_id=post.id,
        key=verdict_key(post.id, policy.id, policy.version),
        action=Action.BLOCK,
        queue=queue,
        priority=priority,
        policy=policy,
        matched_rules=[
            MatchedRule(
                id="spam-text",
                action=Action.BLOCK,
                queue=queue,
                priority=priority,
                reason=reason,
                evidence={"text.spam": 0.93},
            )
        ],
        signals=Signals(
            labels={"spam": 0.93}, answers={"is_ad": 0.81}, description="a flyer with shapes"
        ),
        model=ModelRef(name="tiny:smolvlm"),
        producers=[ProducerRun(name="ocr", ms=4.5, evidence={"boxes": [["FOLLOW", 0.97]]})],
    )
    return ReviewTask(key=verdict.key, queue=queue, priority=priority, verdict=verdict, post=post)


def read_records(
    console: RunningConsole, topic: str, count: int, timeout_s: float = 30.0, *, settle_s: float = 0
) -> list[dict]:
    """At least `count` JSON records from `topic`; with `settle_s`, whatever else arrives within
    that long after the count was reached (to see that nothing more comes)."""
    reader = TopicReader(console.config.kafka, [topic])
    found: list[dict] = []
    try:
        deadline = time.monotonic() + timeout_s
        while len(found) < count and time.monotonic() < deadline:
            found += [json.loads(r.value) for r in reader.read(timeout_ms=200)]
        quiet_until = time.monotonic() + settle_s
        while time.monotonic() < quiet_until:
            found += [json.loads(r.value) for r in reader.read(timeout_ms=200)]
    finally:
        reader.close()
    assert len(found) >= count, f"{len(found)} of {count} records on {topic}"
    return found


def send_records(console: RunningConsole, topic: str, *values: bytes) -> None:
    """Produce raw record values on `topic`, acknowledged."""
    writer = KafkaWriter(console.config.kafka)
    try:
        writer.send_all([OutMessage(topic, value, None) for value in values])
    finally:
        writer.close()


def read_decisions(console: RunningConsole, count: int, timeout_s: float = 30.0) -> list[dict]:
    """At least `count` decisions from the console's decisions topic."""
    return read_records(console, console.config.decisions_topic, count, timeout_s)


class Client:
    """A reviewer's HTTP session with the console, no browser: cookies, CSRF tokens, forms."""

    def __init__(self, console: RunningConsole) -> None:
        self.console, self.http = console, requests.Session()

    def csrf(self, path: str = "/login") -> str:
        """The CSRF token of the form on `path`."""
        page = self.http.get(f"{self.console.url}{path}", timeout=10)
        match = CSRF_FIELD.search(page.text)
        assert match, f"no CSRF field on {path} ({page.status_code})"
        return match.group(1)

    def log_in(self, name: str, password: str = PASSWORD) -> requests.Response:
        """Post the login form; the response without following its redirect."""
        form = {"name": name, "password": password, "csrf": self.csrf()}
        return self.post("/login", form)

    def post(self, path: str, form: dict[str, str]) -> requests.Response:
        """A form POST, redirects not followed."""
        return self.http.post(
            f"{self.console.url}{path}", data=form, allow_redirects=False, timeout=60
        )

    def get(self, path: str) -> requests.Response:
        """A GET, redirects not followed."""
        return self.http.get(f"{self.console.url}{path}", allow_redirects=False, timeout=30)

    def claim(self, queue: str = "spam") -> str:
        """Claim the next task of `queue`; its key."""
        self.post(f"/queue/{queue}/claim", {"csrf": self.csrf(f"/queue/{queue}")})
        page = self.get(f"/queue/{queue}").text
        match = re.search(r'data-task-key="([^"]+)"', page)
        assert match, f"no task claimed in {queue}"
        return match.group(1)


def decide_at_once(
    console: RunningConsole, client: Client, key: str, forms: list[dict[str, str]]
) -> list[tuple[int, dict[str, str]]]:
    """POST every form for `key` from its own thread, released together; (status, form) each."""
    csrf, cookie = client.csrf("/"), client.http.cookies[SESSION_COOKIE]
    barrier = threading.Barrier(len(forms))
    results: list[tuple[int, dict[str, str]]] = []

    def send(form: dict[str, str]) -> None:
        barrier.wait()
        response = requests.post(
            f"{console.url}/decide",
            data={"key": key, "csrf": csrf, **form},
            cookies={SESSION_COOKIE: cookie},
            allow_redirects=False,
            timeout=60,
        )
        results.append((response.status_code, form))

    threads = [threading.Thread(target=send, args=(form,)) for form in forms]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return results
