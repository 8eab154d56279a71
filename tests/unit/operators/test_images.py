"""Image input: sources, limits, hostile files, orientation and mode conversion."""

from __future__ import annotations

import base64
import doctest
import hashlib
import io
import struct
import zlib

import pytest
from PIL import Image, ImageFile

from contracts.errors import ModerationError, Stage
from operators import images
from operators.exceptions import (
    FileOutsideRoot,
    ImageDecodeError,
    ImageError,
    ImageTooLarge,
    UnsupportedImageSource,
)
from operators.images import ImageLoader, decode_image, decode_reduced, to_rgb
from operators.limits import ImageLimits


def _encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


@pytest.fixture(scope="module")
def png_bomb() -> bytes:
    """A valid 20000x20000 greyscale PNG: ~400 KB on disk, 400 MB once decoded."""
    side = 20_000
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    compressor = zlib.compressobj(9)
    row_block = b"\x00" * ((side + 1) * 500)
    body = b"".join(compressor.compress(row_block) for _ in range(side // 500))
    body += compressor.flush()
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", body)
        + _png_chunk(b"IEND", b"")
    )


@pytest.fixture
def jpeg() -> bytes:
    gradient = Image.linear_gradient("L").resize((200, 120)).convert("RGB")
    return _encode(gradient, "JPEG", quality=90)


def test_bytes_source_gives_rgb_and_hash_of_original_bytes(jpeg):
    loaded = ImageLoader().load(jpeg)
    assert loaded.image.mode == "RGB"
    assert loaded.size == (200, 120)
    assert loaded.sha256 == hashlib.sha256(jpeg).hexdigest()


def test_base64_and_data_uri_sources(jpeg):
    encoded = base64.b64encode(jpeg).decode()
    loader = ImageLoader()
    assert loader.load(encoded).sha256 == loader.load(f"data:image/jpeg;base64,{encoded}").sha256


def test_unknown_string_source_is_refused():
    with pytest.raises(UnsupportedImageSource):
        ImageLoader().load("ftp://example.com/a.png")


def test_png_bomb_refused_before_decoding(png_bomb):
    assert len(png_bomb) < 1_000_000
    with pytest.raises(ImageTooLarge) as caught:
        ImageLoader().load(png_bomb)
    assert caught.value.limit == "max_pixels"
    assert caught.value.stage is Stage.FETCH_IMAGE


def test_pixel_limit_below_pillows_own_guard():
    data = _encode(Image.new("RGB", (50, 50)), "PNG")
    with pytest.raises(ImageTooLarge, match="max_pixels limit of 2000"):
        ImageLoader(ImageLimits(max_pixels=2000)).load(data)


def test_byte_limit(jpeg):
    with pytest.raises(ImageTooLarge, match="max_bytes") as caught:
        ImageLoader(ImageLimits(max_bytes=100)).load(jpeg)
    assert caught.value.limit == "max_bytes"


def test_truncated_jpeg_refused(jpeg):
    with pytest.raises(ImageDecodeError, match=r"truncated|corrupt"):
        ImageLoader().load(jpeg[: len(jpeg) // 2])


@pytest.mark.parametrize("garbage", [b"", b"not an image", b"\x89PNG\r\n\x1a\n" + b"\x00" * 40])
def test_garbage_refused_as_decode_error(garbage):
    with pytest.raises(ImageDecodeError):
        ImageLoader().load(garbage)


def test_every_refusal_is_a_moderation_error_with_fetch_stage(png_bomb):
    with pytest.raises(ImageError) as caught:
        ImageLoader().load(png_bomb)
    assert isinstance(caught.value, ModerationError)
    assert caught.value.error_type == "ImageTooLarge"


def test_exif_orientation_applied():
    image = Image.new("RGB", (40, 20), "red")
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    loaded = ImageLoader().load(_encode(image, "JPEG", exif=exif.tobytes()))
    assert loaded.size == (20, 40)


def test_rgba_flattened_onto_white():
    transparent = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    loaded = ImageLoader().load(_encode(transparent, "PNG"))
    assert loaded.image.getpixel((0, 0)) == (255, 255, 255)


def test_palette_and_cmyk_converted():
    palette = Image.new("RGB", (4, 4), "blue").convert("P")
    cmyk = Image.new("CMYK", (4, 4), (0, 255, 255, 0))
    assert ImageLoader().load(_encode(palette, "PNG")).image.getpixel((0, 0)) == (0, 0, 255)
    red = ImageLoader().load(_encode(cmyk, "JPEG")).image.getpixel((0, 0))
    assert red[0] > 200 and red[1] < 60 and red[2] < 60


def test_only_first_frame_of_animation():
    frames = [Image.new("RGB", (8, 8), colour) for colour in ("red", "lime", "blue")]
    gif = _encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50)
    loaded = ImageLoader().load(gif)
    assert loaded.image.getpixel((0, 0)) == (255, 0, 0)


def test_grey_and_la_modes_become_rgb():
    assert to_rgb(Image.new("L", (2, 2), 7)).getpixel((0, 0)) == (7, 7, 7)
    assert to_rgb(Image.new("LA", (2, 2), (7, 255))).getpixel((0, 0)) == (7, 7, 7)


def test_file_url_under_root(tmp_path, jpeg):
    (tmp_path / "a b.jpg").write_bytes(jpeg)
    loaded = ImageLoader(ImageLimits(file_root=tmp_path)).load(f"file://{tmp_path}/a%20b.jpg")
    assert loaded.size == (200, 120)


def test_file_url_refused_without_root(tmp_path, jpeg):
    (tmp_path / "a.jpg").write_bytes(jpeg)
    with pytest.raises(FileOutsideRoot, match="no file_root"):
        ImageLoader().load(f"file://{tmp_path}/a.jpg")


def test_file_url_outside_root_and_symlink_escape(tmp_path, jpeg):
    root = tmp_path / "root"
    root.mkdir()
    (tmp_path / "secret.jpg").write_bytes(jpeg)
    (root / "link.jpg").symlink_to(tmp_path / "secret.jpg")
    loader = ImageLoader(ImageLimits(file_root=root))
    for url in (
        f"file://{tmp_path}/secret.jpg",
        f"file://{root}/../secret.jpg",
        f"file://{root}/link.jpg",
    ):
        with pytest.raises(FileOutsideRoot):
            loader.load(url)


def test_file_url_byte_limit_checked_before_reading(tmp_path, jpeg):
    (tmp_path / "a.jpg").write_bytes(jpeg)
    loader = ImageLoader(ImageLimits(file_root=tmp_path, max_bytes=10))
    with pytest.raises(ImageTooLarge):
        loader.load(f"file://{tmp_path}/a.jpg")


def test_decode_image_is_usable_directly(jpeg):
    assert decode_image(jpeg, ImageLimits()).nbytes == len(jpeg)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"definitely not an image " * 4, "not a recognised image format (PNG, JPEG, GIF, WebP"),
        (b"", "the image is empty (0 bytes)"),
        (b"\xff\xd8\xff\xe0", "the bytes start like JPEG but are truncated or corrupt"),
        (b"%PDF-1.7\n...", "the bytes are a PDF document, not an image format"),
        (b"  <svg xmlns='http://www.w3.org/2000/svg'/>", "the bytes are SVG vector graphics"),
    ],
)
def test_unreadable_bytes_give_a_clean_dead_letter_reason(data, expected):
    with pytest.raises(ImageDecodeError) as refused:
        decode_image(data, ImageLimits())
    reason = refused.value.reason  # what the dead letter's `error` carries
    assert reason.startswith(expected), reason
    assert "<" not in reason and "0x" not in reason and "object at" not in reason, reason


def test_truncated_png_reason_names_the_format_without_reprs():
    png = _encode(Image.new("RGB", (64, 64), (9, 9, 9)), "PNG")
    with pytest.raises(ImageDecodeError) as refused:
        decode_image(png[:20], ImageLimits())
    assert refused.value.reason.startswith("the bytes start like PNG but are truncated")
    assert "0x" not in refused.value.reason


def _within(side: int):
    """A fit: the long side at most `side`, aspect kept."""

    def fit(width: int, height: int) -> tuple[int, int]:
        scale = min(1.0, side / max(width, height))
        return round(width * scale), round(height * scale)

    return fit


@pytest.fixture(scope="module")
def large_jpeg() -> bytes:
    """A 6,000 x 4,000 photo-like JPEG: 72 MB as an RGB array."""
    small = Image.linear_gradient("L").resize((600, 400)).convert("RGB")
    return _encode(small.resize((6000, 4000), Image.Resampling.BILINEAR), "JPEG", quality=85)


def test_decode_reduced_never_decodes_a_large_jpeg_at_full_size(large_jpeg, monkeypatch):
    decoded = []
    load = ImageFile.ImageFile.load

    def recording(image):
        decoded.append(image.size)
        return load(image)

    monkeypatch.setattr(ImageFile.ImageFile, "load", recording)
    reduced = decode_reduced(large_jpeg, ImageLimits(), _within(512))
    assert reduced.image.size == (512, 341) and reduced.image.mode == "RGB"
    assert reduced.original_size == (6000, 4000)
    assert decoded and max(w * h for w, h in decoded) <= 750 * 500, "libjpeg decoded at 1/8"


def test_decode_reduced_turns_the_image_as_its_exif_says_and_reports_the_turned_size():
    wide = Image.new("RGB", (4000, 2000), "red")
    wide.paste((0, 0, 255), (0, 0, 2000, 2000))  # left half blue
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    data = _encode(wide, "JPEG", exif=exif.tobytes())
    reduced = decode_reduced(data, ImageLimits(), _within(400))
    assert reduced.original_size == (2000, 4000) and reduced.image.size == (200, 400)
    top, bottom = reduced.image.getpixel((100, 10)), reduced.image.getpixel((100, 390))
    assert top[2] > 200 and bottom[0] > 200, "the blue half is on top once turned"


def test_decode_reduced_shrinks_formats_without_reduced_decoding_and_flattens_them():
    palette = Image.new("RGB", (1200, 900), (0, 0, 255)).convert("P")
    reduced = decode_reduced(_encode(palette, "PNG"), ImageLimits(), _within(300))
    assert reduced.image.mode == "RGB" and reduced.image.size == (300, 225)
    assert reduced.image.getpixel((10, 10)) == (0, 0, 255)


def test_decode_reduced_never_enlarges(jpeg):
    reduced = decode_reduced(jpeg, ImageLimits(), lambda width, height: (width * 4, height * 4))
    assert reduced.image.size == reduced.original_size == (200, 120)


def test_decode_reduced_keeps_the_limits_and_the_readable_errors(png_bomb):
    fit = _within(512)
    with pytest.raises(ImageTooLarge, match="max_pixels"):
        decode_reduced(png_bomb, ImageLimits(), fit)
    with pytest.raises(ImageTooLarge, match="max_bytes"):
        decode_reduced(b"x" * 100, ImageLimits(max_bytes=10), fit)
    with pytest.raises(ImageDecodeError, match="not a recognised image format"):
        decode_reduced(b"definitely not an image " * 4, ImageLimits(), fit)


def test_module_examples_run():
    assert doctest.testmod(images).failed == 0
