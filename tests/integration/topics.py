"""Reading topics back in integration tests: a topic's records, a console's ingest."""

from __future__ import annotations

import time

from kafka_io.clients import TopicReader


def read_until(kafka_settings, topic, count, timeout_s=30.0):
    """The topic's records, once `count` of them have come (or the time is up)."""
    reader = TopicReader(kafka_settings, [topic])
    records = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(records) < count and time.monotonic() < deadline:
            records.extend(reader.read())
    finally:
        reader.close()
    return records


def ingest_until(ingest, done, timeout_s=60.0) -> int:
    """run_once until `done()` holds; how many tasks were new. Fail after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    added = 0
    while not done():
        assert time.monotonic() < deadline, "ingest did not get there in time"
        added += ingest.run_once(timeout_ms=200)
    return added
