"""Benchmark CPU preprocessing: images/s per core, from JPEG bytes to collated pixel tensors.

One image's preprocessing is what a replica does before the GPU sees it: decode the bytes
(`ImageLoader.load`), run the model's processor alone on the image (`encode_image`: resize,
tile, rescale, normalize), and collate a batch (`collate_images`). Each process runs one torch
thread and one OpenMP thread. The rate is measured in one process and in `--workers` processes
at once, for four tiling settings: the checkpoint's own (SmolVLM: 512 px tiles after a resize
to a 2048 px edge), no tiling (one tile), a 1024 px edge cap, and one tile from a 512 px edge;
each through the processor and through the exact uint8 path (`fast ...` modes: the same PIL
resizes and crops, uint8 tensors; rescale and normalize happen on the GPU, not counted here).
`fast 512 draft` (not exact, not in the pipeline) decodes the JPEG at a reduced DCT scale first
and reports how far that moves the pixels.

Runs on a bare GPU box (torch, transformers, pillow, numpy only); asserts nothing:

    python bench/preprocess.py                        # SmolVLM-256M twin, all cores
    python bench/preprocess.py --workers 16 --images 32 --json out.json
    python bench/preprocess.py --model HuggingFaceTB/SmolVLM-256M-Instruct
"""

from __future__ import annotations

import os

# Before numpy and torch load: one OpenMP/BLAS thread per process, as the figures assume.
for _name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_name] = "1"

import argparse  # noqa: E402
import atexit  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import multiprocessing  # noqa: E402
import platform  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

# Run as a script, this file's folder would shadow the `operators` package: put the repo first.
_REPO = Path(__file__).resolve().parent.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _REPO / "bench"]
sys.path.insert(0, str(_REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from operators.batching import collate_images, encode_image  # noqa: E402
from operators.fast_pixels import fast_pixels_for  # noqa: E402
from operators.images import ImageLoader  # noqa: E402
from operators.limits import ImageLimits  # noqa: E402
from operators.loading import apply_tiling_overrides  # noqa: E402
from operators.prompts import PromptBook  # noqa: E402
from operators.spec import ModelSpec  # noqa: E402
from operators.specialists.render import smooth_photo  # noqa: E402
from operators.twins import make_twin  # noqa: E402

SMOLVLM = "HuggingFaceTB/SmolVLM-256M-Instruct"
# name -> tiling overrides of ModelSpec
TILINGS: dict[str, dict[str, Any]] = {
    "tiled": {},
    "one tile": {"image_splitting": False},
    "edge 1024": {"max_image_edge": 1024},
    # One tile without the processor's upscale to a 2048 px edge first.
    "1 tile@512": {"image_splitting": False, "max_image_edge": 512},
}
# name -> (tiling overrides, fast_pixels): each tiling through the processor, then through the
# exact uint8 path (`operators.fast_pixels`), whose rescale and normalize run on the GPU instead.
# Pairs side by side, so that a run cut short (`bench/gpu.sh` gives it 60 s) keeps comparisons.
MODES: dict[str, tuple[dict[str, Any], bool]] = {
    mode: (overrides, fast)
    for name, overrides in TILINGS.items()
    for mode, fast in ((name, False), (f"fast {name}", True))
}
# Not exact, not in the pipeline: the JPEG decoded at a reduced DCT scale (PIL `draft`) that still
# covers the 512 px edge, then the fast path. Measured for speed and for how far pixels move.
DRAFT_MODE = "fast 512 draft"
DRAFT_EDGE = 512
MODES[DRAFT_MODE] = (TILINGS["1 tile@512"], True)
# Photo sizes, cycled: mostly 1024x768, plus portrait, 720p, small and large.
SIZES = ((1024, 768), (768, 1024), (1024, 768), (1280, 720), (640, 480), (1024, 768), (1600, 1200))
UNIQUE_IMAGES = 14
TARGET_IMAGES_PER_S = 2000

_WORKER: dict[str, Any] = {}  # per process: images as bytes, a processor per mode


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help=f"hub id or local checkpoint (default: {SMOLVLM} twin)")
    parser.add_argument("--images", type=int, default=16, help="images per process per mode")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--batch", type=int, default=8, help="images per collated batch")
    parser.add_argument("--modes", nargs="+", choices=list(MODES), default=list(MODES))
    parser.add_argument("--json", type=Path, help="also write the figures here")
    return parser.parse_args()


def checkpoint(model: str | None) -> str:
    """The checkpoint to read the processor from; the twin is built in a temporary folder."""
    if model:
        return model
    directory = Path(tempfile.mkdtemp(prefix="vlmod-preprocess-"))
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    return str(make_twin(directory, SMOLVLM))


def photo_jpeg(width: int, height: int, seed: int) -> bytes:
    """A smooth photo-like image (`smooth_photo`), as a quality-85 JPEG."""
    buffer = io.BytesIO()
    smooth_photo(width, height, seed).save(buffer, "JPEG", quality=85)
    return buffer.getvalue()


class ProcessorOnly:
    """What `encode_image` reads of a loaded model: the processor, placeholder and fast path."""

    def __init__(self, name_or_path: str, overrides: dict[str, Any], fast: bool) -> None:
        from transformers import AutoConfig, AutoProcessor

        self.family = str(AutoConfig.from_pretrained(name_or_path).model_type)

        # The PIL image processor, as `operators.loading` loads it (torchvision's is the default
        # where torchvision is installed, and has no exact uint8 path).
        self.processor = AutoProcessor.from_pretrained(name_or_path, use_fast=False)
        apply_tiling_overrides(
            self.processor.image_processor, ModelSpec(name_or_path=name_or_path, **overrides)
        )
        self.prompts = PromptBook(self.processor, None)
        self.fast_pixels = fast_pixels_for(self.processor) if fast else None
        if fast and self.fast_pixels is None:
            raise SystemExit(f"no exact uint8 path for {type(self.processor).__name__}")


def init_worker(name_or_path: str, images: list[bytes], modes: list[str], barrier: Any) -> None:
    """Load one processor per mode measured, warm each up, then wait for every other worker."""
    torch.set_num_threads(1)
    _WORKER["images"] = images
    _WORKER["loader"] = ImageLoader(ImageLimits())
    _WORKER["vlms"] = {mode: ProcessorOnly(name_or_path, *MODES[mode]) for mode in modes}
    for mode in modes:
        preprocess(mode, [0])
    if barrier is not None:
        barrier.wait()


def preprocess(mode: str, indices: list[int]) -> dict[str, float]:
    """Decode, encode and collate the given images; seconds per stage and tiles."""
    images, loader, vlm = _WORKER["images"], _WORKER["loader"], _WORKER["vlms"][mode]
    started = time.perf_counter()
    if mode == DRAFT_MODE:
        decoded = [draft_decode(images[index % len(images)]) for index in indices]
    else:
        decoded = [loader.load(images[index % len(images)]).image for index in indices]
    after_decode = time.perf_counter()
    encodings = [encode_image(vlm, image) for image in decoded]
    after_encode = time.perf_counter()
    pixels = collate_images(encodings)
    done = time.perf_counter()
    return {
        "decode_s": after_decode - started,
        "encode_s": after_encode - after_decode,
        "collate_s": done - after_encode,
        "tiles": float(sum(int(e.pixel_inputs["pixel_values"].shape[1]) for e in encodings)),
        "bytes": float(sum(t.numel() * t.element_size() for t in pixels.values())),
    }


def draft_decode(data: bytes) -> Image.Image:
    """The JPEG decoded at the smallest DCT scale (1/2, 1/4, 1/8) still covering DRAFT_EDGE."""
    image = Image.open(io.BytesIO(data))
    scale = DRAFT_EDGE / max(image.size)
    image.draft("RGB", (math.ceil(image.width * scale), math.ceil(image.height * scale)))
    return image.convert("RGB")


def draft_change(images: list[bytes]) -> dict[str, float]:
    """How far draft decoding moves the model's uint8 pixels (1 tile@512), in levels of 255."""
    loader, vlm = _WORKER["loader"], _WORKER["vlms"][DRAFT_MODE]
    diffs = []
    for data in images:
        exact, _ = vlm.fast_pixels.layout.tiles(loader.load(data).image)
        drafted, _ = vlm.fast_pixels.layout.tiles(draft_decode(data))
        diffs.append(np.abs(exact.astype(np.int16) - drafted.astype(np.int16)).ravel())
    diff = np.concatenate(diffs)
    return {
        "mean_abs_levels": float(diff.mean()),
        "p99_abs_levels": float(np.percentile(diff, 99)),
        "max_abs_levels": float(diff.max()),
        "share_over_8_levels": float((diff > 8).mean()),
    }


def _task(job: tuple[str, list[int]]) -> dict[str, float]:
    return preprocess(*job)


def _ready(_: int) -> None:
    return None


def batches(count: int, size: int) -> list[list[int]]:
    """`count` image indices in batches of `size`."""
    return [list(range(start, min(count, start + size))) for start in range(0, count, size)]


def one_process(mode: str, count: int, batch: int) -> dict[str, float]:
    """Images/s of this process alone, and milliseconds per image by stage."""
    stages = [preprocess(mode, indices) for indices in batches(count, batch)]
    total = {key: sum(stage[key] for stage in stages) for key in stages[0]}
    seconds = total["decode_s"] + total["encode_s"] + total["collate_s"]
    return {
        "images_per_s": count / seconds,
        "decode_ms": 1000 * total["decode_s"] / count,
        "processor_ms": 1000 * total["encode_s"] / count,
        "collate_ms": 1000 * total["collate_s"] / count,
        "tiles_per_image": total["tiles"] / count,
        "pixel_mb_per_image": total["bytes"] / count / 1e6,
    }


def many_processes(pool: Any, mode: str, count: int, batch: int) -> float:
    """Images/s of the whole pool, every worker busy until the last batch."""
    jobs = [(mode, indices) for indices in batches(count, batch)]
    started = time.perf_counter()
    pool.map(_task, jobs, chunksize=1)
    return count / (time.perf_counter() - started)


def machine() -> dict[str, object]:
    """The CPU model and how many cores this process may use."""
    model = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        names = [
            line.split(":", 1)[1].strip()
            for line in cpuinfo.read_text().splitlines()
            if line.startswith("model name")
        ]
        model = names[0] if names else model
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cpu": model, "cores": os.cpu_count(), "usable_cores": usable}


def measure(
    args: argparse.Namespace, name_or_path: str, images: list[bytes], figures: dict[str, Any]
) -> None:
    """Each mode in this process, then in a pool of `--workers` processes; rows as they come."""
    init_worker(name_or_path, images, args.modes, None)
    rows: dict[str, Any] = {mode: one_process(mode, args.images, args.batch) for mode in args.modes}
    figures["modes"] = {}
    context = multiprocessing.get_context("spawn")  # no fork of a process that loaded torch
    barrier = context.Barrier(args.workers)
    started = time.perf_counter()
    with context.Pool(
        args.workers, init_worker, (name_or_path, images, args.modes, barrier)
    ) as pool:
        pool.map(_ready, [0])  # returns once every worker is past the barrier
        figures["pool_startup_s"] = time.perf_counter() - started
        print_header(figures)
        for mode in args.modes:
            rate = many_processes(pool, mode, args.images * args.workers, args.batch)
            row = figures["modes"][mode] = rows[mode]
            row.update(
                pool_images_per_s=rate,
                per_core_images_per_s=rate / args.workers,
                pool_over_one=rate / row["images_per_s"],
                cores_for_target=TARGET_IMAGES_PER_S / (rate / args.workers),
            )
            print_row(mode, row)
            write_json(args.json, figures)  # a run cut short keeps the modes it finished


def print_header(figures: dict[str, Any]) -> None:
    """The machine, the settings and the table's header."""
    info, workers = figures["machine"], figures["workers"]
    print(f"machine: {info['cpu']}, {info['cores']} cores ({info['usable_cores']} usable)")
    print(
        f"model: {figures['model']}; {figures['images']} images per process per mode, "
        f"batches of {figures['batch']}; pool of {workers} started in "
        f"{figures['pool_startup_s']:.1f} s"
    )
    print(
        f"{'mode':15s} {'tiles':>5s} {'MB':>5s} {'decode':>7s} {'encode':>7s} "
        f"{'collate':>7s} {'1 proc':>8s} {f'{workers} procs':>9s} {'per core':>9s} "
        f"{'scaling':>7s} {'cores for ' + str(TARGET_IMAGES_PER_S):>15s}"
    )
    print(" " * 16 + "(per image, ms: decode / encode / collate; rates in images/s)", flush=True)


def print_row(mode: str, row: dict[str, float]) -> None:
    """One mode's figures."""
    print(
        f"{mode:15s} {row['tiles_per_image']:5.1f} {row['pixel_mb_per_image']:5.1f} "
        f"{row['decode_ms']:7.1f} {row['processor_ms']:7.1f} {row['collate_ms']:7.1f} "
        f"{row['images_per_s']:8.1f} {row['pool_images_per_s']:9.1f} "
        f"{row['per_core_images_per_s']:9.1f} {row['pool_over_one']:6.2f}x "
        f"{row['cores_for_target']:15.0f}",
        flush=True,
    )


def write_json(path: Path | None, figures: dict[str, Any]) -> None:
    """The figures so far, when `--json` asks for them."""
    if path is not None:
        path.write_text(json.dumps(figures, indent=2))


def main() -> None:
    args = parse_args()
    torch.set_num_threads(1)
    started = time.perf_counter()
    name_or_path = checkpoint(args.model)
    figures: dict[str, Any] = {
        "machine": machine(),
        "model": args.model or f"{SMOLVLM} twin (real processor settings)",
        "images": args.images,
        "batch": args.batch,
        "workers": args.workers,
        "sizes": [f"{w}x{h}" for w, h in SIZES],
        "torch": torch.__version__,
    }
    images = [photo_jpeg(*SIZES[seed % len(SIZES)], seed) for seed in range(UNIQUE_IMAGES)]
    measure(args, name_or_path, images, figures)
    if DRAFT_MODE in args.modes:
        change = figures["draft_change"] = draft_change(images)
        print(
            f"{DRAFT_MODE} vs exact pixels: mean |diff| {change['mean_abs_levels']:.2f} levels "
            f"of 255, p99 {change['p99_abs_levels']:.0f}, max {change['max_abs_levels']:.0f}, "
            f"{100 * change['share_over_8_levels']:.2f}% over 8 levels"
        )
    figures["wall_s"] = time.perf_counter() - started
    print(f"wall time {figures['wall_s']:.1f} s")
    write_json(args.json, figures)


if __name__ == "__main__":
    main()
