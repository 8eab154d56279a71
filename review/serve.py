"""The human review console and what feeds it, as `vlmod review` runs them.

Reads the review-queue topics and the appeals topic in its own consumer group into Redis (one
thread), publishes decisions a crash or an outage left unpublished (at start, then every 30 s,
one thread), and serves the console in the foreground until the stop event is set, which stops
all three. Callers bring their own stop event (`vlmod review` sets it on a signal,
`vlmod demo --review` when the demo ends).
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from review.decisions import DecisionDesk
    from review.ingest import ReviewIngest
    from review.settings import ReviewConfig

log = logging.getLogger(__name__)
T = TypeVar("T")
INGEST_RETRY_S = 5.0


def serve_console(
    config: ReviewConfig,
    *,
    host: str,
    port: int,
    stop_event: threading.Event,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Ingest review topics in a thread and serve the console here until `stop_event` is set."""
    from kafka_io.clients import create_topics, kafka_writer
    from review.console import build_console
    from review.tasks import TaskStore

    check_review_topics(config)
    appeals = [config.appeals.topic] if config.appeals else []
    golden = [config.golden_topic] if config.golden_topic else []
    outputs = [config.decisions_topic, config.dead_letter_topic, *appeals, *golden]
    create_topics(config.kafka, outputs)
    store = TaskStore(
        config.redis_url, namespace=config.namespace, lease_s=config.lease_s, order=config.order
    )
    store.queues()  # an unreachable Redis fails now, in one line, not on the first page
    with contextlib.ExitStack() as stack:  # unwinds in reverse: stop, join, close, close
        listener = _listen(host, port)
        stack.callback(listener.close)
        writer = kafka_writer(config.kafka)
        stack.callback(writer.close)
        app = build_console(config, store, writer)
        outbox = _start_outbox(app.state.console.desk, stop_event)
        stack.callback(outbox.join, 30)
        ingest = _start_ingest(config, store, stop_event)
        stack.callback(ingest.join, 30)
        stack.callback(stop_event.set)
        _serve(app, listener, stop_event, on_ready)


def check_review_topics(config: ReviewConfig) -> None:
    """Raise naming every review queue whose topic the brokers lack."""
    from kafka import KafkaAdminClient

    from kafka_io.clients import BOOTSTRAP_TIMEOUT_MS, reaching_kafka
    from review.ingest import UnknownReviewTopic

    with reaching_kafka(config.kafka):
        admin = KafkaAdminClient(
            **{"bootstrap_timeout_ms": BOOTSTRAP_TIMEOUT_MS, **config.kafka.client_kwargs()}
        )
        try:
            existing = set(admin.list_topics())
        finally:
            admin.close()
    missing = [f"{t!r} (queue {q})" for q, t in config.topics.items() if t not in existing]
    if missing:
        raise UnknownReviewTopic(
            f"review topic(s) missing at {config.kafka.bootstrap_servers}: {', '.join(missing)}; "
            "the pipeline creates them when a policy routes to the queue, or create them"
        )


def _listen(host: str, port: int) -> socket.socket:
    """A bound socket, so a taken port fails here in one line instead of inside uvicorn."""
    from contracts.errors import ServiceUnavailable

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ServiceUnavailable(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    return sock


def _start_ingest(config: ReviewConfig, store: Any, stop: threading.Event) -> threading.Thread:
    """ReviewIngest on its own thread; it leaves the group when `stop` is set."""
    from review.ingest import AppealsTopic, ReviewIngest, TopicQueue
    from review.similar_tasks import SimilarTasks

    queues = {
        topic: TopicQueue(queue, config.task_queue(queue)) for queue, topic in config.topics.items()
    }
    appeals = config.appeals
    ingest = ReviewIngest(
        config.kafka,
        queues,
        config.consumer_group,
        store,
        dead_letter_topic=config.dead_letter_topic,
        appeals=AppealsTopic(appeals.topic, appeals.queue) if appeals else None,
        similar=SimilarTasks(config.redis_url, config.namespace, config.similar, store),
        **config.consumer_overrides,
    )
    thread = threading.Thread(
        target=_ingest_until, args=(ingest, stop), name="review-ingest", daemon=True
    )
    thread.start()
    return thread


def _start_outbox(desk: DecisionDesk, stop: threading.Event) -> threading.Thread:
    """Publish what a crash left in the outbox now, then retry what stays there, on a thread."""
    from review.decisions import OUTBOX_RETRY_S

    sent = desk.publish_pending(min_age_s=0)
    if sent:
        log.info("published %d decision(s) left unpublished before this start", sent)

    def retry() -> None:
        while not stop.wait(OUTBOX_RETRY_S):
            try:
                desk.publish_pending()
            except Exception:  # Redis away: the entries wait in it, and so do we
                log.exception("publishing pending decisions failed; retrying")

    thread = threading.Thread(target=retry, name="review-outbox", daemon=True)
    thread.start()
    return thread


def _ingest_until(ingest: ReviewIngest, stop: threading.Event) -> None:
    """Run the ingester until `stop`; an unplanned failure is logged and retried, not fatal."""
    try:
        while not stop.is_set():
            try:
                ingest.run(stop)
            except Exception:  # a console without fresh tasks must say so, and keep trying
                log.exception("review ingest failed; retrying in %.0f s", INGEST_RETRY_S)
                stop.wait(INGEST_RETRY_S)
    finally:
        ingest.close()


def _serve(
    app: Any,
    listener: socket.socket,
    stop: threading.Event,
    on_ready: Callable[[str], None] | None,
) -> None:
    """uvicorn on its own thread (it never touches signals there) until `stop` is set."""
    import uvicorn

    from contracts.errors import ServiceUnavailable

    server = uvicorn.Server(
        # proxy_headers off: uvicorn would take X-Forwarded-For from any loopback peer as the
        # client; the console reads it itself, from `trusted_proxies` only.
        uvicorn.Config(
            app, log_config=None, log_level="warning", access_log=False, proxy_headers=False
        )
    )
    failures: list[BaseException] = []
    thread = threading.Thread(
        target=_run_server, args=(server, listener, failures), name="review-http", daemon=True
    )
    thread.start()
    while thread.is_alive() and not server.started and not stop.wait(0.05):
        pass
    if server.started and on_ready is not None:
        host, port = listener.getsockname()[:2]
        on_ready(f"http://{host}:{port}/")
    while thread.is_alive() and not stop.wait(0.2):
        pass
    server.should_exit = True
    thread.join(30)
    if failures:
        raise ServiceUnavailable(f"the console's web server stopped: {failures[0]!r}")


def _run_server(server: Any, listener: socket.socket, failures: list[BaseException]) -> None:
    try:
        server.run(sockets=[listener])
    except BaseException as error:  # uvicorn leaves with SystemExit when it cannot start
        failures.append(error)
