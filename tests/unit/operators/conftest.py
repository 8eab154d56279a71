"""Tiny random-weight checkpoints of both families and twins of published checkpoints, each built
and loaded once per session, and image factories."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from operators.images import ImageLoader, LoadedImage
from operators.limits import ImageLimits
from operators.loading import Vlm, load_vlm
from operators.selfcheck import EngineCheck, checked
from operators.spec import ModelSpec
from operators.tiny import make_tiny
from operators.twins import make_twin

ARCHES = ("smolvlm", "llava")


@pytest.fixture(scope="session")
def tiny_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    return {arch: make_tiny(root / arch, arch=arch, seed=0) for arch in ARCHES}


@pytest.fixture(scope="session")
def vlms(tiny_dirs):
    return {
        arch: load_vlm(ModelSpec(name_or_path=str(path), device="cpu", max_new_tokens=6))
        for arch, path in tiny_dirs.items()
    }


@pytest.fixture(params=ARCHES)
def vlm(request, vlms):
    return vlms[request.param]


class Twins:
    """Twins of published checkpoints, each built, loaded and engine-checked once per session.

    The loaded models are shared by every test that asks for the same checkpoint and settings:
    a test that changes a model or its processor in place needs a build of its own.
    """

    def __init__(self, root: Path) -> None:
        self._root = root
        self._directories: dict[str, Path] = {}
        self._vlms: dict[tuple, Vlm] = {}
        self._checked: dict[tuple, tuple[Vlm, EngineCheck]] = {}

    def directory(self, checkpoint: str) -> Path:
        """The twin of `checkpoint` (seed 0), written on first use."""
        if checkpoint not in self._directories:
            target = self._root / checkpoint.replace("/", "__")
            self._directories[checkpoint] = make_twin(target, checkpoint)
        return self._directories[checkpoint]

    def vlm(self, checkpoint: str, **overrides: Any) -> Vlm:
        """The twin loaded on the CPU with 3 new tokens at most, or `overrides` of that spec."""
        key = self._key(checkpoint, overrides)
        if key not in self._vlms:
            settings = {"device": "cpu", "max_new_tokens": 3, **overrides}
            self._vlms[key] = load_vlm(
                ModelSpec(name_or_path=str(self.directory(checkpoint)), **settings)
            )
        return self._vlms[key]

    def checked(self, checkpoint: str, **overrides: Any) -> tuple[Vlm, EngineCheck]:
        """`selfcheck.checked` of `vlm(checkpoint, **overrides)`: the served model and its check."""
        key = self._key(checkpoint, overrides)
        if key not in self._checked:
            self._checked[key] = checked(self.vlm(checkpoint, **overrides))
        return self._checked[key]

    def engine_check(self, checkpoint: str, **overrides: Any) -> EngineCheck:
        """The load-time engine check of `vlm(checkpoint, **overrides)` (unpatched families)."""
        return self.checked(checkpoint, **overrides)[1]

    @staticmethod
    def _key(checkpoint: str, overrides: dict[str, Any]) -> tuple:
        return checkpoint, tuple(sorted(overrides.items()))


@pytest.fixture(scope="session")
def twins(tmp_path_factory) -> Twins:
    return Twins(tmp_path_factory.mktemp("twins"))


def png_bytes(seed: int, size: tuple[int, int] = (80, 60), mode: str = "RGB") -> bytes:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).convert(mode).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture(scope="session")
def loader():
    return ImageLoader(ImageLimits())


@pytest.fixture(scope="session")
def images(loader) -> list[LoadedImage]:
    sizes = [(80, 60), (64, 64), (50, 90), (120, 40)]
    return [loader.load(png_bytes(seed, size)) for seed, size in enumerate(sizes)]


@pytest.fixture
def degenerate_image() -> LoadedImage:
    """Decodes fine but no processor can tile it: 1 pixel high, 500 wide."""
    return LoadedImage(sha256="0" * 64, image=Image.new("RGB", (500, 1)), nbytes=0)


class CallCounter:
    """Counts forward calls of a module, and the images (pixel tensors' first dim) it was given."""

    def __init__(self, module):
        self.calls = 0
        self.images = 0
        self._handle = module.register_forward_hook(self._hook, with_kwargs=True)

    def _hook(self, module, args, kwargs, output):
        self.calls += 1
        pixels = kwargs.get("pixel_values", args[0] if args else None)
        if isinstance(pixels, torch.Tensor) and pixels.is_floating_point() and pixels.dim() == 4:
            self.images += int(pixels.shape[0])

    def remove(self):
        self._handle.remove()


@pytest.fixture
def count_calls():
    counters: list[CallCounter] = []

    def attach(module) -> CallCounter:
        counter = CallCounter(module)
        counters.append(counter)
        return counter

    yield attach
    for counter in counters:
        counter.remove()


@pytest.fixture
def nsfw_input_sizes(monkeypatch) -> list[tuple[int, int]]:
    """The size of every image the NSFW model is given, in order, while the test runs."""
    from operators.specialists.nsfw import NsfwScorer

    sizes: list[tuple[int, int]] = []
    batch = NsfwScorer._batch

    def recording(self, images):
        sizes.extend(image.size for image in images)
        return batch(self, images)

    monkeypatch.setattr(NsfwScorer, "_batch", recording)
    return sizes
