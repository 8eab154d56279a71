"""Micro-benchmark: the consumer's per-post CPU cost, in-process (no Kafka, no Ray).

Runs `Moderator.moderate` with the `noop` model over 64-post batches of the pipeline
benchmark's posts, prints posts/s, then profiles one more pass under cProfile and prints the
top functions by cumulative time.

    python bench/moderate.py                       # example policies less the specialists
    python bench/moderate.py --specialists on      # the example policies as shipped
    python bench/moderate.py --posts 3000 --rounds 3 --top 15
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import pstats
import sys
import tempfile
import time
from pathlib import Path

_REPO = Path(__file__).resolve().parent.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _REPO / "bench"]
sys.path.insert(0, str(_REPO))

import policies  # noqa: E402 - after the path fix above
from bench.pipeline import posts, without_specialists  # noqa: E402
from demo.run import example_policies  # noqa: E402
from pipelines.config import ModelSettings, PipelineConfig  # noqa: E402
from pipelines.local import build_moderator  # noqa: E402
from pipelines.steps import Moderator, SourceMessage  # noqa: E402
from pipelines.wiring import build_signal_source  # noqa: E402
from policies.loader import load_policy_dir  # noqa: E402
from sinks.kafka_topics import kafka_batch  # noqa: E402


def moderator_for(policy_dir: Path) -> Moderator:
    """A Moderator over the policies in `policy_dir` and the `noop` model, in this process."""
    config = PipelineConfig(model=ModelSettings(name_or_path="noop"), policy_dir=str(policy_dir))
    return build_moderator(config, load_policy_dir(policy_dir), build_signal_source(config))


def batches(count: int, size: int) -> list[list[SourceMessage]]:
    """`count` bench posts as `size`-post batches of source messages."""
    messages = [
        SourceMessage(body, topic="in", partition=0, offset=n)
        for n, body in enumerate(posts(count, run="m"))
    ]
    return [messages[i : i + size] for i in range(0, len(messages), size)]


def run(moderator: Moderator, work: list[list[SourceMessage]]) -> tuple[float, float, int]:
    """Wall and CPU seconds to moderate every batch into its Kafka messages, and their count."""
    started, cpu = time.perf_counter(), time.process_time()
    topics = moderator.topics
    outputs = sum(len(kafka_batch(moderator.moderate(batch), topics)) for batch in work)
    return time.perf_counter() - started, time.process_time() - cpu, outputs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--posts", type=int, default=3000)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3, help="timed passes; the best is shown")
    parser.add_argument("--top", type=int, default=15, help="profile lines (0: no profile)")
    parser.add_argument("--policies", type=Path, default=example_policies())
    parser.add_argument("--specialists", choices=("off", "on"), default="off")
    parser.add_argument(
        "--gc-freeze",
        choices=("off", "on"),
        default="on",
        help="on: keep what setup built out of garbage collection, as the consumer loop does",
    )
    args = parser.parse_args()
    print(f"policy engine: {policies.ENGINE}")
    policy_dir = args.policies
    if args.specialists == "off":
        policy_dir, dropped = without_specialists(policy_dir, Path(tempfile.mkdtemp()))
        print(f"specialists off: {args.policies} less {dropped} rules")
    moderator = moderator_for(policy_dir)
    work = batches(args.posts, args.batch)
    run(moderator, work[:2])  # warm up: compile, first-call imports
    if args.gc_freeze == "on":
        gc.freeze()
    rates, cpu_rates = [], []
    for _ in range(args.rounds):
        seconds, cpu_seconds, outputs = run(moderator, work)
        rates.append(args.posts / seconds)
        cpu_rates.append(args.posts / cpu_seconds)
    print(
        f"in-process: {max(rates):8.1f} posts/s best of {args.rounds} "
        f"({', '.join(f'{r:.0f}' for r in rates)}); {max(cpu_rates):8.1f} posts per CPU-second; "
        f"{outputs} messages out; {args.posts} posts, batch {args.batch}"
    )
    if args.top:
        profile = cProfile.Profile()
        profile.runcall(run, moderator, work)
        pstats.Stats(profile).sort_stats("cumulative").print_stats(args.top)


if __name__ == "__main__":
    main()
