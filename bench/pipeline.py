"""Benchmark the streaming pipeline end to end against a naive single-process loop.

Starts Tansu and local Ray through the harness, then, in one run and for each model (`noop`: the
plumbing alone; `tiny:smolvlm`: the random-weight VLM):
- pipeline throughput: posts already on the input topic, moderated by the Ray pipeline; posts/s
  between the first and the last verdict;
- added latency: posts published at half that rate; time from publish to verdict, p50 and p99,
  and the same of its parts: published to consumed, in the consumer (consumed to decided),
  decided to the verdict's produce call, and from that call to this benchmark reading it;
- naive baseline: one process that consumes one message, runs the model on that post alone,
  evaluates the policies and produces with a wait for each ack, then commits, post by post;
- the ratio of the two throughputs;
- with `--cpu`, the CPU each process (consumer, replica, broker, Ray, this benchmark) spent per
  post while the backlog drained.

    python bench/pipeline.py                     # both models, 2,000 posts each
    python bench/pipeline.py --models noop --posts 5000
    python bench/pipeline.py --models noop --specialists on   # OCR, NSFW, profanity, banks too
    python bench/pipeline.py --models noop --specialists on --redis   # with the Redis cache

`--specialists off` (the default, as in the figures before the specialists existed) runs the
example policies less the specialist signals (nsfw, ocr, profanity, banks) and the rules that
read them; `on` runs them as shipped, the specialists computing on every post's image.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import platform
import re
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

_REPO = Path(__file__).resolve().parent.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _REPO / "bench"]
sys.path.insert(0, str(_REPO))

from confluent_kafka import OFFSET_BEGINNING, TopicPartition  # noqa: E402 - after the path fix
from confluent_kafka import Consumer as RdKafkaConsumer  # noqa: E402
from kafka import KafkaConsumer, KafkaProducer  # noqa: E402

import policies  # noqa: E402
from demo.harness import ProcessCpu, running_services  # noqa: E402
from demo.run import example_policies  # noqa: E402
from demo.samples import TEXTS, drawn_image  # noqa: E402
from kafka_io.clients import (  # noqa: E402
    OutMessage,
    batch_consumer,
    create_topics,
    kafka_writer,
)
from kafka_io.rdkafka import rdkafka_config  # noqa: E402
from kafka_io.settings import KafkaSettings, TopicSettings  # noqa: E402
from pipelines.config import (  # noqa: E402
    ModelSettings,
    PipelineConfig,
    PoolSettings,
    SpecialistSettings,
)
from pipelines.consumer import ModerationLoop  # noqa: E402
from pipelines.local import build_moderator  # noqa: E402
from pipelines.model_settings import ReplicaPoolSettings  # noqa: E402
from pipelines.runner import PipelineRun, output_topics  # noqa: E402
from pipelines.steps import SourceMessage  # noqa: E402
from pipelines.wiring import build_signal_source  # noqa: E402
from policies.loader import load_policy_dir  # noqa: E402
from policies.policy_set import PolicySet  # noqa: E402
from sinks.kafka_topics import KafkaSink, kafka_batch  # noqa: E402

GROUP_TIMEOUTS = {"session_timeout_ms": 6000, "heartbeat_interval_ms": 500}
SPECIALIST_SIGNALS = ("nsfw", "ocr", "profanity", "banks")
READS_SPECIALIST = re.compile(r"\b(nsfw|ocr|profanity|profanity_ocr|banks)\b")


def without_specialists(directory: Path, into: Path) -> tuple[Path, int]:
    """Copies of the policies in `directory` less specialist signals and the rules reading them."""
    from ruamel.yaml import YAML

    yaml = YAML()
    dropped = 0
    for path in sorted(directory.glob("*.yaml")):
        if path.name.endswith(".tests.yaml"):
            continue
        doc = yaml.load(path.read_text())
        for name in SPECIALIST_SIGNALS:
            (doc.get("signals") or {}).pop(name, None)
        kept = [r for r in doc.get("rules", []) if not READS_SPECIALIST.search(r["when"])]
        dropped += len(doc.get("rules", [])) - len(kept)
        doc["rules"], doc["tests"] = kept, []
        with (into / path.name).open("w") as out:
            yaml.dump(doc, out)
    return into, dropped


def posts(count: int, *, run: str) -> list[bytes]:
    """Posts with one of 16 small images each (reposts included) and a sample text."""
    images = [base64.b64encode(drawn_image(i)).decode() for i in range(16)]
    out = []
    for n in range(count):
        body = {
            "id": f"{run}-{n}",
            "text": TEXTS[n % len(TEXTS)],
            "images": [{"data": images[n % len(images)], "mime": "image/png"}],
            "meta": {"surface": "feed"},
        }
        out.append(json.dumps(body).encode())
    return out


def config_for(bootstrap: str, model: str, args: argparse.Namespace) -> PipelineConfig:
    """A pipeline over fresh topics."""
    prefix = f"bench-{uuid.uuid4().hex[:6]}"
    return PipelineConfig(
        kafka=KafkaSettings(
            bootstrap_servers=bootstrap, producer=args.producer, consumer=args.consumer
        ),
        consumer_group=prefix,
        consumer_overrides=GROUP_TIMEOUTS,
        topics=TopicSettings.namespaced(prefix, partitions=args.partitions),
        model=ModelSettings(name_or_path=model, device="cpu", torch_threads=args.torch_threads),
        policy_dir=str(args.policies),
        redis_url=args.redis_url,
        pool=PoolSettings(
            num_cpus=0.5,
            consumer_num_cpus=0.5,
            consumers=args.consumers,
            max_consumers=args.max_consumers,
            lag_check_s=args.lag_check_s,
            lag_per_consumer=args.lag_per_consumer,
            max_batch_size=args.batch,
            max_poll_records=args.batch,
            max_in_flight_batches=args.in_flight,
            in_flight_caught_up=args.in_flight_caught_up,
            consumer_gc_thresholds=args.gc_thresholds,
            consumer_gc_thresholds_behind=args.gc_behind,
            replica_grpc_max_bytes=args.replica_grpc_max_bytes,
        ),
        specialists=SpecialistSettings(
            placement=args.placement,
            pool=ReplicaPoolSettings(
                min_replicas=args.specialist_replicas,
                max_replicas=args.specialist_replicas,
                num_cpus=0.5,
            ),
        ),
    )


class VerdictClock:
    """Reads the verdict topic; records when each post's first verdict arrived.

    It reads through librdkafka and takes the post id from the message key, so measuring
    takes little of the cores the pipeline runs on: through kafka-python, parsing each
    verdict, it took 0.35-0.57 ms of CPU a post, this way 0.02-0.11 ms.
    """

    def __init__(self, config: PipelineConfig, *, parts: bool = False) -> None:
        self.arrivals: dict[str, float] = {}
        # With `parts`, in ms: each post's first verdict's own latency_ms (consumed to decided),
        # from its processed_at (decided) to its produce call (the record's timestamp), and
        # from that call to this read.
        self.parts: dict[str, tuple[float, float, float]] | None = {} if parts else None
        topic = config.topics.verdicts
        settings = {
            **rdkafka_config(config.kafka),
            "group.id": f"bench-clock-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "fetch.wait.max.ms": 5,
        }
        self._reader = RdKafkaConsumer(settings)
        partitions = self._reader.list_topics(topic, timeout=30).topics[topic].partitions
        self._reader.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            # consume waits for all it asks for or its timeout: wait for one, take the rest.
            messages = self._reader.consume(num_messages=1, timeout=0.02)
            if messages:
                messages += self._reader.consume(num_messages=5000, timeout=0)
            now = time.monotonic()
            for message in messages:
                if message.error() is None:  # a verdict's key is its post id
                    post_id = message.key().decode()
                    if post_id not in self.arrivals:
                        self.arrivals[post_id] = now
                        self._take_parts(post_id, message)
        self._reader.close()

    def _take_parts(self, post_id: str, message: Any) -> None:
        if self.parts is not None:
            produced_ms = message.timestamp()[1]
            verdict = json.loads(message.value())
            decided_ms = datetime.fromisoformat(verdict["processed_at"]).timestamp() * 1000
            read_ms = time.time() * 1000 - produced_ms
            self.parts[post_id] = (verdict["latency_ms"], produced_ms - decided_ms, read_ms)

    def wait(self, count: int, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while len(self.arrivals) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        if len(self.arrivals) < count:
            raise SystemExit(f"only {len(self.arrivals)}/{count} verdicts in {timeout_s:.0f}s")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)


def publish(config: PipelineConfig, bodies: list[bytes], *, per_second: float = 0.0) -> None:
    """Produce `bodies` to the input topic, paced when `per_second` is set."""
    writer = kafka_writer(config.kafka)
    topic = config.topics.inputs[0]
    step = 10 if per_second else 500
    start = time.monotonic()
    for i in range(0, len(bodies), step):
        if per_second:
            delay = start + i / per_second - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        writer.send_all([OutMessage(topic, b) for b in bodies[i : i + step]])
    writer.close()


def pipeline_throughput(bootstrap: str, model: str, args: argparse.Namespace) -> float:
    """Posts/s of the Ray pipeline over a backlog, first to last verdict."""
    config = config_for(bootstrap, model, args)
    policy_set = load_policy_dir(config.policy_dir)
    create_topics(config.kafka, output_topics(config, policy_set), partitions=args.partitions)
    publish(config, posts(args.posts, run="t"))
    clock = VerdictClock(config)
    run = PipelineRun(config)
    run.start(policy_set)
    try:
        if args.cpu:  # from the first verdict on, so start-up is not counted
            clock.wait(1, timeout_s=args.timeout)
            cpu, first = ProcessCpu(), len(clock.arrivals)
        clock.wait(args.posts, timeout_s=args.timeout)
        if args.cpu:
            print_cpu(model, cpu.used(), len(clock.arrivals) - first)
    finally:
        run.stop()
        clock.close()
    times = sorted(clock.arrivals.values())
    return (len(times) - 1) / (times[-1] - times[0])


def print_cpu(model: str, used: dict[str, float], posts: int) -> None:
    """CPU per post of each process name, busiest first, while the backlog drained."""
    total = sum(used.values())
    print(f"\n[{model}] CPU while the backlog drained: {total / posts * 1000:.2f} ms a post")
    for name, seconds in sorted(used.items(), key=lambda item: -item[1]):
        if seconds < 0.01 * total:
            break
        print(f"  {name:18s} {seconds / posts * 1000:6.3f} ms a post ({seconds / total:.0%})")


@contextlib.contextmanager
def on_ray(config: PipelineConfig, policy_set: PolicySet) -> Iterator[None]:
    """The pipeline as deployed: consumer actors and the Serve replica pool."""
    run = PipelineRun(config)
    run.start(policy_set)
    try:
        yield
    finally:
        run.stop()


@contextlib.contextmanager
def in_process(config: PipelineConfig, policy_set: PolicySet) -> Iterator[None]:
    """The same consume loop in this process, signals computed here: no hop to a replica."""
    consumer = batch_consumer(
        config.kafka, config.topics.inputs, config.consumer_group, **GROUP_TIMEOUTS
    )
    moderator = build_moderator(config, policy_set, build_signal_source(config))
    sink = KafkaSink(kafka_writer(config.kafka), config.topics)
    loop = ModerationLoop(consumer, sink, moderator, config.pool)
    thread = threading.Thread(target=loop.run, daemon=True)
    thread.start()
    try:
        yield
    finally:
        loop.stop()
        thread.join(60)


@dataclass
class Latencies:
    """Publish-to-first-verdict latencies (ms) of a latency run, and their parts per post."""

    total: list[float]
    consumer: list[float]  # the verdict's latency_ms: from consumed to decided
    to_produce: list[float]  # from decided (processed_at) to the verdict's produce call
    to_reader: list[float]  # from the verdict's produce call to this benchmark reading it

    def to_consumer(self) -> list[float]:
        """Published to consumed: what the other parts leave of the total."""
        parts = zip(self.total, self.consumer, self.to_produce, self.to_reader, strict=True)
        return [total - consumer - produce - read for total, consumer, produce, read in parts]


def pipeline_latency(
    bootstrap: str, model: str, rate: float, args: argparse.Namespace, host: Any = on_ray
) -> Latencies:
    """Publish-to-verdict latencies (ms) of posts published at `rate` posts/s."""
    config = config_for(bootstrap, model, args)
    policy_set = load_policy_dir(config.policy_dir)
    create_topics(config.kafka, output_topics(config, policy_set), partitions=args.partitions)
    clock = VerdictClock(config, parts=True)
    with host(config, policy_set):
        publish(config, posts(50, run="warm"), per_second=rate)
        clock.wait(50, timeout_s=args.timeout)
        count = max(200, int(rate * args.latency_seconds))
        sent = publish_timed(config, posts(count, run="lat"), rate)
        clock.wait(50 + count, timeout_s=args.timeout)
    clock.close()
    assert clock.parts is not None
    parts = [clock.parts[post_id] for post_id in sent]
    return Latencies(
        [(clock.arrivals[post_id] - at) * 1000 for post_id, at in sent.items()],
        [consumer for consumer, _, _ in parts],
        [produce for _, produce, _ in parts],
        [read for _, _, read in parts],
    )


def percentiles(values: list[float]) -> str:
    """p50 and p99 of `values`, in ms."""
    p50, p99 = statistics.median(values), statistics.quantiles(values, n=100)[98]
    return f"p50 {p50:6.1f} ms, p99 {p99:6.1f} ms"


def print_latency(label: str, latencies: Latencies, rate: float) -> None:
    """The run's p50 and p99, then the same of each part."""
    print(f"  {label:<17} {percentiles(latencies.total)} at {rate:.0f} posts/s")
    print(f"    to the consumer {percentiles(latencies.to_consumer())} (published to consumed)")
    print(f"    in the consumer {percentiles(latencies.consumer)} (consumed to decided)")
    print(f"    to produce      {percentiles(latencies.to_produce)} (decided to produce call)")
    print(f"    verdict to read {percentiles(latencies.to_reader)} (produce call to this reader)")


def publish_timed(config: PipelineConfig, bodies: list[bytes], rate: float) -> dict[str, float]:
    """Publish one post at a time at `rate` posts/s; return when each was handed to the broker."""
    producer = KafkaProducer(**config.kafka.client_kwargs(), acks="all", linger_ms=0)
    topic = config.topics.inputs[0]
    sent: dict[str, float] = {}
    start = time.monotonic()
    for i, body in enumerate(bodies):
        delay = start + i / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        sent[json.loads(body)["id"]] = time.monotonic()
        producer.send(topic, body)
    producer.flush()
    producer.close()
    return sent


def naive_throughput(bootstrap: str, model: str, args: argparse.Namespace) -> float:
    """Posts/s of one process doing consume, model, policies, produce with ack, commit, per post."""
    config = config_for(bootstrap, model, args)
    policy_set = load_policy_dir(config.policy_dir)
    create_topics(config.kafka, output_topics(config, policy_set), partitions=args.partitions)
    count = args.naive_posts
    publish(config, posts(count, run="n"))
    moderator = build_moderator(config, policy_set, build_signal_source(config))
    consumer = KafkaConsumer(
        config.topics.inputs[0],
        bootstrap_servers=bootstrap,
        group_id=config.consumer_group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        **GROUP_TIMEOUTS,
    )
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    done, started = 0, None
    while done < count:
        for records in consumer.poll(timeout_ms=200, max_records=1).values():
            for record in records:
                started = started or time.monotonic()
                outcomes = moderator.moderate([SourceMessage.from_record(record)])
                for out in kafka_batch(outcomes, moderator.topics):
                    producer.send(out.topic, out.value, key=out.key, headers=out.headers).get(30)
                consumer.commit()
                done += 1
    elapsed = time.monotonic() - (started or time.monotonic())
    consumer.close()
    producer.close()
    return (done - 1) / elapsed


def add_client_arguments(parser: argparse.ArgumentParser) -> None:
    """`--producer` and `--consumer`: the Kafka clients (`kafka.producer`, `kafka.consumer`)."""
    for flag, default, what in (
        ("--producer", "librdkafka", "the client that produces (kafka.producer)"),
        ("--consumer", "kafka-python", "the client the consumer actors read through"),
    ):
        parser.add_argument(
            flag, choices=("kafka-python", "librdkafka"), default=default, help=what
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="noop,tiny:smolvlm")
    parser.add_argument("--posts", type=int, default=2000)
    parser.add_argument("--naive-posts", type=int, default=300)
    parser.add_argument("--latency-seconds", type=float, default=5.0)
    parser.add_argument(
        "--latency-rate",
        type=float,
        default=0.0,
        help="posts/s for the latency run (default: half the measured rate)",
    )
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--consumers", type=int, default=1)
    parser.add_argument(
        "--max-consumers",
        type=int,
        default=None,
        help="pool.max_consumers: add consumers while the group's lag asks for them",
    )
    parser.add_argument("--lag-check-s", type=float, default=15.0, help="pool.lag_check_s")
    parser.add_argument("--lag-per-consumer", type=int, default=1000, help="pool.lag_per_consumer")
    parser.add_argument(
        "--in-flight",
        type=int,
        default=4,
        help="batches in flight per consumer while it is behind (pool.max_in_flight_batches)",
    )
    parser.add_argument(
        "--in-flight-caught-up",
        type=int,
        default=1,
        help="batches in flight per consumer once it has caught up (pool.in_flight_caught_up)",
    )
    parser.add_argument(
        "--gc-thresholds",
        type=lambda text: tuple(int(n) for n in text.split(",")),
        default=None,
        help="the consumer actors' collector thresholds, e.g. 50000,50,100 "
        "(pool.consumer_gc_thresholds)",
    )
    parser.add_argument(
        "--gc-behind",
        type=lambda text: None if text == "none" else tuple(int(n) for n in text.split(",")),
        default=PoolSettings().consumer_gc_thresholds_behind,
        help="the consumer actors' collector thresholds while behind, or none for the same "
        "throughout (pool.consumer_gc_thresholds_behind)",
    )
    parser.add_argument(
        "--replica-grpc-max-bytes",
        type=int,
        default=PoolSettings.model_fields["replica_grpc_max_bytes"].default,
        help="largest replica call sent by value over gRPC; 0 sends every call through the "
        "object store (pool.replica_grpc_max_bytes)",
    )
    add_client_arguments(parser)
    parser.add_argument(
        "--torch-threads",
        type=int,
        default=None,
        help="torch threads in each replica (default: as Ray sets them, one per reserved CPU)",
    )
    parser.add_argument("--partitions", type=int, default=2)
    parser.add_argument("--policies", type=Path, default=example_policies())
    parser.add_argument("--timeout", type=float, default=300)
    parser.add_argument(
        "--redis",
        action="store_true",
        help="start Redis and cache answers and specialist values (reposts cost nothing)",
    )
    parser.add_argument(
        "--specialists",
        choices=("off", "on"),
        default="off",
        help="off: the policies less the CPU specialists' signals and rules; on: as they are",
    )
    parser.add_argument(
        "--placement",
        choices=("consumer", "pool"),
        default="consumer",
        help="where the specialists run (specialists.placement)",
    )
    parser.add_argument(
        "--specialist-replicas",
        type=int,
        default=1,
        help="replicas of the specialist pool with --placement pool",
    )
    parser.add_argument(
        "--throughput-only",
        action="store_true",
        help="measure the pipeline's throughput (and --cpu) only: no latency run, no naive loop",
    )
    parser.add_argument(
        "--cpu",
        action="store_true",
        help="print each process's CPU per post while the pipeline drains the backlog (Linux)",
    )
    parser.add_argument(
        "--in-process-latency",
        action="store_true",
        help="also measure latency of the consume loop without the replica hop",
    )
    args = parser.parse_args()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    print(f"policy engine: {policies.ENGINE}")
    if args.specialists == "off":
        source = args.policies
        args.policies, dropped = without_specialists(source, Path(tempfile.mkdtemp()))
        print(f"specialists off: {source} less {dropped} rules reading nsfw/ocr/profanity/banks")
    print(
        f"policies: {args.policies}; batch {args.batch}; in flight {args.in_flight}, "
        f"{args.in_flight_caught_up} caught up; consumers {args.consumers}"
        f"{f' (collector {args.gc_thresholds})' if args.gc_thresholds else ''}"
        f" (collector while behind {args.gc_behind})"
        f"{f' to {args.max_consumers} by lag' if args.max_consumers else ''}; "
        f"producer {args.producer}; consumer {args.consumer}; "
        f"replica calls by value up to {args.replica_grpc_max_bytes} bytes"
    )
    if args.placement == "pool":
        print(f"specialists on a pool of {args.specialist_replicas} replicas")
    with running_services(redis=args.redis) as services:
        assert services.kafka_bootstrap
        args.redis_url = services.redis_url if args.redis else None
        print(f"cache: {'Redis (answers and specialist values)' if args.redis else 'none'}")
        for model in args.models.split(","):
            rate = pipeline_throughput(services.kafka_bootstrap, model, args)
            if args.throughput_only:
                print(f"\n[{model}]\n  pipeline          {rate:8.1f} posts/s ({args.posts} posts)")
                continue
            latency_rate = args.latency_rate or rate / 2
            latencies = pipeline_latency(services.kafka_bootstrap, model, latency_rate, args)
            naive = naive_throughput(services.kafka_bootstrap, model, args)
            print(f"\n[{model}]")
            print(f"  pipeline          {rate:8.1f} posts/s ({args.posts} posts)")
            print_latency("added latency", latencies, latency_rate)
            if args.in_process_latency:
                local = pipeline_latency(
                    services.kafka_bootstrap, model, latency_rate, args, host=in_process
                )
                print_latency("same, in-process", local, latency_rate)
            print(f"  naive loop        {naive:8.1f} posts/s ({args.naive_posts} posts)")
            print(f"  pipeline / naive  {rate / naive:8.1f}x")


if __name__ == "__main__":
    main()
