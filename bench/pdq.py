"""Benchmark PDQ hashing and the hash-bank index: robustness, false matches, lookup speed.

Prints figures; asserts nothing. Images are generated (1/f "photos", flat graphics, text
screenshots, captioned photos), so the false-match figure says how PDQ separates *these*
pictures, not a measured rate on real traffic.

    python bench/pdq.py            # full run: 1,000 + 10,000 images, a 1,000,000-hash bank
    python bench/pdq.py --quick    # smoke run, a few seconds
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import os
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

# Run as a script, bench/ comes first on sys.path and bench/operators.py would shadow the
# `operators` package: drop bench/ and put the repository first.
_REPO = Path(__file__).resolve().parent.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _REPO / "bench"]
sys.path.insert(0, str(_REPO))

import faiss  # noqa: E402 - after the path fix above
import numpy as np  # noqa: E402
from PIL import Image, ImageDraw, ImageFont  # noqa: E402

from operators.specialists.hashindex import LARGE_INDEX, HashIndex  # noqa: E402
from operators.specialists.pdq import MIN_QUALITY, hamming, pdq_hash  # noqa: E402
from operators.specialists.render import crop_area_5, half_size, jpeg_70  # noqa: E402

THRESHOLD = 31
KINDS = ("photo", "graphic", "text", "captioned")
CAPTION_WORDS = (
    "sale free win click today offer limited cash prize crypto meet dating follow share "
    "breaking news video watch now link bio gift card urgent account verify support team"
)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- generated pictures


def pink_noise(rng: np.random.Generator, height: int, width: int, alpha: float) -> np.ndarray:
    """Noise with a 1/f^alpha amplitude spectrum, like natural photos; mean 0, std 1."""
    fy, fx = np.fft.fftfreq(height)[:, None], np.fft.rfftfreq(width)[None, :]
    frequency = np.hypot(fx, fy)
    frequency[0, 0] = 1.0
    spectrum = rng.normal(size=frequency.shape) + 1j * rng.normal(size=frequency.shape)
    spectrum /= frequency**alpha
    spectrum[0, 0] = 0.0
    noise = np.fft.irfft2(spectrum, s=(height, width))
    return (noise - noise.mean()) / noise.std()


def photo_base(rng: np.random.Generator, size: tuple[int, int]) -> Image.Image:
    tint = rng.uniform(0.5, 1.0, 3)
    scene = np.stack([pink_noise(rng, 96, 128, 1.5) * 40 * t for t in tint], axis=-1)
    scene += np.stack([pink_noise(rng, 96, 128, 2.0) * 20 for _ in range(3)], axis=-1)
    small = Image.fromarray(np.clip(128 + scene, 0, 255).astype(np.uint8))
    pixels = np.asarray(small.resize(size, Image.Resampling.BICUBIC), dtype=np.float32)
    pixels += rng.normal(0, 4, pixels.shape)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def gradient_base(rng: np.random.Generator, size: tuple[int, int]) -> Image.Image:
    width, height = size
    y, x = np.mgrid[0:height, 0:width] / max(size)
    angle = rng.uniform(0, 2 * math.pi)
    ramp = (math.cos(angle) * x + math.sin(angle) * y)[..., None]
    start, end = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    return Image.fromarray(np.clip(start + ramp * (end - start), 0, 255).astype(np.uint8))


def random_colour(rng: np.random.Generator) -> tuple[int, int, int]:
    return tuple(int(c) for c in rng.integers(0, 256, 3))  # type: ignore[return-value]


def draw_shapes(rng: np.random.Generator, image: Image.Image, count: int) -> None:
    width, height = image.size
    draw = ImageDraw.Draw(image)
    for _ in range(count):
        x0, y0 = rng.integers(0, width - width // 8), rng.integers(0, height - height // 8)
        x1 = x0 + rng.integers(width // 16, width // 3)
        y1 = y0 + rng.integers(height // 16, height // 3)
        shape = rng.integers(0, 3)
        if shape == 0:
            draw.ellipse((x0, y0, x1, y1), fill=random_colour(rng))
        elif shape == 1:
            draw.rectangle((x0, y0, x1, y1), fill=random_colour(rng))
        else:
            draw.polygon([(x0, y1), ((x0 + x1) // 2, y0), (x1, y1)], fill=random_colour(rng))


def draw_text(rng: np.random.Generator, image: Image.Image, lines: int, size: int) -> None:
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=size)
    width, height = image.size
    top = int(rng.integers(0, max(1, height // 6)))
    for line in range(lines):
        text = " ".join(rng.choice(CAPTION_WORDS.split(), int(rng.integers(2, 6))))
        x = int(rng.integers(0, width // 5))
        y = top + line * int(size * 1.3)
        draw.text((x, y), text, fill=random_colour(rng), font=font)


def generate(seed: int, size: tuple[int, int]) -> Image.Image:
    """One picture; the kind cycles with the seed so every batch mixes all four."""
    rng = np.random.default_rng(seed)
    kind = KINDS[seed % len(KINDS)]
    scale = size[0] / 512
    if kind == "photo":
        image = photo_base(rng, size)
        draw_shapes(rng, image, int(rng.integers(1, 5)))
    elif kind == "graphic":
        image = gradient_base(rng, size)
        draw_shapes(rng, image, int(rng.integers(4, 12)))
    elif kind == "text":
        image = Image.new("RGB", size, random_colour(rng))
        draw_text(rng, image, int(rng.integers(4, 12)), max(8, int(rng.integers(18, 34) * scale)))
    else:
        image = photo_base(rng, size)
        draw_text(rng, image, int(rng.integers(1, 4)), max(10, int(rng.integers(28, 48) * scale)))
    return image


# ---------------------------------------------------------------- transforms


def crop_sides_5(image: Image.Image) -> Image.Image:
    """5% of the width and of the height cut (2.5% per edge): ~10% of the area."""
    dx, dy = round(image.width * 0.025), round(image.height * 0.025)
    return image.crop((dx, dy, image.width - dx, image.height - dy))


def combined(image: Image.Image) -> Image.Image:
    return jpeg_70(half_size(crop_area_5(image)))


TRANSFORMS: dict[str, Callable[[Image.Image], Image.Image]] = {
    "resize 50%": half_size,
    "JPEG q70": jpeg_70,
    "crop 5% of area": crop_area_5,
    "all three combined": combined,
    "crop 5% per dimension": crop_sides_5,
}


def transform_distances(seed: int) -> tuple[int, list[int]]:
    """Worker: quality of the original and its distance to each transformed copy."""
    image = generate(seed, (512, 384))
    original = pdq_hash(image)
    return original.quality, [
        hamming(original.bits, pdq_hash(t(image)).bits) for t in TRANSFORMS.values()
    ]


def hash_generated(seed: int) -> tuple[bytes, int]:
    """Worker: the hash and quality of one small generated picture."""
    value = pdq_hash(generate(seed, (256, 192)))
    return value.bits, value.quality


# ---------------------------------------------------------------- sections


def robustness(count: int, pool: ProcessPoolExecutor) -> None:
    log(f"robustness: generating and hashing {count} pictures x {len(TRANSFORMS) + 1}")
    started = time.perf_counter()
    results = list(pool.map(transform_distances, range(count), chunksize=16))
    qualities = np.array([quality for quality, _ in results])
    distances = np.array([row for _, row in results])
    usable = qualities >= MIN_QUALITY
    kinds = np.array([KINDS[seed % len(KINDS)] for seed in range(count)])
    print(
        f"\n== Robustness: {count} generated 512x384 pictures ({', '.join(KINDS)}), "
        f"threshold {THRESHOLD} ({time.perf_counter() - started:.1f} s)"
    )
    weak = ", ".join(f"{kind} {int((~usable & (kinds == kind)).sum())}" for kind in KINDS)
    print(
        f"originals with quality < {MIN_QUALITY}, excluded below: {int((~usable).sum())} ({weak})"
    )
    header = "".join(f"{kind:>11}" for kind in KINDS)
    print(f"{'transform':<24}{'matched':>16}{'median':>8}{'p90':>6}{'max':>6}  by kind:{header}")
    for column, name in enumerate(TRANSFORMS):
        d = distances[usable, column]
        shares = "".join(
            f"{np.mean(distances[usable & (kinds == kind), column] <= THRESHOLD):>11.1%}"
            for kind in KINDS
        )
        matched = f"{int((d <= THRESHOLD).sum())}/{d.size} {np.mean(d <= THRESHOLD):.1%}"
        print(
            f"{name:<24}{matched:>16}{np.median(d):>8.0f}{np.percentile(d, 90):>6.0f}"
            f"{d.max():>6}           {shares}"
        )


def false_matches(count: int, pool: ProcessPoolExecutor) -> None:
    log(f"false matches: generating and hashing {count} distinct pictures")
    started = time.perf_counter()
    results = list(pool.map(hash_generated, range(10**6, 10**6 + count), chunksize=64))
    usable = [bits for bits, quality in results if quality >= MIN_QUALITY]
    elapsed = time.perf_counter() - started
    half = len(usable) // 2
    bank, queries = usable[:half], usable[half:]
    hits = [hit for hit in HashIndex(bank).nearest(queries, THRESHOLD) if hit is not None]
    array = np.frombuffer(b"".join(usable), dtype=np.uint8).reshape(-1, 32)
    flat = faiss.IndexBinaryFlat(256)
    flat.add(array)
    lims, _, _ = flat.range_search(array, THRESHOLD + 1)
    others = np.diff(lims) - 1  # each picture finds itself at distance 0
    nearest_other, _ = flat.search(array, 2)
    print(f"\n== False matches: {count} distinct generated 256x192 pictures ({elapsed:.1f} s)")
    print(f"usable (quality >= {MIN_QUALITY}): {len(usable)}")
    print(
        f"index: {len(queries)} queries against a bank of the other {len(bank)}: "
        f"{len(hits)} queries falsely matched within {THRESHOLD}"
    )
    print(
        f"all pairs (exact): {int((others > 0).sum())} of {len(usable)} pictures have another "
        f"within {THRESHOLD}; {int(others.sum()) // 2} pairs of "
        f"{len(usable) * (len(usable) - 1) // 2}"
    )
    quantiles = np.percentile(nearest_other[:, 1], [0, 1, 50])
    print(
        f"distance to the nearest other picture: min {quantiles[0]:.0f}, "
        f"1st percentile {quantiles[1]:.0f}, median {quantiles[2]:.0f}"
    )


def flip_bits(rng: np.random.Generator, rows: np.ndarray, counts: np.ndarray) -> np.ndarray:
    bits = np.unpackbits(rows, axis=1)
    for row, count in zip(bits, counts, strict=True):
        row[rng.choice(256, int(count), replace=False)] ^= 1
    return np.packbits(bits, axis=1)


def rss_mb() -> float:
    """Current resident memory (Linux), to size an index by the growth it causes."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def lookups(size: int, batch: int, sample: int) -> None:
    rng = np.random.default_rng(0)
    log(f"lookups: generating a bank of {size:,} random hashes and {batch:,} queries")
    bank = rng.integers(0, 256, (size, 32), dtype=np.uint8)
    bank_list = [row.tobytes() for row in bank]
    members = rng.choice(size, batch // 2)
    near = flip_bits(rng, bank[members], rng.integers(0, THRESHOLD + 1, batch // 2))
    randoms = rng.integers(0, 256, (batch - batch // 2, 32), dtype=np.uint8)
    order = rng.permutation(batch)  # near-duplicates and random queries interleaved
    queries = [row.tobytes() for row in np.concatenate([near, randoms])[order]]
    is_near = order < batch // 2
    print(
        f"\n== Lookups: HashIndex over {size:,} uniformly random hashes, threshold {THRESHOLD}, "
        f"{os.cpu_count()} CPUs, faiss {faiss.__version__}; queries: half near-duplicates "
        "of bank hashes (0-31 bits flipped), half random"
    )
    sampled = brute_force(bank, queries, sample, rng)
    other = 16 if size >= LARGE_INDEX else 11
    for tables in (None, other):
        # A fresh process per layout, so each one's memory is measured from the same baseline.
        sys.stdout.flush()
        args = (bank_list, queries, is_near, sampled, tables)
        child = multiprocessing.get_context("spawn").Process(target=time_layout, args=args)
        child.start()
        child.join()


def brute_force(
    bank: np.ndarray, queries: list[bytes], sample: int, rng: np.random.Generator
) -> tuple[list[bytes], np.ndarray]:
    """A sample of the queries and their true nearest distances, by exhaustive search."""
    log(f"recall: brute force over {len(bank):,} hashes for {sample} queries")
    chosen = [queries[i] for i in rng.choice(len(queries), sample, replace=False)]
    flat = faiss.IndexBinaryFlat(256)
    flat.add(bank)
    started = time.perf_counter()
    truth, _ = flat.search(np.frombuffer(b"".join(chosen), np.uint8).reshape(-1, 32), 1)
    rate = sample / (time.perf_counter() - started)
    print(f"brute force (IndexBinaryFlat, a linear scan) for comparison: {rate:,.0f} lookups/s")
    return chosen, truth[:, 0]


def time_layout(bank_list, queries, is_near, sampled, tables) -> None:
    before = rss_mb()
    started = time.perf_counter()
    index = HashIndex(bank_list, tables=tables)
    build_s = time.perf_counter() - started
    chosen = "default for this size" if tables is None else "for comparison"
    print(
        f"-- {index.tables} tables x {256 // index.tables} bits ({chosen}): build {build_s:.1f} s, "
        f"memory +{rss_mb() - before:.0f} MB"
    )
    log(f"lookups: timing {len(queries):,} queries on {index.tables} tables")
    context = "   [context: HMA targets 4,000 lookups/s at 10M hashes]"
    for label, chunk in (("one batch", len(queries)), ("batches of 100", 100), ("one by one", 1)):
        timed = queries if chunk > 1 else queries[:2000]
        started = time.perf_counter()
        found = [
            hit
            for i in range(0, len(timed), chunk)
            for hit in index.nearest(timed[i : i + chunk], THRESHOLD)
        ]
        rate = len(timed) / (time.perf_counter() - started)
        matched = sum(hit is not None for hit in found)
        print(
            f"lookups/s, {label:<15} ({len(timed):>6,} queries): {rate:>8,.0f}"
            f"   matched {matched:,}, near-duplicates {int(is_near[: len(timed)].sum()):,}"
            f"{context}"
        )
        context = ""
    recall(index, *sampled)


def recall(index: HashIndex, chosen: list[bytes], truth: np.ndarray) -> None:
    found = index.nearest(chosen, THRESHOLD)
    expected = truth <= THRESHOLD
    agreed = sum(
        1
        for hit, want, dist in zip(found, expected, truth, strict=True)
        if want and hit is not None and hit[1] == dist
    )
    extra = sum(1 for hit, want in zip(found, expected, strict=True) if hit and not want)
    print(
        f"recall vs brute force on {len(chosen)} sampled queries: {agreed}/{int(expected.sum())} "
        f"within {THRESHOLD} found at the true distance, {extra} reported beyond it"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small smoke run")
    args = parser.parse_args()
    sizes = (
        (100, 1_000, 20_000, 2_000, 200)
        if args.quick
        else (1_000, 10_000, 1_000_000, 10_000, 1_000)
    )
    started = time.perf_counter()
    with ProcessPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        robustness(sizes[0], pool)
        false_matches(sizes[1], pool)
    lookups(sizes[2], sizes[3], sizes[4])
    print(f"\ntotal {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
