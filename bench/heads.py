"""The learning curve of a head: held-out AUROC against the number of labelled posts.

Posts are drawn with a known truth (`warm_or_cool_shape`): an image holding a disc or a square,
at a random place and size on a noisy background, whose colour leans warm (positive: more red
than blue) or cool (negative), with a caption that says nothing about which. The tiny
random-weight SmolVLM (`tiny:smolvlm`, or `--model`) embeds every post once (its post embedding:
text and image together); for each training size and seed a head is trained on that many posts
(`heads.train_head`, half of each label) and scored on 400 posts it never saw.

    python bench/heads.py --sizes 20 50 100 200 500 --seeds 5
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from contracts.vlm_signals import POST_EMBEDDING
from heads import EmbeddingRef, Examples, train_head
from heads.metrics import auroc
from operators.images import ImageLoader
from operators.jobs import PostJob
from operators.loading import load_vlm
from operators.specialists.render import warm_or_cool_shape
from operators.tasks import VlmOperator
from pipelines.config import PipelineConfig
from pipelines.wiring import model_spec

HELD_OUT = 400
CAPTIONS = ("look at this", "new post", "what do you think?", "found this today")


def drawn(positive: bool, rng: np.random.Generator) -> bytes:
    """A warm (positive) or cool shape as PNG bytes (`warm_or_cool_shape`)."""
    out = io.BytesIO()
    warm_or_cool_shape(positive, rng).save(out, "PNG")
    return out.getvalue()


def embed(model: str, count: int, seed: int) -> tuple[np.ndarray, np.ndarray, float]:
    """`count` drawn posts' embeddings and labels, and the posts embedded a second."""
    config = PipelineConfig.model_validate({"model": {"name_or_path": model}})
    operator = VlmOperator(load_vlm(model_spec(config)))
    loader = ImageLoader(config.images)
    rng = np.random.default_rng(seed)
    labels = np.array([n % 2 for n in range(count)])
    vectors = []
    started = time.perf_counter()
    for start in range(0, count, 32):
        jobs = [
            PostJob(
                (loader.load(drawn(bool(label), rng)),),
                CAPTIONS[int(rng.integers(len(CAPTIONS)))],
                (POST_EMBEDDING,),
            )
            for label in labels[start : start + 32]
        ]
        vectors += [result.values[POST_EMBEDDING] for result in operator.run_posts(jobs)]
    return np.array(vectors), labels, count / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny:smolvlm")
    parser.add_argument("--sizes", type=int, nargs="+", default=[20, 50, 100, 200, 500])
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args()
    pool = max(args.sizes) * 2
    vectors, labels, rate = embed(args.model, pool + HELD_OUT, seed=0)
    print(f"embedded {len(labels)} posts with {args.model} at {rate:.1f} posts/s")
    test_x, test_y = vectors[pool:], labels[pool:]
    ref = EmbeddingRef(model=args.model, dim=vectors.shape[1])
    print(f"{'labels':>6}  {'held-out AUROC (mean ± sd over seeds)':<38} per seed")
    for size in args.sizes:
        scores = []
        for seed in range(args.seeds):
            rng = np.random.default_rng(seed)
            picked = np.r_[
                rng.choice(np.flatnonzero(labels[:pool] == 1), size // 2, replace=False),
                rng.choice(np.flatnonzero(labels[:pool] == 0), size - size // 2, replace=False),
            ]
            head = train_head("curve", Examples(vectors[picked], labels[picked]), ref, seed=seed)
            found = auroc([head.score(row) for row in test_x.tolist()], test_y)
            scores.append(float(found or 0.0))
        each = " ".join(f"{s:.3f}" for s in scores)
        print(f"{size:>6}  {np.mean(scores):.3f} ± {np.std(scores):.3f}{'':<23} {each}")


if __name__ == "__main__":
    main()
