"""Micro-benchmark: one call to a replica, from a process whose other threads keep the GIL busy.

The consumer actor calls its model replicas through a Serve handle from batch worker threads
while other batches are moderated (pure Python) in the same process. This times that round
trip alone, against a no-op deployment shaped like `SignalReplica` (`@serve.batch`, the work in
an executor) and against a plain Ray actor, with 0, 1 and 4 busy threads beside the caller,
then the CPU one call costs the calling process (every thread of it: Serve's router runs in a
thread of its own), with none beside it:

    python bench/serve_hop.py
    python bench/serve_hop.py --calls 300 --busy 0,2,4
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import threading
import time
from collections.abc import Callable
from typing import Any

import ray
from ray import serve


@serve.deployment(max_ongoing_requests=64)
class BatchedNoop:
    """A replica's shape without a model: requests batched, the work off the event loop."""

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.0)
    async def compute(self, calls: list[list[int]]) -> list[list[int]]:
        """Each call back as it came, after a hop to the executor."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, list, calls)

    async def __call__(self, items: list[int]) -> list[int]:
        result: list[int] = await self.compute(items)
        return result


@ray.remote
class PlainNoop:
    """The same work as a plain Ray actor method."""

    def compute(self, items: list[int]) -> list[int]:
        """The items back."""
        return items


def busy(stop: threading.Event) -> None:
    """Pure Python work until `stop`, as a batch being moderated is."""
    while not stop.is_set():
        sum(i * i for i in range(2_000))


def timed(call: Callable[[], Any], calls: int) -> list[float]:
    """Milliseconds of each of `calls` calls made one after another."""
    out = []
    for _ in range(calls):
        started = time.perf_counter()
        call()
        out.append((time.perf_counter() - started) * 1000)
    return out


def awaited(handle: Any, items: list[int], calls: int) -> list[float]:
    """Milliseconds of each of `calls` calls awaited one after another in an event loop."""

    async def run() -> list[float]:
        out = []
        for _ in range(calls):
            started = time.perf_counter()
            await handle.remote(items)
            out.append((time.perf_counter() - started) * 1000)
        return out

    return asyncio.run(run())


def caller_cpu_ms(call: Callable[[int], list[float]], calls: int) -> float:
    """CPU milliseconds this process spends on each of `calls` calls, all its threads counted."""
    started = time.process_time()
    call(calls)
    return (time.process_time() - started) * 1000 / calls


def summary(times: list[float]) -> str:
    """p50 and p90 in ms."""
    p50, p90 = statistics.median(times), statistics.quantiles(times, n=10)[8]
    return f"p50 {p50:7.2f} ms, p90 {p90:7.2f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=200, help="calls timed per case")
    parser.add_argument("--busy", default="0,1,4", help="busy threads beside the caller")
    args = parser.parse_args()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    handle = serve.run(BatchedNoop.bind(), name="hop", route_prefix=None)
    actor = PlainNoop.remote()
    items = list(range(8))
    cases: dict[str, Callable[[int], list[float]]] = {
        "Serve handle": lambda n: timed(lambda: handle.remote(items).result(), n),
        "Serve, awaited": lambda n: awaited(handle, items, n),
        "Ray actor": lambda n: timed(lambda: ray.get(actor.compute.remote(items)), n),
    }
    for case in cases.values():
        case(20)  # warm up: connections, first-call imports
    for count in (int(n) for n in args.busy.split(",")):
        stop = threading.Event()
        threads = [threading.Thread(target=busy, args=(stop,), daemon=True) for _ in range(count)]
        for thread in threads:
            thread.start()
        for name, case in cases.items():
            print(f"{count} busy threads, {name:<14}: {summary(case(args.calls))}")
        stop.set()
        for thread in threads:
            thread.join()
    for name, case in cases.items():
        print(f"caller CPU, {name:<14}: {caller_cpu_ms(case, args.calls):6.3f} ms a call")
    serve.shutdown()
    ray.shutdown()


if __name__ == "__main__":
    main()
