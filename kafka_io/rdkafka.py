"""An acking writer on librdkafka (confluent-kafka), the default (`kafka.producer: librdkafka`).

Same contract as `clients.KafkaWriter`: acks=all, `send_all` returns once the broker has
acknowledged every message or raises `ProduceFailed` (its `outage` says whether the broker or
the message was at fault), keys go to partitions as kafka-python and Java clients send them
(murmur2), so every message about one post lands on one partition whichever client wrote it.
Producing costs a seventh of kafka-python's CPU a message (docs/benchmarks.md): the records are
built and sent by librdkafka's own threads, in C.

Several threads may call `send_all` at once (the consume loop's batch workers): each waits for
its own messages' delivery reports, which one poller thread serves, never for the others'.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

from kafka_io.exceptions import ProduceFailed
from kafka_io.settings import KafkaSettings

log = logging.getLogger(__name__)

# confluent-kafka is a dependency; an install without it can still use kafka-python.
PIP_INSTALL = "pip install 'confluent-kafka>=2.6,<3'"


def needs_confluent_kafka(setting: str) -> str:
    """The one line for a missing confluent-kafka: how to install it, or leave `setting`."""
    return f"kafka.{setting}: librdkafka needs confluent-kafka: {PIP_INSTALL}, or set " + (
        f"kafka.{setting}: kafka-python"
    )


# Delivery-report codes that are the message's fault: sending it again gets the same answer.
_REFUSED_CODES = frozenset(
    {"MSG_SIZE_TOO_LARGE", "RECORD_LIST_TOO_LARGE", "INVALID_RECORD", "INVALID_MSG"}
    | {"INVALID_MSG_SIZE", "_MSG_SIZE_TOO_LARGE", "_INVALID_ARG"}
)
_POLL_S = 0.1  # the poller's wait for delivery reports; it returns at once when one comes


# librdkafka's names for the connection settings (`KafkaSettings.connection`'s are kafka-python's)
_NAMES = {
    "bootstrap_servers": "bootstrap.servers",
    "client_id": "client.id",
    "security_protocol": "security.protocol",
    "request_timeout_ms": "request.timeout.ms",
    "sasl_mechanism": "sasl.mechanism",
    "sasl_plain_username": "sasl.username",
    "sasl_plain_password": "sasl.password",
    "ssl_cafile": "ssl.ca.location",
    "ssl_certfile": "ssl.certificate.location",
    "ssl_keyfile": "ssl.key.location",
}


def rdkafka_config(settings: KafkaSettings) -> dict[str, Any]:
    """librdkafka's names for the connection settings; `settings.librdkafka` passes the rest."""
    config = {_NAMES[name]: value for name, value in settings.connection().items()}
    config.update(settings.librdkafka)
    return config


# kafka-python's consumer settings -> librdkafka's; most differ only in their separators.
_CONSUMER_NAMES = {
    name: name.replace("_", ".")
    for name in (
        "enable_auto_commit",
        "auto_offset_reset",
        "session_timeout_ms",
        "heartbeat_interval_ms",
        "max_poll_interval_ms",
        "fetch_min_bytes",
        "fetch_max_bytes",
        "max_partition_fetch_bytes",
        "isolation_level",
        "group_instance_id",
        "client_id",
        "check_crcs",
        "reconnect_backoff_ms",
        "reconnect_backoff_max_ms",
        "metadata_max_age_ms",
        "retry_backoff_ms",
    )
} | {
    "fetch_max_wait_ms": "fetch.wait.max.ms",
    "request_timeout_ms": "socket.timeout.ms",
}
# kafka-python settings that mean nothing here: poll hands out `max_records` itself.
_NOT_NEEDED = frozenset({"max_poll_records"})


def consumer_config(overrides: dict[str, Any]) -> dict[str, Any]:
    """librdkafka's names for kafka-python's consumer settings; `ValueError` naming the first
    one librdkafka has no counterpart for."""
    config = {}
    for name, value in overrides.items():
        if name in _NOT_NEEDED:
            continue
        if name not in _CONSUMER_NAMES:
            known = ", ".join(sorted(_CONSUMER_NAMES))
            raise ValueError(
                f"consumer setting {name!r} has no librdkafka counterpart with kafka.consumer: "
                f"librdkafka (known: {known}); librdkafka's own names go under kafka.librdkafka"
            )
        config[_CONSUMER_NAMES[name]] = value
    return config


def refused(code_name: str) -> bool:
    """True when a delivery error (by librdkafka's code name) is the message's own fault."""
    return code_name in _REFUSED_CODES


class _Acks:
    """The delivery reports one `send_all` waits for."""

    __slots__ = ("done", "failure", "lock", "remaining")

    def __init__(self, count: int) -> None:
        self.remaining = count
        self.failure: tuple[str, Any] | None = None  # (topic, KafkaError) of the first failure
        self.lock = threading.Lock()
        self.done = threading.Event()
        if count == 0:
            self.done.set()

    def report(self, error: Any, message: Any) -> None:
        with self.lock:
            if error is not None and self.failure is None:
                self.failure = (message.topic(), error)
            self.remaining -= 1
            if self.remaining == 0:
                self.done.set()


class RdKafkaWriter:
    """Writes to Kafka with acks=all through librdkafka; see the module's docstring."""

    def __init__(self, settings: KafkaSettings, **overrides: Any) -> None:
        try:
            from confluent_kafka import Producer
        except ImportError as exc:
            raise ImportError(needs_confluent_kafka("producer")) from exc
        self.timeout_s = 30.0
        config: dict[str, Any] = {
            "acks": "all",
            "linger.ms": 2,
            "retries": 5,
            # Java clients' key -> partition, as kafka-python's writer sends them.
            "partitioner": "murmur2_random",
            # A message not acknowledged by then fails (an outage), rather than waiting in the
            # queue past the `send_all` that gave up on it.
            "message.timeout.ms": int(self.timeout_s * 1000),
            "logger": log,
        }
        config.update(rdkafka_config(settings))
        config.update(overrides)
        self._producer = Producer(config)
        self._closing = threading.Event()
        self._poller = threading.Thread(target=self._poll, name="rdkafka-acks", daemon=True)
        self._poller.start()

    def _poll(self) -> None:
        while not self._closing.is_set():
            self._producer.poll(_POLL_S)

    def send(self, message: Any, *, timeout_s: float = 30.0) -> None:
        """Produce one message and wait for its ack."""
        self.send_all([message], timeout_s=timeout_s)

    def send_all(self, messages: Sequence[Any], *, timeout_s: float = 30.0) -> None:
        """Produce all messages at once, then wait until every one is acked, or raise
        `ProduceFailed` (its `outage` says whether the broker or the message was at fault)."""
        from confluent_kafka import KafkaException

        acks = _Acks(len(messages))
        deadline = time.monotonic() + timeout_s
        for message in messages:
            while True:
                try:
                    self._producer.produce(
                        message.topic,
                        message.value,
                        message.key,
                        headers=list(message.headers),
                        on_delivery=acks.report,
                    )
                    break
                except BufferError:  # librdkafka's queue is full: wait for it to drain
                    if time.monotonic() > deadline:
                        raise ProduceFailed(
                            f"{message.topic}: not acknowledged: the producer's queue stayed "
                            f"full for {timeout_s:g} s",
                            outage=True,
                        ) from None
                    acks.done.wait(_POLL_S)
                except KafkaException as exc:  # refused before sending: too large, say
                    raise _not_acknowledged(message.topic, exc.args[0]) from exc
        if not acks.done.wait(max(0.0, deadline - time.monotonic()) + 1.0):
            topics = ", ".join(sorted({m.topic for m in messages}))
            raise ProduceFailed(
                f"{topics}: not acknowledged: {acks.remaining} of {len(messages)} messages "
                f"after {timeout_s:g} s",
                outage=True,
            )
        if acks.failure is not None:
            raise _not_acknowledged(*acks.failure)

    def metrics(self) -> dict[str, float]:
        """What librdkafka still holds: messages to send, requests, delivery reports."""
        return {"queued-messages": float(len(self._producer))}

    def close(self, timeout_s: float = 10.0) -> None:
        """Flush and close."""
        try:
            self._producer.flush(timeout_s)
        finally:
            self._closing.set()
            self._poller.join(timeout=_POLL_S * 10)


def _not_acknowledged(topic: str, error: Any) -> ProduceFailed:
    """As `clients.not_acknowledged`, for librdkafka's errors."""
    name = error.name() if hasattr(error, "name") else type(error).__name__
    text = error.str() if hasattr(error, "str") else str(error)
    return ProduceFailed(f"{topic}: not acknowledged: {name}: {text}", outage=not refused(name))
