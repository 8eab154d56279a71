"""`vlmod demo`: the whole pipeline on embedded services, sample posts in, verdicts out."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import re
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.progress import Progress
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

from pipelines.config import (
    KafkaSettings,
    ModelSettings,
    PipelineConfig,
    PoolSettings,
    TopicSettings,
)
from pipelines.harness import running_services
from pipelines.kafka_io import OutMessage, Producer, TopicReader
from pipelines.producers import producer_registry
from pipelines.runner import PipelineRun, output_topics
from pipelines.samples import SampleMessage, sample_posts

log = logging.getLogger(__name__)

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
    console = console or Console(file=sys.stdout)  # the real stdout, before Ray's is moved
    from policies.loader import load_policy_dir

    policy_dir = policy_dir or example_policies()
    # Refused in one line before anything starts.
    policy_set = load_policy_dir(policy_dir, registry=producer_registry())
    samples = sample_posts(posts)
    _say_model(console, model)
    with ray_output_off_stdout(), running_services() as services:
        assert services.kafka_bootstrap is not None
        config = demo_config(services.kafka_bootstrap, services.redis_url, model, policy_dir)
        console.print(f"Kafka {services.kafka_bootstrap} · Redis {services.redis_url} · Ray local")
        _prepare_model(console, config)
        run = PipelineRun(config)
        with spinner(console, "deploying the model replica and the consumer..."):
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
        with spinner(console, "draining and shutting down..."):
            run.stop()
    print_report(console, report, samples)
    return report


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


class _RayDriverOutput(io.TextIOBase):
    """What Ray prints on the driver (`(raylet) ...` lines), as log records instead."""

    def write(self, text: str) -> int:
        """Log each non-blank line at INFO, without its colour codes."""
        for line in text.splitlines():
            if line.strip():
                log.info("ray: %s", _ANSI.sub("", line))
        return len(text)


@contextlib.contextmanager
def ray_output_off_stdout() -> Iterator[None]:
    """Keep Ray's driver prints out of stdout, which carries the demo's report."""
    with contextlib.redirect_stdout(_RayDriverOutput()):
        yield


def spinner(console: Console, message: str) -> Live:
    """A transient spinner that, unlike `console.status`, leaves sys.stdout where it is."""
    return Live(
        Spinner("dots", text=message),
        console=console,
        transient=True,
        redirect_stdout=False,
        redirect_stderr=False,
    )


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

        with spinner(console, f"building the random-weight {name} model (once, then cached)..."):
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
        with Progress(
            console=console, transient=True, redirect_stdout=False, redirect_stderr=False
        ) as progress:
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
    """The verdict table, the dead letters, and counts per topic; ids are never cut."""
    console.print(verdict_table(report, _contents(samples)))
    console.print(dead_letter_table(report))
    console.print(topic_table(report))
    well_formed = sum(1 for s in samples if not s.malformed)
    console.print(
        f"{len(report.verdicts)}/{well_formed} posts got verdicts, "
        f"{len(report.dead_letters)}/{len(samples) - well_formed} malformed messages dead-lettered"
    )


def verdict_table(report: DemoReport, contents: dict[str, str] | None = None) -> Table:
    """Each post's id (and what it holds) over one row per policy: action, queue, rules."""
    contents = contents or {}
    table = Table(title="Verdicts")
    table.add_column("post / policy", no_wrap=True, overflow="fold")
    for column in ("action", "queue", "matched rules"):
        table.add_column(column, overflow="fold")
    for post_id in sorted(report.verdicts):
        title = Text(post_id, style="bold")  # Text: ids are never read as markup
        title.append(f"  {contents[post_id]}" if post_id in contents else "", style="dim")
        table.add_row(title)
        verdicts = report.verdicts[post_id]
        for index, verdict in enumerate(verdicts):
            policy = Text("  " + verdict["policy"]["id"])
            cells = (verdict["action"], verdict["queue"] or "-", _rule_ids(verdict))
            table.add_row(policy, *map(Text, cells), end_section=index == len(verdicts) - 1)
    return table


def dead_letter_table(report: DemoReport) -> Table:
    """One row per dead letter: its key, the stage it failed at and the whole reason."""
    table = Table(title="Dead letters")
    table.add_column("key", no_wrap=True, overflow="fold")
    table.add_column("stage", no_wrap=True, overflow="fold")
    table.add_column("error", overflow="fold")
    for key, letter in sorted(report.dead_letters.items()):
        table.add_row(Text(key), Text(letter["stage"]), Text(letter["error"]))
    return table


def topic_table(report: DemoReport) -> Table:
    """Messages the demo read back from each topic."""
    table = Table(title="Messages per topic")
    table.add_column("topic", no_wrap=True, overflow="fold")
    table.add_column("messages", justify="right", no_wrap=True)
    for topic, count in sorted(report.per_topic.items()):
        table.add_row(Text(topic), str(count))
    return table


def _contents(samples: list[SampleMessage]) -> dict[str, str]:
    """`text only`, `text + 1 image`, ... for each well-formed sample post."""
    contents = {}
    for sample in samples:
        if not sample.malformed:
            count = len(json.loads(sample.value).get("images", []))
            contents[sample.key.decode()] = (
                f"text + {count} image{'s' * (count > 1)}" if count else "text only"
            )
    return contents


def _rule_ids(verdict: dict[str, Any]) -> str:
    return "\n".join(rule["id"] for rule in verdict["matched_rules"]) or "-"  # one a line
