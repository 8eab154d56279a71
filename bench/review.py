"""Benchmark the review task store: claims per second and claim latency on a real Redis.

Starts a redis-server through the harness, adds 10,000 open tasks over 4 queues, then measures,
with 1 and with 4 client threads (thread t works queue t mod 4; one thread goes round them):
- claim alone: each claim by a new reviewer, so every call leases a fresh task;
- claim + decide: one reviewer per thread claims a task and decides it, again and again;
- claim again: a reviewer who holds a live claim asks again and gets it back (nothing moves).
Rates count operations over the wall time of the whole run; latencies are per call.

    python bench/review.py
    python bench/review.py --tasks 20000 --ops 4000
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

_REPO = Path(__file__).resolve().parent.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _REPO / "bench"]
sys.path.insert(0, str(_REPO))

import redis  # noqa: E402

from contracts.records import Action, MatchedRule, PolicyRef, Post, Signals, Verdict  # noqa: E402
from contracts.review import ReviewTask  # noqa: E402
from demo.harness import running_services  # noqa: E402
from review.tasks import TaskStore  # noqa: E402

QUEUES = ["scam", "weapons", "nsfw", "minors"]
POLICY = PolicyRef(id="bench", version=1, sha256="0" * 64)
T0 = datetime(2025, 1, 1, tzinfo=UTC)


def review_task(n: int) -> ReviewTask:
    """A task shaped like a real one: a matched rule with evidence, signals, a caption, text."""
    queue = QUEUES[n % len(QUEUES)]
    rule = MatchedRule(
        id=f"{queue}-rule",
        action=Action.REVIEW,
        queue=queue,
        priority=n % 5 * 10,
        reason="looks like a payment request outside the platform",
        evidence={"scam": 0.91},
    )
    signals = Signals(labels={"scam": 0.91, "weapon": 0.02}, description="a phone and a QR code")
    verdict = Verdict(
        post_id=f"post-{n}",
        key=f"key-{n}",
        action=Action.REVIEW,
        queue=queue,
        priority=rule.priority,
        policy=POLICY,
        matched_rules=[rule],
        signals=signals,
    )
    post = Post(id=f"post-{n}", text="Pay me on this number, scan the code " * 6, author="u1")
    return ReviewTask(
        key=verdict.key,
        queue=queue,
        priority=rule.priority,
        enqueued_at=T0 + timedelta(seconds=n),
        verdict=verdict,
        post=post,
    )


def timed_run(
    threads: int, ops: int, step: Callable[[int, int], None]
) -> tuple[float, list[float]]:
    """Run `ops` calls of step(thread, i) over `threads` threads; (ops/s, per-call seconds)."""
    latencies: list[list[float]] = [[] for _ in range(threads)]
    start = threading.Barrier(threads + 1)

    def worker(t: int) -> None:
        start.wait()
        for i in range(t, ops, threads):
            began = time.perf_counter()
            step(t, i)
            latencies[t].append(time.perf_counter() - began)

    pool = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
    for thread in pool:
        thread.start()
    start.wait()
    began = time.perf_counter()
    for thread in pool:
        thread.join()
    elapsed = time.perf_counter() - began
    flat = [s for per_thread in latencies for s in per_thread]
    return len(flat) / elapsed, flat


def queue_of(threads: int, t: int, i: int) -> str:
    """Thread t's queue; a lone thread goes round all of them."""
    return QUEUES[(i if threads == 1 else t) % len(QUEUES)]


def claim_alone(store: TaskStore, threads: int, tag: str) -> Callable[[int, int], None]:
    """Each call a new reviewer, so each call leases a fresh task."""

    def step(t: int, i: int) -> None:
        assert store.claim(queue_of(threads, t, i), f"{tag}-{i}") is not None, "queue ran dry"

    return step


def claim_and_decide(store: TaskStore, threads: int, tag: str) -> Callable[[int, int], None]:
    """One reviewer per thread: claim, then decide what was claimed."""

    def step(t: int, i: int) -> None:
        claim = store.claim(queue_of(threads, t, i), f"{tag}-{t}")
        assert claim is not None, "queue ran dry"
        store.decide(claim.task.key, claim.reviewer)

    return step


def claim_again(store: TaskStore, threads: int, tag: str) -> Callable[[int, int], None]:
    """A reviewer holding a live claim asks again (a reloaded console page)."""
    for t in range(threads):
        for queue in QUEUES:
            store.claim(queue, f"{tag}-{t}")

    def step(t: int, i: int) -> None:
        store.claim(queue_of(threads, t, i), f"{tag}-{t}")

    return step


def report(label: str, threads: int, rate: float, latencies: list[float]) -> None:
    """One line: rate and p50/p99 in milliseconds."""
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    print(
        f"  {label:<16} {threads} thread{'s' if threads > 1 else ' '}  {rate:8.0f} /s   "
        f"p50 {cuts[49] * 1000:6.3f} ms   p99 {cuts[98] * 1000:6.3f} ms   ({len(latencies)} calls)"
    )


def fill(store: TaskStore, count: int) -> None:
    """Add `count` open tasks round the queues and print the add rate."""
    tasks = [review_task(n) for n in range(count)]
    began = time.perf_counter()
    added = sum(store.add(task) for task in tasks)
    elapsed = time.perf_counter() - began
    size = len(tasks[0].model_dump_json())
    print(
        f"added {added} tasks over {len(QUEUES)} queues in {elapsed:.2f} s "
        f"({added / elapsed:.0f} adds/s, one thread); task JSON {size} bytes"
    )


def main() -> None:
    """Start Redis, fill the queues, run every scenario with 1 and 4 threads."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--ops", type=int, default=2_000, help="calls per scenario")
    args = parser.parse_args()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    with running_services(kafka=False, redis=True, ray=False) as services:
        assert services.redis_url
        store = TaskStore(services.redis_url, namespace=f"bench-{uuid.uuid4().hex[:8]}")
        version = redis.Redis.from_url(services.redis_url).info("server")["redis_version"]
        print(f"redis {version} on loopback; lease {store.lease_s} s")
        fill(store, args.tasks)
        for label, make in [
            ("claim", claim_alone),
            ("claim + decide", claim_and_decide),
            ("claim again", claim_again),
        ]:
            for threads in (1, 4):
                step = make(store, threads, f"{label[:5]}{threads}")
                rate, latencies = timed_run(threads, args.ops, step)
                report(label, threads, rate, latencies)
        stats = store.stats()
        left = ", ".join(f"{q} {s.open} open/{s.claimed} claimed" for q, s in stats.items())
        print(f"left: {left}")


if __name__ == "__main__":
    main()
