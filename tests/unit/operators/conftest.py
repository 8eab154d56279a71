"""Tiny random-weight checkpoints of both families, built once per session, and image factories."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from operators.images import ImageLoader, LoadedImage
from operators.limits import ImageLimits
from operators.loading import load_vlm
from operators.spec import ModelSpec
from operators.tiny import make_tiny

ARCHES = ("smolvlm", "llava")


@pytest.fixture(scope="session")
def tiny_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    return {arch: make_tiny(root / arch, arch=arch, seed=0) for arch in ARCHES}


@pytest.fixture(scope="session")
def vlms(tiny_dirs):
    return {
        arch: load_vlm(ModelSpec(str(path), device="cpu", max_new_tokens=6))
        for arch, path in tiny_dirs.items()
    }


@pytest.fixture(params=ARCHES)
def vlm(request, vlms):
    return vlms[request.param]


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
