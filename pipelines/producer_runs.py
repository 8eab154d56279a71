"""One consumer-side producer's work on a post: its job, its cache entries, what the post keeps.

The gatherer runs a producer here (`SignalGatherer._run_here`) or has the specialist pool run
it (`pipelines.pooled`); either way the values go through the same cache lookup (`from_cache`),
the same `keep` and the same store (`to_cache`), so verdicts record the same producer runs.
"""

from __future__ import annotations

import json
import time
from collections.abc import Hashable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from contracts.errors import Stage
from contracts.producers import (
    ProducerJob,
    ProducerOutput,
    SignalProducer,
    Unavailable,
    as_output,
    cache_key,
    content_hash,
)
from contracts.records import ProducerRun
from pipelines.journey import Journey
from pipelines.signal_records import Failure, producer_failure

if TYPE_CHECKING:
    from operators.cache import SignalCache

Work = tuple[Journey, frozenset[Hashable]]  # a post and the requests still to compute for it
CacheKeys = dict[int, dict[Hashable, str]]  # id(journey) -> request -> cache key


def cache_keys(
    producer: SignalProducer, journey: Journey, requests: frozenset[Hashable]
) -> dict[Hashable, str]:
    """Each request's cache key: the content the producer reads, the producer, its version."""
    content = content_hash(producer, producer_job(journey, requests, producer))
    return {request: cache_key(producer, content, request) for request in requests}


def producer_job(
    journey: Journey,
    requests: frozenset[Hashable],
    producer: SignalProducer,
    decoded: Any = None,
) -> ProducerJob:
    """The post's job for `producer`: its requests, images, and the values it reads first."""
    assert journey.post is not None
    signals = read_signals(journey, producer)
    return ProducerJob(
        journey.post, requests, journey.images or (), signals, decoded, journey.recheck
    )


def read_signals(journey: Journey, producer: SignalProducer) -> dict[str, dict[Hashable, Any]]:
    """The values of the producers `producer` runs after, as computed for the post so far."""
    signals: dict[str, dict[Hashable, Any]] = {}
    for (name, request), value in journey.computed.items():
        if name in producer.after:
            signals.setdefault(name, {})[request] = value
    return signals


def from_cache(
    cache: SignalCache, producer: SignalProducer, work: list[Work], keys: CacheKeys
) -> list[Work]:
    """Fill what the cache holds (one round trip); the work left is the misses."""
    if not work:
        return []
    found = [keys[id(journey)] for journey, _ in work]
    started = time.perf_counter()
    values = iter(cache.get_many([key for each in found for key in each.values()]))
    share_ms = (time.perf_counter() - started) * 1000 / len(work)
    left = []
    for (journey, _), each in zip(work, found, strict=True):
        hits = {request: next(values) for request in each}
        missing = frozenset(r for r, raw in hits.items() if raw is None)
        entries = {r: json.loads(raw) for r, raw in hits.items() if raw is not None}
        for request, entry in entries.items():
            journey.computed[(producer.name, request)] = entry["value"]
        if missing:
            left.append((journey, missing))
        elif entries:
            first = next(iter(entries.values()))
            journey.ran(producer_run(producer.name, share_ms, first, cached=True))
    return left


def to_cache(
    cache: SignalCache,
    work: list[Work],
    kept: list[ProducerOutput | None],
    keys: CacheKeys,
) -> None:
    """Store what was just computed, with its evidence; values are JSON, as on the topic."""
    items = {}
    for (journey, requests), output in zip(work, kept, strict=True):
        if output is None or any(isinstance(v, Unavailable) for v in output.values.values()):
            continue
        for request in requests:
            entry = {
                "value": output.values[request],
                "evidence": dict(output.evidence),
                "notes": list(output.notes),
            }
            items[keys[id(journey)][request]] = json.dumps(entry).encode()
    cache.set_many(items)


def keep(
    journey: Journey,
    producer: str,
    requests: frozenset[Hashable],
    output: Any,
    ms: float,
    retryable: tuple[type[BaseException], ...] = (),
) -> ProducerOutput | None:
    """Store a consumer-side producer's values for one post, or fail the post.

    `output` is the producer's result for the post: its values, an exception, or the `Failure`
    the specialist pool made of one (`producer_failure`, as here). A failure is retried when
    the pipeline deems it transient or the producer declares its error `retryable`.
    """
    if isinstance(output, Exception):
        output = producer_failure(output, retryable)
    if isinstance(output, Failure):
        journey.fail(replace(output, reason=f"{producer}: {output.reason}"))
        return None
    output = as_output(output)
    missing = [r for r in requests if r not in output.values]
    if missing:
        reason = f"{producer}: gave no value for {missing[0]!r}"
        journey.fail(Failure(Stage.INFER, "ProducerError", reason))
        return None
    why = None
    for request in requests:
        value = output.values[request]
        if isinstance(value, Unavailable):
            journey.unavailable[(producer, request)] = why = value.reason
        else:
            journey.computed[(producer, request)] = value
    entry = {"evidence": dict(output.evidence), "notes": list(output.notes), "unavailable": why}
    journey.ran(producer_run(producer, ms, entry))
    return output


def producer_run(
    producer: str, ms: float, entry: dict[str, Any], *, cached: bool = False
) -> ProducerRun:
    """The verdict's record of one producer's work on a post (from a result or a cache entry)."""
    return ProducerRun(
        name=producer,
        ms=round(ms, 3),
        cached=cached,
        evidence=entry.get("evidence") or {},
        notes=entry.get("notes") or [],
        unavailable=entry.get("unavailable"),
    )
