"""The webhook sink against a real local HTTP server: the signature a receiver checks, a retry
after a 503, a 400 refusing one verdict, the actions filter and the address rules."""

from __future__ import annotations

import hashlib
import hmac
import http.server
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from contracts.records import Action, PolicyRef, Verdict, verdict_key
from sinks.base import SinkUnavailable
from sinks.settings import WebhookSinkSettings
from sinks.webhook import WebhookSink

SECRET = b"a-webhook-secret-of-32-bytes-at-least!!"
SECRET_ENV = "VLMOD_TEST_WEBHOOK_SECRET"


@pytest.fixture(autouse=True)
def _secret(monkeypatch):
    monkeypatch.setenv(SECRET_ENV, SECRET.decode())


class Receiver(http.server.BaseHTTPRequestHandler):
    """Answers from the server's script, one status per request, and keeps what it got."""

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.received.append((dict(self.headers), body))
        status = self.server.script.pop(0) if self.server.script else 204
        self.send_response(status)
        self.end_headers()
        if status >= 400:
            self.wfile.write(b"nope")

    def log_message(self, *args):
        pass


@contextmanager
def receiver(script: list[int]) -> Iterator[http.server.ThreadingHTTPServer]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    server.received, server.script = [], list(script)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def verdict(post_id: str, action: Action = Action.BLOCK) -> Verdict:
    policy = PolicyRef(id="weapons", version=1, sha256="0" * 64)
    key = verdict_key(post_id, "weapons", 1)
    return Verdict(post_id=post_id, key=key, action=action, policy=policy)


def sink(server, **settings) -> tuple[WebhookSink, list[float]]:
    url = f"http://127.0.0.1:{server.server_port}/hooks/moderation"
    settings = {"allow_private_addresses": True, "backoff_base_s": 0.01, **settings}
    configured = WebhookSinkSettings(kind="webhook", url=url, secret_env=SECRET_ENV, **settings)
    waits: list[float] = []
    return WebhookSink(configured, sleep=waits.append), waits


def test_the_receiver_can_check_the_signature_over_the_raw_body():
    sent = verdict("p1")
    with receiver([]) as server:
        webhook, _ = sink(server)
        assert webhook.deliver([sent]) == []
    [(headers, body)] = server.received
    expected = "sha256=" + hmac.new(SECRET, body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers["X-Vlmod-Signature"], expected)
    assert headers["X-Vlmod-Key"] == verdict_key("p1", "weapons", 1)
    assert Verdict.model_validate_json(body) == sent


def test_a_503_is_tried_again_after_a_backoff_and_then_delivered():
    with receiver([503, 503]) as server:
        webhook, waits = sink(server)
        assert webhook.deliver([verdict("p1")]) == []
    assert len(server.received) == 3
    assert len(waits) == 2 and all(0 <= wait <= 0.02 for wait in waits)
    assert server.received[0][1] == server.received[2][1]  # the same body each time


def test_a_400_refuses_that_verdict_alone():
    with receiver([400]) as server:
        webhook, waits = sink(server)
        refused = webhook.deliver([verdict("bad"), verdict("good")])
    assert [r.verdict.post_id for r in refused] == ["bad"]
    assert refused[0].reason.startswith("the endpoint refused verdict ") and "HTTP 400" in (
        refused[0].reason
    )
    assert len(server.received) == 2 and waits == []


def test_an_endpoint_down_past_its_retries_fails_the_batch():
    with receiver([503] * 3) as server:
        webhook, _ = sink(server, max_attempts=3)
        with pytest.raises(SinkUnavailable, match=r"failed 3 times: HTTP 503"):
            webhook.deliver([verdict("p1")])


def test_only_the_configured_actions_are_sent():
    with receiver([]) as server:
        webhook, _ = sink(server, actions=[Action.BLOCK, Action.ESCALATE])
        webhook.deliver([verdict("a", Action.ALLOW), verdict("b"), verdict("r", Action.REVIEW)])
    assert [json.loads(body)["post_id"] for _, body in server.received] == ["b"]


def test_a_loopback_endpoint_is_refused_unless_private_addresses_are_allowed():
    with receiver([]) as server:
        webhook, _ = sink(server, allow_private_addresses=False)
        with pytest.raises(SinkUnavailable, match=r"127\.0\.0\.1, a loopback address"):
            webhook.deliver([verdict("p1")])
    assert server.received == []


def test_in_the_consume_loop_a_400_dead_letters_that_post_with_stage_sink():
    from tests.unit.pipelines.test_consumer_loop import (
        FakeConsumer,
        FakeSink,
        GatedModerator,
        Running,
        wait_until,
    )

    with receiver([204, 400]) as server:
        webhook, _ = sink(server)
        consumer = FakeConsumer([[0, 1]])
        topics = FakeSink(consumer)
        moderator = GatedModerator(verdicts=True)
        running = Running(consumer, topics, moderator, sinks=[webhook])
        wait_until(lambda: consumer.completed == [0, 1], "the batch is committed")
        running.stop()
    assert len(server.received) == 2
    [dead] = [value for value in topics.sent if value.startswith(b"sink:")]
    assert dead.startswith(b"sink: webhook: the endpoint refused verdict ") and b"HTTP 400" in dead
