"""`OcrReader`: the text printed in an image, line by line, with boxes and confidences.

PP-OCRv4 detection, orientation and recognition models on onnxruntime, through the
`rapidocr-onnxruntime` package, whose wheel ships the weights: nothing is downloaded. The
package is the optional extra `specialists`; it is imported when the first reader is built,
never when this module is imported, and its models load once per process.

The image is sized here, not by rapidocr, whose own sizing fails on long strips: it rounds a
20,000 x 60 px banner down to zero rows and raises, and it pads and enlarges a blank 1,600 x 5
strip into a 9,600 x 2,400 detector input (43 s and 3.3 GB on one core). `working_size` keeps
every read inside `max_side` and `max_pixels` instead, and detection runs at that size. Encoded
images are decoded straight to it (`decode_reduced`): a 6,000 x 6,000 JPEG is never held at
full size.

>>> from operators.specialists.render import render_text_image
>>> reader = OcrReader()  # doctest: +SKIP
>>> reader.read(render_text_image("DM me on Telegram")).text  # doctest: +SKIP
'DM me on Telegram'
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from operators.exceptions import InferenceError, ModelLoadError, error_text
from operators.images import ReducedImage, decode_reduced, to_rgb
from operators.limits import ImageLimits
from operators.specialists.onnx_device import (
    Device,
    DeviceUnavailable,
    check_session_device,
    session_providers,
)
from operators.specialists.settings import OcrSettings
from operators.specialists.stoppable import CallStopped, make_stoppable, pooled_session, time_limit

INSTALL_HINT = "pip install 'vlm-moderation[specialists]'"
DETECTOR_STRIDE = 32  # the detector's input sides must be multiples of this
MIN_BOX_SIDE = 4  # px; rapidocr drops boxes of 3 px or less, and so do we after clipping
# Line crops lower than this are enlarged bicubically before recognition. Left to rapidocr's
# bilinear resize to 48 px, small glyphs blur until the gaps between words vanish: on rendered
# 14-24 px text that dropped a space in about half the lines.
MIN_LINE_HEIGHT = 64

Point = tuple[float, float]
Quad = tuple[Point, Point, Point, Point]


class OcrUnavailable(ModelLoadError):
    """The OCR package or its models are missing; the reason names the extra to install."""


class OcrFailed(InferenceError):
    """The OCR models failed on this image."""


@dataclass(frozen=True)
class OcrBox:
    """One line of text: what it says, how sure the model is (0-1], where it is.

    `box` holds four (x, y) corners, clockwise from top-left, in the original image's pixels.
    """

    text: str
    confidence: float
    box: Quad


@dataclass(frozen=True)
class OcrResult:
    """What an image says: `text` is its lines top to bottom, joined by newlines.

    Boxes on one line are joined left to right by a space. `downscaled` is the factor the image
    was scaled by before reading (1.0: read at full size). `cut` says the time budget stopped the
    read early, and `cut_reason` how far it got; `over_budget` says the read took longer than
    the budget, cut or not.
    """

    text: str
    boxes: tuple[OcrBox, ...]
    downscaled: float
    elapsed_ms: float
    over_budget: bool = False
    cut: bool = False
    cut_reason: str | None = None


def working_size(width: int, height: int, settings: OcrSettings) -> tuple[tuple[int, int], float]:
    """The (width, height) an image is read at, and the scale: within both limits, >= 1 px."""
    scale = min(
        1.0,
        settings.max_side / max(width, height),
        math.sqrt(settings.max_pixels / (width * height)),
    )
    return (max(1, round(width * scale)), max(1, round(height * scale))), scale


def reading_order(quads: Sequence[Quad]) -> list[list[int]]:
    """Indices of `quads` grouped into lines, top to bottom, each line left to right.

    A box joins the line above when its vertical centre lies within that line's first box.
    """
    spans = [(min(y for _, y in q), max(y for _, y in q), min(x for x, _ in q)) for q in quads]
    lines: list[list[int]] = []
    for index in sorted(range(len(quads)), key=lambda i: spans[i][0] + spans[i][1]):
        top, bottom, _ = spans[lines[-1][0]] if lines else (0.0, -1.0, 0.0)
        if top <= (spans[index][0] + spans[index][1]) / 2 <= bottom:
            lines[-1].append(index)
        else:
            lines.append([index])
    return [sorted(line, key=lambda i: spans[i][2]) for line in lines]


class OcrReader:
    """Reads images under one `OcrSettings`; share one per process, across threads too.

    The time budget covers the whole read, decoding included. Each model call runs under
    what is left of it and is stopped when that runs out (`stoppable.time_limit`), so a read
    ends within about one model layer (tens of ms) of its budget, plus decoding if decoding
    alone spent it. Detection is cut whole; recognition in batches of `lines_per_batch`
    lines, and a cut read keeps the lines it finished, which are the top ones.
    """

    def __init__(self, settings: OcrSettings | None = None) -> None:
        self.settings = settings or OcrSettings()
        self._engine = shared_engine(self.settings.threads, self.settings.device)

    def read_bytes(
        self, data: bytes, limits: ImageLimits, budget_ms: float | None = None
    ) -> OcrResult:
        """Decode `data` within `limits` at the size it is read at, then read it.

        Raises `ImageTooLarge`/`ImageDecodeError`. `budget_ms` shortens the settings' budget
        for this read (what is left of a post's budget).
        """
        clock = self._clock(budget_ms)
        decoded = decode_reduced(data, limits, self._working_size)
        return self._read(decoded.image, decoded.original_size, clock)

    def read_decoded(self, decoded: ReducedImage, budget_ms: float | None = None) -> OcrResult:
        """Read an image decoded at (at least) its working size; the budget covers the read."""
        return self._read(decoded.image, decoded.original_size, self._clock(budget_ms))

    def read(self, image: Image.Image, budget_ms: float | None = None) -> OcrResult:
        """The text in `image`, any mode or size; raises `OcrFailed` if the models fail."""
        return self._read(image, image.size, self._clock(budget_ms))

    def _clock(self, budget_ms: float | None) -> _Clock:
        """A clock started now on the settings' budget, or on `budget_ms` if that is shorter."""
        if budget_ms is None or budget_ms >= self.settings.time_budget_ms:
            return _Clock(time.perf_counter(), self.settings.time_budget_ms)
        return _Clock(time.perf_counter(), budget_ms, "left of the post's budget")

    def _working_size(self, width: int, height: int) -> tuple[int, int]:
        """The size an image of `width` x `height` is read at."""
        return working_size(width, height, self.settings)[0]

    def _read(self, image: Image.Image, original: tuple[int, int], clock: _Clock) -> OcrResult:
        """Size, detect, then recognise line batches while the budget lasts.

        `image` is the whole picture, at its `original` size or already reduced from it.
        """
        if image.width == 0 or image.height == 0:
            return _result([], original, (1, 1), 1.0, clock)
        size, scale = working_size(*original, self.settings)
        pixels = _bgr(to_rgb(image), size)
        try:
            found = self._detect(pixels, clock)
        except CallStopped:
            found = None
        if found is None or clock.spent():
            cut = f"text detection alone spent the {clock.described()}; no line read"
            return _result([], original, size, scale, clock, cut)
        quads = [found[index] for line in reading_order(found) for index in line]
        boxes, cut_reason = self._recognise(pixels, quads, clock)
        return _result(boxes, original, size, scale, clock, cut_reason)

    def _detect(self, pixels: np.ndarray, clock: _Clock) -> list[Quad]:
        """Line boxes in `pixels` (BGR), in its coordinates, degenerate ones dropped."""
        height, width = pixels.shape[:2]
        with time_limit(clock.remaining_s()):
            found, _ = _guarded(self._engine.text_det, _pad_to_stride(pixels))
        quads = [_clip(quad, width, height) for quad in (found if found is not None else [])]
        return [quad for quad in quads if _sides(quad) >= MIN_BOX_SIDE]

    def _recognise(
        self, pixels: np.ndarray, quads: list[Quad], clock: _Clock
    ) -> tuple[list[tuple[Quad, str, float]], str | None]:
        """(box, text, confidence) of each line read, and why reading stopped early, if it did."""
        read: list[tuple[Quad, str, float]] = []
        step = self.settings.lines_per_batch
        for start in range(0, len(quads), step):
            cut = f"the {clock.described()} ran out after {start} of {len(quads)} lines"
            if clock.spent():
                return read, cut
            batch = quads[start : start + step]
            try:
                with time_limit(clock.remaining_s()):
                    texts = self._lines(pixels, batch)
            except CallStopped:
                return read, cut
            read += [
                (quad, text, conf) for quad, (text, conf) in zip(batch, texts, strict=True) if text
            ]
        return read, None

    def _lines(self, pixels: np.ndarray, quads: list[Quad]) -> list[tuple[str, float]]:
        """Text and confidence of each box; ("", 0.0) where under `min_confidence`."""
        corners = [np.array(quad, dtype=np.float32) for quad in quads]
        crops = _guarded(self._engine.get_crop_img_list, pixels, corners)
        upright, _, _ = _guarded(self._engine.text_cls, [_enlarged(crop) for crop in crops])
        lines, _ = _guarded(self._engine.text_rec, upright)
        floor = self.settings.min_confidence
        texts = [(str(text).strip(), float(confidence)) for text, confidence, *_ in lines]
        return [(text, conf) if conf >= floor and text else ("", 0.0) for text, conf in texts]


class _Clock:
    """Time since a read started, against its budget."""

    def __init__(self, started: float, budget_ms: float, what: str = "budget") -> None:
        self.started = started
        self.budget_ms = budget_ms
        self.what = what  # how cut reasons name it

    def described(self) -> str:
        """The budget in words: "2000 ms budget", "850 ms left of the post's budget"."""
        return f"{self.budget_ms:.0f} ms {self.what}"

    def elapsed_ms(self) -> float:
        """Milliseconds since the read started."""
        return (time.perf_counter() - self.started) * 1000

    def spent(self) -> bool:
        """Whether the budget is used up."""
        return self.elapsed_ms() >= self.budget_ms

    def remaining_s(self) -> float:
        """Seconds left of the budget (negative once it is spent)."""
        return (self.budget_ms - self.elapsed_ms()) / 1000


def _result(
    read: list[tuple[Quad, str, float]],
    original: tuple[int, int],
    working: tuple[int, int],
    scale: float,
    clock: _Clock,
    cut_reason: str | None = None,
) -> OcrResult:
    """The result with boxes mapped back to the original image and lines in reading order."""
    boxes = [OcrBox(text, conf, _to_original(q, working, original)) for q, text, conf in read]
    lines = reading_order([box.box for box in boxes])
    text = "\n".join(" ".join(boxes[i].text for i in line) for line in lines)
    elapsed = clock.elapsed_ms()
    return OcrResult(
        text=text,
        boxes=tuple(boxes[i] for line in lines for i in line),
        downscaled=scale,
        elapsed_ms=elapsed,
        over_budget=elapsed > clock.budget_ms,
        cut=cut_reason is not None,
        cut_reason=cut_reason,
    )


def _bgr(image: Image.Image, size: tuple[int, int]) -> np.ndarray:
    """`image` at `size` as a BGR array, the models' channel order."""
    if image.size != size:
        # reducing_gap shrinks in two steps: fast on huge images, still antialiased
        image = image.resize(size, Image.Resampling.BILINEAR, reducing_gap=3.0)
    return np.ascontiguousarray(np.asarray(image)[:, :, ::-1])


def _enlarged(crop: np.ndarray) -> np.ndarray:
    """`crop` at least `MIN_LINE_HEIGHT` px high, aspect kept."""
    import cv2

    height, width = crop.shape[:2]
    if height >= MIN_LINE_HEIGHT:
        return crop
    size = (max(1, round(width * MIN_LINE_HEIGHT / height)), MIN_LINE_HEIGHT)
    return cv2.resize(crop, size, interpolation=cv2.INTER_CUBIC)


def _pad_to_stride(pixels: np.ndarray) -> np.ndarray:
    """`pixels` grown right and down to sides that are multiples of `DETECTOR_STRIDE`."""
    height, width = pixels.shape[:2]
    pad_h = -height % DETECTOR_STRIDE if height >= DETECTOR_STRIDE else DETECTOR_STRIDE - height
    pad_w = -width % DETECTOR_STRIDE if width >= DETECTOR_STRIDE else DETECTOR_STRIDE - width
    # edge padding adds no new edges for the detector to mistake for text
    return np.pad(pixels, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")


def _clip(quad: Any, width: int, height: int) -> Quad:
    """A detector box as floats, inside a `width` x `height` image."""
    points = [
        (min(max(float(x), 0.0), width - 1.0), min(max(float(y), 0.0), height - 1.0))
        for x, y in quad
    ]
    return (points[0], points[1], points[2], points[3])


def _sides(quad: Quad) -> float:
    """The shorter side of a box."""
    (x0, y0), (x1, y1), _, (x3, y3) = quad
    return min(math.hypot(x1 - x0, y1 - y0), math.hypot(x3 - x0, y3 - y0))


def _to_original(quad: Quad, working: tuple[int, int], original: tuple[int, int]) -> Quad:
    """A box in working-size pixels, in the original image's pixels."""
    sx, sy = original[0] / working[0], original[1] / working[1]
    points = [(min(x * sx, float(original[0])), min(y * sy, float(original[1]))) for x, y in quad]
    return (points[0], points[1], points[2], points[3])


def _guarded(call: Any, *args: Any) -> Any:
    """`call(*args)`, with the model libraries' errors raised as `OcrFailed`."""
    import cv2
    from rapidocr_onnxruntime.ch_ppocr_det.utils import ResizeImgError
    from rapidocr_onnxruntime.utils.infer_engine import ONNXRuntimeError

    try:
        return call(*args)
    except (ONNXRuntimeError, ResizeImgError, cv2.error) as exc:
        raise OcrFailed(f"the OCR models failed on this image: {error_text(exc)}") from exc


_ENGINES: dict[tuple[int, Device], Any] = {}
_ENGINES_LOCK = threading.Lock()


def shared_engine(threads: int, device: Device = "cpu") -> Any:
    """The process's rapidocr engine with `threads` intra-op threads on `device`, built on first
    use."""
    with _ENGINES_LOCK:
        if (threads, device) not in _ENGINES:
            _ENGINES[threads, device] = _load_engine(threads, device)
        return _ENGINES[threads, device]


def _load_engine(threads: int, device: Device = "cpu") -> Any:
    """A new rapidocr engine that leaves sizing to us; `OcrUnavailable` if it cannot load."""
    try:
        from rapidocr_onnxruntime import RapidOCR
    except ImportError as exc:
        raise OcrUnavailable(
            f"OCR needs rapidocr-onnxruntime and opencv: {INSTALL_HINT} ({error_text(exc)})"
        ) from exc
    # rapidocr silently ignores a thread count above the CPU count (all cores instead)
    engine_threads = min(threads, os.cpu_count() or 1)
    # rapidocr moves to the CPU with a warning where CUDA is missing: refused here instead
    try:
        providers = session_providers(device)
    except DeviceUnavailable as exc:
        raise OcrUnavailable(f"ocr: {exc}") from exc
    cuda = {f"{model}_use_cuda": device == "cuda" for model in ("det", "cls", "rec")}
    try:
        engine = RapidOCR(
            **cuda,
            intra_op_num_threads=engine_threads,
            inter_op_num_threads=1,
            # "min" with 0 never resizes: `working_size` has sized the image already. It also
            # keeps the detector's per-call preprocessing identical, so threads may share it.
            det_limit_type="min",
            det_limit_side_len=0,
        )
    except (OSError, ValueError) as exc:  # a wheel without its models: FileNotFoundError
        raise OcrUnavailable(
            f"the OCR models would not load: {error_text(exc)}; reinstall with {INSTALL_HINT}"
        ) from exc
    # rapidocr 1.4 keeps each model's onnxruntime session here; the budget stops their runs.
    # rapidocr turns onnxruntime's memory arena off: the detector gets one (`pooled_session`).
    engine.text_det.infer.session = pooled_session(_detector_path(), engine_threads, providers)
    holders = [engine.text_det.infer, engine.text_cls.infer, engine.text_rec.session]
    try:
        for holder in holders:
            check_session_device(holder.session, device)
    except DeviceUnavailable as exc:
        raise OcrUnavailable(f"ocr: {exc}") from exc
    make_stoppable(holders[1:])
    return engine


def _detector_path() -> str:
    """The detection model inside the rapidocr wheel, as rapidocr's own config names it."""
    from rapidocr_onnxruntime.main import DEFAULT_CFG_PATH
    from rapidocr_onnxruntime.utils import read_yaml, update_model_path

    return str(update_model_path(read_yaml(DEFAULT_CFG_PATH))["Det"]["model_path"])
