"""OCR with the real PP-OCRv4 weights shipped in rapidocr's wheel: text, boxes, hostile input."""

from __future__ import annotations

import io
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import pytest
from PIL import Image

pytest.importorskip("rapidocr_onnxruntime", reason="needs the 'specialists' extra")

from operators.exceptions import ImageDecodeError, ImageTooLarge
from operators.limits import ImageLimits
from operators.specialists import ocr
from operators.specialists.ocr import (
    OcrReader,
    OcrResult,
    OcrSettings,
    OcrUnavailable,
    reading_order,
    working_size,
)
from operators.specialists.render import photo_like, render_text_image
from operators.specialists.stoppable import StoppableSession

ROOT = Path(__file__).resolve().parents[3]
PHRASE = "DM me on Telegram to claim your prize"
KEY_WORDS = ("dm", "telegram", "claim", "prize")


@pytest.fixture(scope="module")
def reader() -> OcrReader:
    return OcrReader()


def words(text: str) -> list[str]:
    return text.lower().split()


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bomb(side: int = 10_000) -> bytes:
    """A valid greyscale PNG of side x side zeros: ~100 KB on disk, 100 MB decoded."""
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    compressor = zlib.compressobj(9)
    rows = b"\x00" * ((side + 1) * 500)
    body = b"".join(compressor.compress(rows) for _ in range(side // 500)) + compressor.flush()
    idat = _chunk(b"IDAT", body)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + idat + _chunk(b"IEND", b"")


def test_reads_a_rendered_phrase(reader):
    result = reader.read(render_text_image(PHRASE, font_size=28))
    assert all(word in words(result.text) for word in KEY_WORDS), result.text
    assert result.downscaled == 1.0 and not result.cut and not result.over_budget


def test_reads_white_text_on_a_photo_like_background(reader):
    image = render_text_image(
        PHRASE,
        size=(480, 320),
        font_size=40,
        colour=(255, 255, 255),
        background=photo_like(seed=3, size=(480, 320)),
        stroke_width=2,
    )
    assert all(word in words(reader.read(image).text) for word in KEY_WORDS)


def test_lines_come_top_to_bottom_joined_by_newlines(reader):
    image = render_text_image("first line here\nsecond line there", font_size=30)
    assert reader.read(image).text.lower().split("\n") == ["first line here", "second line there"]


def test_boxes_have_confidences_and_lie_inside_the_image(reader):
    image = render_text_image(PHRASE, size=(500, 300), font_size=36, seed=1)
    result = reader.read(image)
    assert result.boxes
    for box in result.boxes:
        assert 0.0 < box.confidence <= 1.0 and box.text
        assert len(box.box) == 4
        assert all(0 <= x <= image.width and 0 <= y <= image.height for x, y in box.box)


def test_a_downscaled_image_maps_boxes_back_to_original_pixels():
    phrase = render_text_image("Claim your prize now", font_size=100)
    canvas = Image.new("RGB", (3200, 2400), "white")
    left, top = 900, 1300
    canvas.paste(phrase, (left, top))
    result = OcrReader(OcrSettings(time_budget_ms=60_000)).read(canvas)  # a busy box is slow
    assert result.downscaled == pytest.approx(0.5)
    assert words(result.text) == ["claim", "your", "prize", "now"]
    xs = [x for box in result.boxes for x, _ in box.box]
    ys = [y for box in result.boxes for _, y in box.box]
    slack = 30  # detector boxes hug the glyphs loosely
    assert left - slack <= min(xs) and max(xs) <= left + phrase.width + slack
    assert top - slack <= min(ys) and max(ys) <= top + phrase.height + slack
    assert max(xs) - min(xs) > phrase.width * 0.7  # in original pixels, not halved


def test_a_blank_image_reads_as_empty_text(reader):
    result = reader.read(Image.new("RGB", (640, 480), (250, 250, 250)))
    assert result.text == "" and result.boxes == ()


def test_any_image_mode_is_read(reader):
    image = render_text_image("hello world", font_size=30).convert("LA")
    assert words(reader.read(image).text) == ["hello", "world"]


def test_a_20000_px_wide_strip_gives_a_result_quickly(reader):
    strip = Image.new("RGB", (20_000, 60), "white")
    for left in range(0, 20_000, 2_000):
        strip.paste(render_text_image("free followers", font_size=40), (left, 0))
    started = time.perf_counter()
    result = reader.read(strip)
    assert isinstance(result, OcrResult)
    assert result.downscaled == pytest.approx(1600 / 20_000)
    assert time.perf_counter() - started < 5.0  # rapidocr's own sizing raises on this strip


def test_a_decompression_bomb_is_too_large(reader):
    with pytest.raises(ImageTooLarge, match="max_pixels"):
        reader.read_bytes(png_bomb(), ImageLimits())


def test_bytes_that_are_no_image_are_a_decode_error(reader):
    with pytest.raises(ImageDecodeError, match="HTML page, not an image"):
        reader.read_bytes(b"<html>hello</html>" * 10, ImageLimits())


def test_read_bytes_reads_an_encoded_image(reader):
    result = reader.read_bytes(png(render_text_image(PHRASE)), ImageLimits())
    assert all(word in words(result.text) for word in KEY_WORDS)


def test_a_spent_budget_cuts_the_read_and_says_so():
    reader = OcrReader(OcrSettings(time_budget_ms=0.001))
    result = reader.read(render_text_image(PHRASE))
    assert result.cut and result.over_budget and result.text == ""
    assert "budget" in (result.cut_reason or "")


def test_a_budget_running_out_between_lines_keeps_the_top_lines(monkeypatch):
    checks = iter([False, False, True])  # after detection, before line 1, before line 2
    monkeypatch.setattr(ocr._Clock, "spent", lambda self: next(checks))
    reader = OcrReader(OcrSettings(lines_per_batch=1))
    result = reader.read(render_text_image("top line\nmiddle line\nbottom line", font_size=30))
    assert result.cut and result.text.lower() == "top line"
    assert "after 1 of 3 lines" in (result.cut_reason or "")


def jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=85)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def busy_poster() -> bytes:
    """A 4,800 x 3,600 JPEG filled with lines of text over a photo: a slow image to read."""
    lines = [f"{PHRASE} {n}" for n in range(40)]
    background = photo_like(seed=5, size=(480, 360))
    return jpeg(render_text_image("\n".join(lines), size=(4800, 3600), background=background))


def test_an_encoded_image_reaches_the_detector_at_max_side_never_at_full_size(
    reader, busy_poster, monkeypatch
):
    shapes = []
    read = OcrReader._read

    def recording(self, image, *args):
        shapes.append(image.size)
        return read(self, image, *args)

    monkeypatch.setattr(OcrReader, "_read", recording)
    result = reader.read_bytes(busy_poster, ImageLimits(), budget_ms=1.0)
    assert shapes == [(1600, 1200)], "decoded at the size it is read at"
    assert result.downscaled == pytest.approx(1 / 3)


class EndlessDetector:
    """Stands in for a detection still running: it ends only when its run is told to stop."""

    def __init__(self, real) -> None:
        self.real = real
        self.stopped = False

    def run(self, names, feed, options=None):
        for _ in range(6000):  # 30 s, far past any budget here
            if options is not None and options.terminate:
                self.stopped = True
                raise RuntimeError("Exiting due to terminate flag being set to true")
            time.sleep(0.005)  # a model call in progress, not a wait for the test
        return self.real.run(names, feed, options)

    def __getattr__(self, name):
        return getattr(self.real, name)


def test_a_detection_still_running_when_the_budget_ends_is_stopped(monkeypatch):
    reader = OcrReader(OcrSettings(time_budget_ms=200))
    session = reader._engine.text_det.infer.session
    assert isinstance(session, StoppableSession)
    endless = EndlessDetector(session.session)
    monkeypatch.setattr(session, "session", endless)
    result = reader.read(render_text_image(PHRASE))
    assert endless.stopped and result.cut and result.text == ""
    assert result.cut_reason == "text detection alone spent the 200 ms budget; no line read"
    assert result.elapsed_ms < 10_000, "stopped near its budget, not after the call's 30 s"


class RecordingSession:
    """Stands in for an onnxruntime session; keeps the run options it was given."""

    def __init__(self) -> None:
        self.options = []

    def run(self, names, feed, options=None):
        self.options.append(options)
        return ["done"]


def test_the_detector_reuses_memory_within_a_run_and_gives_it_back_after(reader):
    session = reader._engine.text_det.infer.session
    assert session.shrink_arena and session.session.get_session_options().enable_cpu_mem_arena
    recording = RecordingSession()
    StoppableSession(recording, shrink_arena=True).run(None, {})
    [options] = recording.options
    assert options.get_run_config_entry("memory.enable_memory_arena_shrinkage") == "cpu:0"


def test_the_budget_holds_on_a_large_busy_image(busy_poster):
    # read at 3,200 px a side, where detection alone runs 2-5 s on a 2-core box
    settings = OcrSettings(max_side=3200, max_pixels=8_000_000, time_budget_ms=500)
    result = OcrReader(settings).read_bytes(busy_poster, ImageLimits())
    assert result.cut and result.over_budget and result.downscaled == pytest.approx(2 / 3)
    # one model layer (tens of ms) past the budget, with room for a loaded box
    assert result.elapsed_ms < 500 + 2000, result


def test_a_read_given_less_than_its_budget_names_the_posts_budget(reader):
    result = reader.read(render_text_image(PHRASE), budget_ms=0.001)
    assert result.cut and result.text == ""
    assert "0 ms left of the post's budget" in (result.cut_reason or "")


def test_working_size_keeps_both_limits_and_at_least_one_pixel():
    settings = OcrSettings(max_side=1600, max_pixels=1_000_000)
    assert working_size(800, 600, settings) == ((800, 600), 1.0)
    assert working_size(20_000, 10, settings) == ((1600, 1), 0.08)
    (width, height), _ = working_size(1600, 1600, settings)
    assert width * height <= 1_000_000 and width == height


def test_reading_order_groups_lines_and_sorts_them_left_to_right():
    def quad(x, y, w=50, h=20):
        return ((x, y), (x + w, y), (x + w, y + h), (x, y + h))

    quads = [quad(200, 102), quad(10, 40), quad(10, 100), quad(150, 38)]
    assert reading_order(quads) == [[1, 3], [2, 0]]


def test_settings_refuse_impossible_values():
    with pytest.raises(ValueError, match="threads"):
        OcrSettings(threads=0)
    with pytest.raises(ValueError, match="time_budget_ms"):
        OcrSettings(time_budget_ms=0)


def test_a_missing_package_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "rapidocr_onnxruntime", None)
    with pytest.raises(OcrUnavailable, match=r"vlm-moderation\[specialists\]"):
        ocr._load_engine(1)


def test_importing_the_module_loads_no_model_library():
    code = (
        "import sys, operators.specialists.ocr\n"
        "print(sorted(m for m in ('onnxruntime', 'rapidocr_onnxruntime', 'cv2')"
        " if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert done.stdout.strip() == "[]"
