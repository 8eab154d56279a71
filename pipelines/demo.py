"""`vlmod demo`: the whole pipeline on embedded services, sample posts in, verdicts out."""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from pipelines.config import (
    KafkaSettings,
    ModelSettings,
    PipelineConfig,
    PoolSettings,
    TopicSettings,
)
from pipelines.harness import running_services
from pipelines.kafka_io import OutMessage, Producer, TopicReader
from pipelines.runner import PipelineRun, output_topics
from pipelines.samples import SampleMessage, sample_posts

# Tansu's first group join takes about half the session timeout: keep both short for the demo.
DEMO_CONSUMER = {"session_timeout_ms": 6000, "heartbeat_interval_ms": 500}


def example_policies() -> Path:
    """The example policy directory shipped with the package."""
    import policies

    return Path(policies.__file__).parent / "examples"


def demo_config(
    bootstrap: str, redis_url: str | None, model: str, policy_dir: Path
) -> PipelineConfig:
    """The demo's pipeline: one CPU replica, one consumer, small batches."""
    return PipelineConfig(
        kafka=KafkaSettings(bootstrap_servers=bootstrap),
        consumer_group="vlmod-demo",
        consumer_overrides=DEMO_CONSUMER,
        topics=TopicSettings(inputs=["posts"]),
        redis_url=redis_url,
        model=ModelSettings(name_or_path=model),
        policy_dir=str(policy_dir),
        pool=PoolSettings(
            num_cpus=1, consumer_num_cpus=0.5, max_batch_size=16, max_poll_records=16
        ),
    )


@dataclass
class DemoReport:
    """What came out: verdicts by post, dead letters, and message counts per topic."""

    expected: int
    verdicts_per_post: int
    verdicts: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    dead_letters: dict[str, dict[str, Any]] = field(default_factory=dict)
    per_topic: Counter[str] = field(default_factory=Counter)

    def resolved(self) -> int:
        """Posts with every active policy's verdict, plus dead-lettered messages."""
        done = sum(1 for v in self.verdicts.values() if len(v) >= self.verdicts_per_post)
        return done + len(self.dead_letters)

    @property
    def complete(self) -> bool:
        """True when every published message ended as verdicts or a dead letter."""
        return self.resolved() >= self.expected

    def add(self, topic: str, key: bytes | None, value: bytes, config: PipelineConfig) -> None:
        """Account for one output message."""
        self.per_topic[topic] += 1
        body = json.loads(value)
        if topic == config.topics.verdicts:
            self.verdicts.setdefault(body["post_id"], []).append(body)
        elif topic == config.topics.dead_letter:
            self.dead_letters[(key or b"?").decode(errors="replace")] = body


def run_demo(
    *,
    model: str = "tiny:smolvlm",
    policy_dir: Path | None = None,
    posts: int = 24,
    console: Console | None = None,
    timeout_s: float = 240.0,
) -> DemoReport:
    """Start the services, run the pipeline over the sample posts, and report what came out."""
    console = console or Console()
    policy_dir = policy_dir or example_policies()
    samples = sample_posts(posts)
    _say_model(console, model)
    with running_services() as services:
        assert services.kafka_bootstrap is not None
        config = demo_config(services.kafka_bootstrap, services.redis_url, model, policy_dir)
        console.print(f"Kafka {services.kafka_bootstrap} · Redis {services.redis_url} · Ray local")
        _prepare_model(console, config)
        from policies.loader import load_policy_dir

        policy_set = load_policy_dir(policy_dir)
        run = PipelineRun(config)
        with console.status("deploying the model replica and the consumer..."):
            run.start(policy_set)
        _publish(config, samples)
        report = _collect(
            config,
            output_topics(config, policy_set),
            samples,
            len(policy_set.active),
            console,
            timeout_s,
        )
        with console.status("draining and shutting down..."):
            run.stop()
    print_report(console, report, samples)
    return report


def _say_model(console: Console, model: str) -> None:
    if model.startswith("tiny:"):
        console.print(
            "[yellow]The model has random weights[/yellow]: its probabilities mean nothing, the "
            "plumbing is real. Point it at a real checkpoint with "
            "`vlmod demo --model HuggingFaceTB/SmolVLM-256M-Instruct` (hub id or local path)."
        )


def _prepare_model(console: Console, config: PipelineConfig) -> None:
    name = config.model.name_or_path
    if name.startswith("tiny:"):
        from operators.tiny import ensure_tiny

        with console.status(f"building the random-weight {name} model (once, then cached)..."):
            path = ensure_tiny(name.removeprefix("tiny:"))
        console.print(f"model: {name} at {path}")


def _publish(config: PipelineConfig, samples: list[SampleMessage]) -> None:
    producer = Producer(config.kafka)
    topic = config.topics.inputs[0]
    producer.send_all([OutMessage(topic, s.value, s.key) for s in samples])
    producer.close()


def _collect(
    config: PipelineConfig,
    topics: list[str],
    samples: list[SampleMessage],
    verdicts_per_post: int,
    console: Console,
    timeout_s: float,
) -> DemoReport:
    report = DemoReport(expected=len(samples), verdicts_per_post=verdicts_per_post)
    wanted = [t for t in topics if t not in config.topics.inputs]
    reader = TopicReader(config.kafka, wanted)
    deadline = time.monotonic() + timeout_s
    try:
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task("moderating", total=len(samples))
            while not report.complete:
                if time.monotonic() > deadline:
                    console.print(f"[red]timed out after {timeout_s:.0f}s[/red]")
                    break
                for record in reader.read():
                    report.add(record.topic, record.key, record.value, config)
                progress.update(task, completed=report.resolved())
    finally:
        reader.close()
    return report


def print_report(console: Console, report: DemoReport, samples: list[SampleMessage]) -> None:
    """The verdict table, the dead letters, and counts per topic."""
    table = Table(title="Verdicts")
    for column in ("post", "policy", "action", "queue", "matched rules"):
        table.add_column(column)
    for post_id in sorted(report.verdicts):
        for verdict in report.verdicts[post_id]:
            rules = ", ".join(rule["id"] for rule in verdict["matched_rules"]) or "-"
            table.add_row(
                post_id, verdict["policy"]["id"], verdict["action"], verdict["queue"] or "-", rules
            )
    console.print(table)
    dead = Table(title="Dead letters")
    for column in ("key", "stage", "error"):
        dead.add_column(column)
    for key, letter in sorted(report.dead_letters.items()):
        dead.add_row(key, letter["stage"], letter["error"][:90])
    console.print(dead)
    counts = Table(title="Messages per topic")
    counts.add_column("topic")
    counts.add_column("messages", justify="right")
    for topic, count in sorted(report.per_topic.items()):
        counts.add_row(topic, str(count))
    console.print(counts)
    well_formed = sum(1 for s in samples if not s.malformed)
    console.print(
        f"{len(report.verdicts)}/{well_formed} posts got verdicts, "
        f"{len(report.dead_letters)}/{len(samples) - well_formed} malformed messages dead-lettered"
    )
