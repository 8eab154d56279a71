"""Per model family: the shared-prefix engine against the plain engine, posts/s, on the twins.

For every twinnable VLM checkpoint (`operators.twins.VLM_TWINS`, or `--like ID ...`) it builds the
twin, runs the load-time check (which engine the family is served on and the largest
shared-vs-plain difference over the probes), then times the same posts (each with one image,
two post-level and two image-level tasks, `--text-words` of text) through both engines. It
prints one row per checkpoint and asserts nothing.

    python bench/families.py                      # every twin, CPU
    python bench/families.py --like google/gemma-3-4b-it --posts 8 --device cuda
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from operators.jobs import PostJob
from operators.loading import load_vlm
from operators.selfcheck import PROBE_TASKS, _probe_image, check_engine, with_engine
from operators.spec import ModelSpec
from operators.tasks import VlmOperator
from operators.twins import VLM_TWINS, make_twin


def parse_args() -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--like", nargs="*", default=sorted(VLM_TWINS), help="checkpoint ids")
    parser.add_argument("--posts", type=int, default=8, help="posts per timed run")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs; the best counts")
    parser.add_argument("--text-words", type=int, default=40)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    return parser.parse_args()


def bench_posts(count: int, words: int) -> list[PostJob]:
    """`count` posts, each one 640x480 photo-like image, text and the probe tasks."""
    text = " ".join(["selling my bike cheap"] * (words // 4))
    return [
        PostJob((_probe_image(640, 480, seed=100 + n),), text, PROBE_TASKS) for n in range(count)
    ]


def posts_per_second(operator: VlmOperator, jobs: list[PostJob], repeats: int) -> float:
    """The best of `repeats` runs over `jobs`, as posts per second."""
    operator.run_posts(jobs[:1])  # warm-up
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        operator.run_posts(jobs)
        best = min(best, time.perf_counter() - started)
    return len(jobs) / best


def measure(checkpoint: str, args: argparse.Namespace, root: Path) -> dict[str, object]:
    """One checkpoint's row."""
    directory = make_twin(root / checkpoint.replace("/", "__"), checkpoint)
    vlm = load_vlm(ModelSpec(name_or_path=str(directory), device=args.device, max_new_tokens=8))
    started = time.perf_counter()
    check = check_engine(vlm)
    check_s = time.perf_counter() - started
    jobs = bench_posts(args.posts, args.text_words)
    shared = posts_per_second(VlmOperator(vlm), jobs, args.repeats)
    plain = posts_per_second(VlmOperator(with_engine(vlm, "plain")), jobs, args.repeats)
    return {
        "checkpoint": checkpoint,
        "family": vlm.family,
        "served_on": check.engine,
        "max_difference": check.max_difference,
        "check_s": round(check_s, 2),
        "shared_posts_s": round(shared, 2),
        "plain_posts_s": round(plain, 2),
        "shared_over_plain": round(shared / plain, 2),
    }


def main() -> None:
    """Measure every asked checkpoint and print a table."""
    args = parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as root:
        for checkpoint in args.like:
            try:
                rows.append(measure(checkpoint, args, Path(root)))
            except Exception as exc:  # a family that fails is a figure too
                rows.append({"checkpoint": checkpoint, "error": f"{type(exc).__name__}: {exc}"})
            print(json.dumps(rows[-1]), flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
