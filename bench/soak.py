"""Soak the streaming pipeline: a steady stream of posts, faults injected on a schedule.

Starts Tansu, Redis and local Ray through the harness, runs the Ray pipeline (two consumer
actors, two model replicas by default) and publishes posts at `--rate` posts/s without a break.
For each fault in `--faults` it runs three phases of `--seconds` each: before, during (the
fault is injected at its start) and after. Each post belongs to the phase it was published in.
Once the stream stops it waits (with a deadline) until every post has a verdict, stops the
pipeline (in-flight batches drain and commit) and reads the verdict topic to its end. It then
prints per phase: posts, lost posts (no verdict key on the verdict topic), duplicated verdict
keys (verdict records beyond the first of each key) and p50/p99 publish-to-first-verdict
latency. It asserts nothing.

Faults:
- `redis`: Redis is stopped for the whole `during` phase and restarted empty on the same port at
  its end. With `--model noop` and `--specialists off` nothing reads Redis, so this only shows
  the restart is harmless; `--specialists on` or a VLM model make the pipeline use it.
- `consumer`: one consumer actor is killed as a crash would (`ray.kill(no_restart=False)`).
  Ray starts it again in a new process and its `run` call goes on there; meanwhile the group's
  other members take its partitions, and the rebalance after the restart hands some back. The
  script says when it answers again.
- `replica`: one replica of the model's Serve deployment is killed; Serve starts a new one.
  The script says how long until the deployment had all its replicas running again.
- `broker`: Tansu is stopped at the start of the `during` phase and started again on the same
  port `--broker-down-s` seconds later. With `broker` among the faults the whole soak runs on a
  durable broker: Tansu's s3 storage over an S3-compatible store (moto's server) that outlives
  it, so topics, records, committed offsets and the group survive the restart. Its consumers
  then fetch with `fetch_max_wait_ms` 500 (Tansu on object storage answers a fetch with nothing
  when its storage is slower than the fetch's wait, and the pipeline's default is 5 ms).

    python bench/soak.py                              # 20 posts/s, 60 s a phase, all faults
    python bench/soak.py --rate 10 --seconds 20 --faults replica,consumer
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

_REPO = Path(__file__).resolve().parent.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _REPO / "bench"]
sys.path.insert(0, str(_REPO))

from kafka import KafkaProducer  # noqa: E402 - after the path fix above

from bench.pipeline import (  # noqa: E402
    add_client_arguments,
    config_for,
    posts,
    without_specialists,
)
from contracts.vlm import DEFAULT_MODEL  # noqa: E402
from demo.harness import KafkaBroker, RedisServer, running_services  # noqa: E402
from demo.run import example_policies  # noqa: E402
from kafka_io.clients import TopicReader  # noqa: E402
from pipelines.config import PipelineConfig  # noqa: E402
from pipelines.runner import PipelineRun  # noqa: E402
from pipelines.serving import signal_deployment_name  # noqa: E402
from policies.loader import load_policy_dir  # noqa: E402

FAULTS = ("redis", "consumer", "replica", "broker")
DURABLE_FETCH_WAIT_MS = 500


def wait_for(check: Callable[[], bool], what: str, timeout_s: float) -> float:
    """Poll `check` until true; seconds it took. Exit naming `what` past the deadline."""
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout_s:
            raise SystemExit(f"{what}: not within {timeout_s:.0f}s")
        time.sleep(0.1)
    return time.monotonic() - start


class Publisher:
    """Publishes posts one at a time at `rate` posts/s; records each post's phase and time."""

    def __init__(self, config: PipelineConfig, bodies: list[bytes], rate: float) -> None:
        self.config, self.bodies, self.rate = config, bodies, rate
        self.phase = "warm-up"
        self.sent: dict[str, tuple[str, float]] = {}
        self.refused: dict[str, str] = {}  # post id: why the broker never acknowledged it
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        producer = KafkaProducer(**self.config.kafka.client_kwargs(), acks="all", linger_ms=0)
        topic = self.config.topics.inputs[0]
        start = time.monotonic()
        for i, body in enumerate(self.bodies):
            delay = start + i / self.rate - time.monotonic()
            if self._stop.wait(max(delay, 0)):
                break
            post_id = json.loads(body)["id"]
            self.sent[post_id] = (self.phase, time.monotonic())
            future = producer.send(topic, body, key=post_id.encode())
            future.add_errback(self._refuse, post_id)
        else:
            print("  (ran out of prepared posts: the stream stopped early)")
        producer.flush()
        producer.close()

    def _refuse(self, post_id: str, error: Exception) -> None:
        self.refused[post_id] = repr(error)

    def finish(self) -> dict[str, tuple[str, float]]:
        """Stop publishing; every post sent, with its phase and publish time."""
        self._stop.set()
        self._thread.join(60)
        return self.sent


class Ledger:
    """Reads the verdict topic from the start: first verdict time per post, records per key.

    "All read" comes from the high watermarks of the fetch responses (`TopicReader.caught_up`):
    Tansu's ListOffsets end offsets (what `end_offsets` and GroupLagReader read) fall short of
    the records written.
    """

    def __init__(self, config: PipelineConfig) -> None:
        self.first: dict[str, float] = {}
        self.keys: Counter[str] = Counter()
        self.post_of_key: dict[str, str] = {}
        self.polls = 0
        self.caught_up = False  # every partition read up to its high watermark at the last poll
        self._reader = reader(config, config.topics.verdicts)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            records = self._reader.read(timeout_ms=50, max_records=5000)
            now = time.monotonic()
            for record in records:
                verdict = json.loads(record.value)
                self.first.setdefault(verdict["post_id"], now)
                self.keys[verdict["key"]] += 1
                self.post_of_key[verdict["key"]] = verdict["post_id"]
            self.caught_up = self._reader.caught_up()
            self.polls += 1
        self._reader.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)


def reader(config: PipelineConfig, topic: str) -> TopicReader:
    """A reader of `topic` from its start, waiting on fetches as the pipeline's consumers do."""
    wait = config.consumer_overrides.get("fetch_max_wait_ms")
    return TopicReader(config.kafka, [topic], **({"fetch_max_wait_ms": wait} if wait else {}))


def keys_on_topic(config: PipelineConfig, topic: str) -> set[str]:
    """Every record key on `topic`, read from the start to its end."""
    topic_reader = reader(config, topic)
    try:
        return {(record.key or b"").decode() for record in topic_reader.read_to_end()}
    finally:
        topic_reader.close()


def wait_for_verdicts(ledger: Ledger, sent: dict, timeout_s: float) -> None:
    """Wait until every post sent has a verdict; past the deadline the rest count as lost."""
    took = wait_for_or_give_up(lambda: all(p in ledger.first for p in sent), timeout_s)
    if took < 0:
        print(f"not every post had a verdict within {timeout_s:.0f}s: the rest count as lost")
    else:
        print(f"every post had a verdict {took:.1f}s after the stream stopped")


def read_to_end(ledger: Ledger) -> None:
    """Once the pipeline stopped (in-flight batches drained), read the verdict topic to its end:
    after that no verdict, duplicates included, can come."""
    polls = ledger.polls + 2  # a poll that began after the stop sees the final high watermarks
    if wait_for_or_give_up(lambda: ledger.polls > polls and ledger.caught_up, 60) < 0:
        print("the verdict topic was not read to its end within 60s")


def wait_for_or_give_up(check: Callable[[], bool], timeout_s: float) -> float:
    """Like wait_for, but returns -1 past the deadline: what is missing is then reported lost."""
    try:
        return wait_for(check, "settle", timeout_s)
    except SystemExit:
        return -1.0


class Faults:
    """Injects each fault at the start of its `during` phase and ends it at the phase's end."""

    def __init__(
        self,
        run: PipelineRun,
        redis: RedisServer | None,
        replicas: int,
        broker: KafkaBroker | None = None,
        broker_down_s: float = 5.0,
    ) -> None:
        self.run, self.redis, self.replicas = run, redis, replicas
        self.broker, self.broker_down_s = broker, broker_down_s
        self.app = run.app_names[DEFAULT_MODEL]
        self.deployment = signal_deployment_name()

    def inject(self, fault: str) -> None:
        if fault == "redis":
            assert self.redis is not None
            self.redis.stop()
            print("  Redis stopped")
        elif fault == "consumer":
            import ray

            ray.kill(self.run.actors[0], no_restart=False)
            print("  consumer actor 0 killed (ray.kill, as a crash: Ray may restart it)")
        elif fault == "replica":
            self._kill_replica()
        elif fault == "broker":
            assert self.broker is not None
            started = time.monotonic()
            self.broker.restart(down_s=self.broker_down_s)
            took = time.monotonic() - started
            print(f"  broker stopped and started again on its port ({took:.1f}s down)")

    def end(self, fault: str) -> None:
        if fault == "redis":
            assert self.redis is not None
            self.redis.start()
            print("  Redis restarted, empty, on the same port")
        elif fault == "consumer":
            import ray

            ray.get(self.run.actors[0].stats.remote(), timeout=120)
            print("  consumer actor 0 answers at the phase's end: Ray started it again")

    def _replica_names(self) -> list[tuple[str, str]]:
        import ray

        prefix = f"SERVE_REPLICA::{self.app}#{self.deployment}"
        return [
            (a["name"], a["namespace"])
            for a in ray.util.list_named_actors(all_namespaces=True)
            if a["name"].startswith(prefix)
        ]

    def _replicas_running(self) -> int:
        from ray import serve

        application = serve.status().applications[self.app]
        states = application.deployments[self.deployment].replica_states
        return sum(count for state, count in states.items() if state == "RUNNING")

    def _kill_replica(self) -> None:
        import ray

        before = self._replica_names()
        name, namespace = before[0]
        ray.kill(ray.get_actor(name, namespace=namespace))
        print(f"  model replica killed ({len(before)} were running)")
        old = {n for n, _ in before}

        def replaced() -> bool:  # Serve noticed the death, started a new one and it runs
            names = {n for n, _ in self._replica_names()}
            return (
                name not in names
                and len(names) == self.replicas
                and bool(names - old)
                and self._replicas_running() == self.replicas
            )

        took = wait_for_or_give_up(replaced, timeout_s=120)
        if took < 0:
            print("  Serve had not replaced the replica within 120s")
        else:
            print(f"  Serve had a new replica running {took:.1f}s after the kill")


def report(
    sent: dict[str, tuple[str, float]],
    ledger: Ledger,
    phases: list[str],
    refused: dict[str, str],
    on_input: set[str],
) -> None:
    """Per phase: posts, lost, duplicated verdict keys, p50/p99 publish-to-verdict latency.

    A lost post is one of: refused (the broker never acknowledged it to the publisher), gone
    from the input topic though acknowledged (the broker lost it), or on the input topic with
    no verdict (the pipeline lost it, or the broker lost a verdict it had acknowledged;
    tests/integration/pipelines/test_broker_restart.py tells those apart with a second sink)."""
    extra: Counter[str] = Counter()
    for key, count in ledger.keys.items():
        extra[ledger.post_of_key[key]] += count - 1
    print(
        f"\n{'phase':20s} {'posts':>6s} {'lost':>5s} {'dup keys':>8s} {'p50 ms':>8s} {'p99 ms':>8s}"
    )
    for phase in phases:
        ids = [post_id for post_id, (at, _) in sent.items() if at == phase]
        lost = [post_id for post_id in ids if post_id not in ledger.first]
        latencies = sorted(
            (ledger.first[post_id] - sent[post_id][1]) * 1000
            for post_id in ids
            if post_id in ledger.first
        )
        p50 = p99 = "-"
        if len(latencies) >= 2:
            p50 = f"{statistics.median(latencies):.0f}"
            p99 = f"{statistics.quantiles(latencies, n=100)[98]:.0f}"
        dups = sum(extra[post_id] for post_id in ids)
        print(f"{phase:20s} {len(ids):6d} {len(lost):5d} {dups:8d} {p50:>8s} {p99:>8s}")
        if lost:
            refused_ids = [p for p in lost if p in refused]
            gone = [p for p in lost if p not in refused and p not in on_input]
            skipped = [p for p in lost if p not in refused and p in on_input]
            print(
                f"  lost: {len(refused_ids)} refused to the publisher, {len(gone)} acknowledged "
                f"but not on the input topic, {len(skipped)} on it without a verdict; "
                f"e.g. {lost[:5]}"
            )
            for post_id in refused_ids[:3]:
                print(f"  {post_id} refused: {refused[post_id]}")


def soak_config(bootstrap: str, redis_url: str, args: argparse.Namespace) -> PipelineConfig:
    """bench/pipeline.py's config, with the soak's consumers and replica count."""
    args.redis_url, args.batch, args.torch_threads, args.in_flight = redis_url, 16, None, 4
    args.placement, args.specialist_replicas = "consumer", 1  # the specialists in the consumers
    config = config_for(bootstrap, args.model, args)
    pool = config.pool.model_copy(
        update={
            "num_cpus": 0.25,
            "consumer_num_cpus": 0.25,
            "min_replicas": args.replicas,
            "max_replicas": args.replicas,
        }
    )
    return config.model_copy(update={"pool": pool})


def soak(
    config: PipelineConfig,
    redis: RedisServer | None,
    args: argparse.Namespace,
    broker: KafkaBroker | None = None,
) -> None:
    """Start the pipeline, stream through every phase, settle and report."""
    run = PipelineRun(config)
    run.start(load_policy_dir(config.policy_dir))
    ledger = Ledger(config)
    phases = [f"{when} {fault}" for fault in args.faults for when in ("before", "during", "after")]
    count = int(args.rate * args.seconds * len(phases) * 1.5) + 100
    publisher = Publisher(config, posts(count, run=f"soak{os.getpid()}"), args.rate)
    faults = Faults(run, redis, args.replicas, broker, args.broker_down_s)
    try:
        try:
            publisher.start()
            took = wait_for(lambda: bool(ledger.first), "the first verdict", args.timeout)
            print(f"first verdict {took:.1f}s after the stream began (warm-up)")
            for phase in phases:
                run_phase(phase, publisher, faults, args.seconds)
            sent = publisher.finish()
            wait_for_verdicts(ledger, sent, args.timeout)
        finally:
            publisher.finish()
            run.stop()
        read_to_end(ledger)
        ledger.close()  # nothing more comes: the report reads settled counts
        lost = [post_id for post_id in sent if post_id not in ledger.first]
        topic = config.topics.inputs[0]
        on_input = keys_on_topic(config, topic) if lost else set()
        report(sent, ledger, ["warm-up", *phases], publisher.refused, on_input)
    finally:
        ledger.close()


def run_phase(phase: str, publisher: Publisher, faults: Faults, seconds: float) -> None:
    """Tag the posts published from now with `phase`; inject and end its fault, if any."""
    when, fault = phase.split(" ")
    print(f"{phase} ({seconds:.0f}s)")
    publisher.phase, start = phase, time.monotonic()
    if when == "during":
        faults.inject(fault)
    time.sleep(max(0.0, start + seconds - time.monotonic()))  # paces the schedule
    if when == "during":
        faults.end(fault)


def parse_faults(text: str) -> list[str]:
    """The faults named, in the given order; an unknown name ends with a reason."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    for name in names:
        if name not in FAULTS:
            raise SystemExit(f"unknown fault {name!r}: choose from {', '.join(FAULTS)}")
    return names


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=20.0, help="posts published a second")
    parser.add_argument("--seconds", type=float, default=60.0, help="length of each phase")
    parser.add_argument("--model", default="noop", help="noop (default) or e.g. tiny:smolvlm")
    parser.add_argument(
        "--faults",
        default=",".join(FAULTS),
        help=f"comma-separated, in order, from {', '.join(FAULTS)} (default: all)",
    )
    parser.add_argument(
        "--broker-down-s", type=float, default=5.0, help="how long the broker fault keeps it down"
    )
    parser.add_argument("--consumers", type=int, default=2, help="consumer actors in the group")
    parser.add_argument("--replicas", type=int, default=2, help="replicas of the model")
    parser.add_argument("--partitions", type=int, default=2, help="of each topic")
    parser.add_argument(
        "--specialists",
        choices=("off", "on"),
        default="off",
        help="off: the example policies less the specialists' signals; on: as shipped",
    )
    parser.add_argument("--policies", type=Path, default=example_policies())
    parser.add_argument("--timeout", type=float, default=300, help="deadline of each wait")
    add_client_arguments(parser)
    args = parser.parse_args()
    args.faults = parse_faults(args.faults)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}")
    if args.specialists == "off":
        args.policies, _ = without_specialists(args.policies, Path(tempfile.mkdtemp()))
    print(
        f"model {args.model}, specialists {args.specialists}, {args.rate:g} posts/s, "
        f"{args.seconds:g}s a phase, {args.consumers} consumers, {args.replicas} replicas"
    )
    if "redis" in args.faults and args.model == "noop" and args.specialists == "off":
        print("note: with the noop model and specialists off nothing reads Redis")
    durable = "broker" in args.faults
    if durable:
        print("broker: Tansu on s3 storage over an S3-compatible store (moto's server)")
    with running_services(redis=True, durable_kafka=durable) as services:
        assert services.kafka_bootstrap and services.redis_url
        owned = [s for s in services.owned if isinstance(s, RedisServer)]
        if "redis" in args.faults and not owned:
            raise SystemExit("redis: VLMOD_REDIS_URL points at a server this script cannot restart")
        brokers = [s for s in services.owned if isinstance(s, KafkaBroker)]
        config = soak_config(services.kafka_bootstrap, services.redis_url, args)
        if durable:
            overrides = {**config.consumer_overrides, "fetch_max_wait_ms": DURABLE_FETCH_WAIT_MS}
            config = config.model_copy(update={"consumer_overrides": overrides})
        soak(config, owned[0] if owned else None, args, brokers[0] if durable else None)


if __name__ == "__main__":
    main()
