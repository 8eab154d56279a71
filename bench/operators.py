"""Benchmark the VLM operators: batched vs naive, cost per extra question, cache hit vs miss.

The post-level section asks 1 and then 4 questions of whole posts (text + 2 images in one
prompt) and reports what each extra question costs as a share of the first.

Runs on a bare GPU box (torch, transformers, pillow only):

    python bench/operators.py                               # tiny SmolVLM, CPU or GPU
    python bench/operators.py --shape smolvlm-256m --device cuda --batch 64
    python bench/operators.py --model HuggingFaceTB/SmolVLM-256M-Instruct --dtype bfloat16
"""

from __future__ import annotations

import argparse
import atexit
import io
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

# Run as a script, this file's folder would shadow the `operators` package: put the repo first.
_REPO = Path(__file__).resolve().parent.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _REPO / "bench"]
sys.path.insert(0, str(_REPO))

import numpy as np  # noqa: E402 - after the path fix above
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from operators.cache import SignalCache  # noqa: E402
from operators.forward import yes_probability  # noqa: E402
from operators.images import ImageLoader, LoadedImage  # noqa: E402
from operators.jobs import About, PostJob, TaskKind, VlmTask  # noqa: E402
from operators.loading import Vlm, load_vlm  # noqa: E402
from operators.spec import ModelSpec  # noqa: E402
from operators.tasks import ImageJob, VlmOperator  # noqa: E402
from operators.tiny import ensure_tiny, make_tiny  # noqa: E402
from operators.work import image_task_text  # noqa: E402

QUESTIONS = {
    "weapon": "Is there a weapon in this image?",
    "blood": "Is there blood in this image?",
    "person": "Is this a photo of a person?",
    "text": "Does the image contain text?",
    "minor": "Is there a child in this image?",
    "drugs": "Are there drugs in this image?",
    "flag": "Is there a flag in this image?",
    "car": "Is there a car in this image?",
}
LABELS = {"violence": "violence", "sexual": "nudity", "hate": "hate symbols", "spam": "spam"}
POST_QUESTIONS = (
    "Does this post ask the buyer to pay or talk outside the platform?",
    "Does this post threaten anyone?",
    "Does this post sell drugs or weapons?",
    "Does the text contradict what the images show?",
)
POST_TEXT = (
    "Selling my old road bike, barely used, new tyres and a spare chain. Pick up in town only. "
    "Message me on the other app and pay there, it is quicker. No returns, no lowballers."
)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="hub id or local checkpoint (default: tiny SmolVLM)")
    parser.add_argument("--shape", choices=["tiny", "smolvlm-256m"], default="tiny")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--batch", type=int, default=16, help="posts per batch")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--image-size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--naive-posts", type=int, default=None, help="posts in the naive loop")
    parser.add_argument("--attn", default=None, help="attn_implementation, e.g. sdpa")
    parser.add_argument("--engine", choices=["eager", "static"], default="eager")
    parser.add_argument("--compile", action="store_true", help="compile the static steps")
    parser.add_argument(
        "--skip", default="", help="comma-separated sections to leave out: full, posts, cache"
    )
    parser.add_argument("--redis-url", help="measure the cache on this Redis instead of a dict")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    return parser.parse_args()


def checkpoint(args: argparse.Namespace) -> str:
    if args.model:
        return str(args.model)
    if args.shape == "tiny":
        return str(ensure_tiny("smolvlm"))
    directory = Path(tempfile.mkdtemp(prefix="vlmod-smolvlm-256m-"))
    atexit.register(shutil.rmtree, directory, ignore_errors=True)  # ~1 GB of random weights
    return str(make_tiny(directory, arch="smolvlm", shape=args.shape))


def synthetic_images(count: int, size: int) -> list[LoadedImage]:
    loader = ImageLoader()
    images = []
    for seed in range(count):
        pixels = np.random.default_rng(seed).integers(0, 255, (size, size, 3), dtype=np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, "JPEG", quality=85)
        images.append(loader.load(buffer.getvalue()))
    return images


def timed(fn: Callable[[], object], repeats: int, device: str) -> float:
    """Best wall time of `repeats` runs after one warm-up."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        started = time.perf_counter()
        fn()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - started)
    return best


def full_workload(images: list[LoadedImage]) -> list[ImageJob]:
    four = dict(list(QUESTIONS.items())[:4])
    return [ImageJob(image, labels=LABELS, questions=four, describe=True) for image in images]


def naive_post(vlm: Vlm, job: ImageJob) -> None:
    """The baseline: the whole prompt with the image, one forward per question, one generate."""
    for task in job.as_post().tasks:
        text = vlm.layout.full_text(image_task_text(vlm, task))
        inputs = vlm.processor(text=[text], images=[job.image.image], return_tensors="pt").to(
            vlm.device
        )
        if "pixel_values" in inputs:
            inputs["pixel_values"] = inputs["pixel_values"].to(vlm.model.dtype)
        with torch.inference_mode():
            if task.kind is TaskKind.DESCRIBE:
                vlm.model.generate(
                    **inputs, max_new_tokens=vlm.spec.max_new_tokens, do_sample=False
                )
            else:
                logits = vlm.model(**inputs).logits[:, -1].float()
                yes_probability(logits, vlm.yes_ids, vlm.no_ids).item()


def main() -> None:
    args = parse_args()
    spec = ModelSpec(
        name_or_path=checkpoint(args),
        dtype=args.dtype,
        device=args.device,
        attn_implementation=args.attn,
        max_new_tokens=args.max_new_tokens,
        engine=args.engine,
        compile=args.compile,
    )
    vlm = load_vlm(spec)
    device = str(vlm.device)
    images = synthetic_images(args.batch, args.image_size)
    operator = VlmOperator(vlm)
    figures: dict[str, object] = {
        "machine": machine(device),
        "model": spec.name_or_path,
        "shape": args.shape,
        "dtype": str(vlm.model.dtype),
        "batch": args.batch,
        "max_new_tokens": args.max_new_tokens,
        "engine": args.engine + (" + compile" if args.compile else ""),
    }
    skip = set(filter(None, args.skip.split(",")))
    naive_count = args.naive_posts or min(args.batch, 8)
    jobs = full_workload(images)
    if "full" not in skip:
        batched_s = timed(lambda: operator.run(jobs), args.repeats, device)
        naive_s = timed(lambda: [naive_post(vlm, job) for job in jobs[:naive_count]], 1, device)
        figures["batched_posts_per_s"] = args.batch / batched_s
        figures["naive_posts_per_s"] = naive_count / naive_s
        figures["batched_over_naive"] = args.batch / batched_s / (naive_count / naive_s)
    figures.update(question_costs(operator, images, args.repeats, device))
    figures.update(naive_one_question(vlm, images[:naive_count], device))
    figures["one_question_over_naive"] = (
        figures["one_question_posts_per_s"] / figures["naive_one_question_posts_per_s"]
    )
    figures.update(caption_rate(operator, images, args.repeats, device))
    if "posts" not in skip:
        pairs = synthetic_images(2 * args.batch, args.image_size)
        figures.update(post_question_costs(operator, pairs, args.repeats, device))
    if "cache" not in skip:
        figures.update(cache_costs(vlm, jobs, args.redis_url))
    report(figures)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


def naive_one_question(vlm: Vlm, images: list[LoadedImage], device: str) -> dict[str, object]:
    """The per-post loop for one question: the processor and one full forward per post."""
    job = [ImageJob(image, questions={"weapon": QUESTIONS["weapon"]}) for image in images]
    seconds = timed(lambda: [naive_post(vlm, one) for one in job], 1, device)
    return {"naive_one_question_posts_per_s": len(images) / seconds}


def caption_rate(
    operator: VlmOperator, images: list[LoadedImage], repeats: int, device: str
) -> dict[str, object]:
    """Posts/s for a caption alone (greedy, up to `max_new_tokens` tokens), batched."""
    jobs = [ImageJob(image, describe=True) for image in images]
    first = _once(lambda: operator.run(jobs))
    seconds = timed(lambda: operator.run(jobs), repeats, device)
    return {"caption_posts_per_s": len(images) / seconds, "caption_first_batch_s": first}


def question_costs(
    operator: VlmOperator, images: list[LoadedImage], repeats: int, device: str
) -> dict[str, object]:
    """Batch time for 1, 2, 4, 8 questions; each extra question as a fraction of the first."""
    times = {}
    for count in (1, 2, 4, 8):
        questions = dict(list(QUESTIONS.items())[:count])
        jobs = [ImageJob(image, questions=questions) for image in images]
        times[count] = timed(lambda jobs=jobs: operator.run(jobs), repeats, device)
    one = times[1]
    extra = {k: (times[k] - one) / (k - 1) / one for k in (2, 4, 8)}
    return {
        "one_question_posts_per_s": len(images) / one,
        "four_questions_posts_per_s": len(images) / times[4],
        "extra_question_cost_vs_first": extra,
    }


def post_question_costs(
    operator: VlmOperator, images: list[LoadedImage], repeats: int, device: str
) -> dict[str, object]:
    """Posts of text + 2 images: batch time for 1 and 4 post-level questions."""
    times = {}
    for count in (1, 4):
        tasks = tuple(VlmTask(TaskKind.QUESTION, q, About.POST) for q in POST_QUESTIONS[:count])
        posts = [
            PostJob((images[i], images[i + 1]), POST_TEXT, tasks) for i in range(0, len(images), 2)
        ]
        times[count] = timed(lambda posts=posts: operator.run_posts(posts), repeats, device)
    posts_count = len(images) // 2
    return {
        "post_one_question_posts_per_s": posts_count / times[1],
        "post_four_questions_posts_per_s": posts_count / times[4],
        "post_extra_question_cost_vs_first": (times[4] - times[1]) / 3 / times[1],
    }


def cache_costs(vlm: Vlm, jobs: list[ImageJob], redis_url: str | None) -> dict[str, object]:
    """One miss (model + write-back) against one full hit, on a fresh cache."""
    cache = (
        SignalCache(redis_url, namespace=f"bench-{time.time_ns()}")
        if redis_url
        else (SignalCache.in_memory())
    )
    operator = VlmOperator(vlm, cache)
    started = time.perf_counter()
    operator.run(jobs)
    miss_s = time.perf_counter() - started
    hit_s = min(_once(lambda: operator.run(jobs)) for _ in range(5))
    return {
        "cache": "redis" if redis_url else "in-process dict",
        "cache_miss_ms_per_post": 1000 * miss_s / len(jobs),
        "cache_hit_ms_per_post": 1000 * hit_s / len(jobs),
        "cache_hit_over_miss": hit_s / miss_s,
        "cache_errors": cache.errors,
    }


def _once(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def machine(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    return f"CPU {platform.processor() or platform.machine()}, {os.cpu_count()} cores"


def report(figures: dict[str, object]) -> None:
    for key, value in figures.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k}: {v:.3f}" for k, v in value.items())
        elif isinstance(value, float):
            value = f"{value:.3f}"
        print(f"{key:32s} {value}")


if __name__ == "__main__":
    main()
