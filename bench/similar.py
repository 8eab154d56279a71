"""Similar posts: exact against approximate faiss indexes, build time, queries/s and recall@10.

The data stands in for post embeddings in spam waves: `--clusters` gaussian centres on the unit
sphere, each vector a centre plus isotropic noise (cosine to its centre about 0.8), normalised,
fixed seed (`--clusters 0`: pure noise, no structure at all). Queries are fresh vectors from the
same centres. For each size it times, one query at a time (k=10, as the review console asks),
the exact `IndexFlatIP`, HNSW (`IndexHNSWFlat`, inner product, `--hnsw-m` links, a few `--ef`
values; `--ef` alone skips it) and IVF (`IndexIVFFlat`, 4·√N lists, a few `--nprobe` values),
the approximate index `similar.index` uses. Recall@10 is against the exact top 10; "10th
distance" is how much farther the 10th neighbour found lies than the exact 10th (mean, cosine
distance): near 0% a miss was about as near as the post it replaced, far above it the search
ended in another wave. A configuration stops timing after `--max-query-s` seconds (the exact
index at 1M vectors answers a few queries a second); the queries it got through are printed.
It asserts nothing.

    python bench/similar.py --sizes 100000 1000000 --dims 576
"""

from __future__ import annotations

import argparse
import math
import os
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

import faiss
import numpy as np

K = 10
Built = TypeVar("Built")


def parse_args() -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--dims", type=int, default=576)
    parser.add_argument("--clusters", type=int, default=1_000, help="0: unclustered noise")
    parser.add_argument("--queries", type=int, default=1_000)
    parser.add_argument("--hnsw-m", type=int, default=32, help="HNSW links per node")
    parser.add_argument(
        "--ef", type=int, nargs="*", default=[32, 64, 128, 256], help="efSearch; none: no HNSW"
    )
    parser.add_argument("--nprobe", type=int, nargs="*", default=[8, 16, 32], help="none: no IVF")
    parser.add_argument("--max-query-s", type=float, default=60.0, help="per configuration")
    parser.add_argument("--seed", type=int, default=7)
    return parser.parse_args()


def clustered(
    rng: np.random.Generator, centres: np.ndarray, count: int, chunk: int = 100_000
) -> np.ndarray:
    """`count` unit vectors, each a random centre plus noise of norm about 0.75."""
    dims = centres.shape[1]
    out = np.empty((count, dims), dtype=np.float32)
    for start in range(0, count, chunk):
        stop = min(count, start + chunk)
        picks = rng.integers(0, len(centres), stop - start)
        noise = rng.standard_normal((stop - start, dims), dtype=np.float32)
        block = centres[picks] + noise * np.float32(0.75 / math.sqrt(dims))
        out[start:stop] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def unit_centres(rng: np.random.Generator, clusters: int, dims: int) -> np.ndarray:
    """Cluster centres spread on the unit sphere; none (a zero centre) for `--clusters 0`."""
    if clusters == 0:  # pure noise: no structure for an index to use, the hardest case
        return np.zeros((1, dims), dtype=np.float32)
    centres = rng.standard_normal((clusters, dims), dtype=np.float32)
    return centres / np.linalg.norm(centres, axis=1, keepdims=True)


def timed(build: Callable[[], Built]) -> tuple[Built, float]:
    """The built index and the seconds it took."""
    start = time.perf_counter()
    index = build()
    return index, time.perf_counter() - start


def single_queries(index: faiss.Index, queries: np.ndarray, budget_s: float) -> Iterator[tuple]:
    """(position, scores, labels) per query, one `search` call each, until the budget is spent."""
    start = time.perf_counter()
    for position in range(len(queries)):
        scores, labels = index.search(queries[position : position + 1], K)
        yield position, scores[0], labels[0]
        if time.perf_counter() - start > budget_s:
            return


def measure(index: faiss.Index, queries: np.ndarray, truth: tuple, budget_s: float) -> dict:
    """Queries/s (single queries), recall@10 and the 10th distance's excess over the exact one."""
    truth_scores, truth_labels = truth
    hits, done, excess = 0, 0, 0.0
    start = time.perf_counter()
    for position, scores, labels in single_queries(index, queries, budget_s):
        hits += len(set(labels.tolist()) & set(truth_labels[position].tolist()))
        exact_tenth = 1.0 - float(truth_scores[position][-1])
        excess += (1.0 - float(scores[-1])) / exact_tenth - 1.0
        done = position + 1
    elapsed = time.perf_counter() - start
    return {
        "qps": done / elapsed,
        "recall": hits / (done * K),
        "queries": done,
        "excess": excess / done,
    }


def row(name: str, size: int, build_s: float | None, figures: dict) -> None:
    """One printed line of the table."""
    built = f"{build_s:9.1f}" if build_s is not None else f"{'':>9}"
    print(
        f"| {size:>9,} | {name:<22} | {built} | {figures['qps']:9.1f} | "
        f"{1000 / figures['qps']:8.2f} | {figures['recall']:6.3f} | "
        f"{100 * figures['excess']:+6.2f}% | {figures['queries']:>5} |",
        flush=True,
    )


def flat(data: np.ndarray) -> faiss.IndexFlatIP:
    """The exact index."""
    index = faiss.IndexFlatIP(data.shape[1])
    index.add(data)
    return index


def hnsw(data: np.ndarray, links: int) -> faiss.IndexHNSWFlat:
    """HNSW over inner product, faiss' default efConstruction (40)."""
    index = faiss.IndexHNSWFlat(data.shape[1], links, faiss.METRIC_INNER_PRODUCT)
    index.add(data)
    return index


def ivf(data: np.ndarray, rng: np.random.Generator) -> faiss.IndexIVFFlat:
    """IVF with 4·√N lists (at most N/40), trained on a sample of 40 vectors per list."""
    lists = max(1, min(int(4 * math.sqrt(len(data))), len(data) // 40))  # as VectorIndex
    quantizer = faiss.IndexFlatIP(data.shape[1])
    index = faiss.IndexIVFFlat(quantizer, data.shape[1], lists, faiss.METRIC_INNER_PRODUCT)
    sample = data[rng.choice(len(data), min(len(data), 40 * lists), replace=False)]
    index.train(sample)
    index.add(data)
    return index


def bench_size(args: argparse.Namespace, size: int) -> None:
    """Every configuration at one size."""
    rng = np.random.default_rng(args.seed)
    centres = unit_centres(rng, args.clusters, args.dims)
    data, queries = clustered(rng, centres, size), clustered(rng, centres, args.queries)
    exact, build_s = timed(lambda: flat(data))
    truth = exact.search(queries, K)  # batched: BLAS, fast
    row("exact IndexFlatIP", size, build_s, measure(exact, queries, truth, args.max_query_s))
    del exact
    if args.ef:
        graph, build_s = timed(lambda: hnsw(data, args.hnsw_m))
        for number, ef in enumerate(args.ef):
            graph.hnsw.efSearch = ef
            figures = measure(graph, queries, truth, args.max_query_s)
            row(f"HNSW M={args.hnsw_m} ef={ef}", size, None if number else build_s, figures)
        del graph
    if args.nprobe:
        lists, build_s = timed(lambda: ivf(data, rng))
        for number, nprobe in enumerate(args.nprobe):
            lists.nprobe = nprobe
            figures = measure(lists, queries, truth, args.max_query_s)
            name = f"IVF{lists.nlist} nprobe={nprobe}"
            row(name, size, None if number else build_s, figures)


def main() -> None:
    """Print the machine, then one table row per size and configuration."""
    args = parse_args()
    print(
        f"cores {os.cpu_count()}, faiss {faiss.__version__}, omp threads "
        f"{faiss.omp_get_max_threads()}, dims {args.dims}, {args.clusters} clusters, "
        f"{args.queries} queries, k={K}, seed {args.seed}"
    )
    print(
        "| vectors | index | build s | queries/s | ms/query | recall@10 | 10th distance | timed |"
    )
    print("|---:|---|---:|---:|---:|---:|---:|---:|")
    for size in args.sizes:
        bench_size(args, size)


if __name__ == "__main__":
    main()
