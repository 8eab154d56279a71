"""Turn an image source into a checked, decoded RGB image, or a typed error naming the limit.

Sources: raw bytes, a base64 string (bare or as a `data:` URI), `file://` under a configured
root, and `http(s)://` through the SSRF-safe fetcher. The pixel count is read from the header
and checked before any pixel is decoded, so decompression bombs cost nothing.

A reader that needs only a small image (the CPU specialists) uses `decode_reduced`: a JPEG is
decoded at 1/2 to 1/8 scale, and no full-size RGB copy is kept.

>>> import io
>>> from PIL import Image
>>> buffer = io.BytesIO()
>>> Image.new("RGBA", (4, 3)).save(buffer, "PNG")
>>> loaded = ImageLoader(ImageLimits()).load(buffer.getvalue())
>>> loaded.image.mode, loaded.image.size
('RGB', (4, 3))
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from PIL import ExifTags, Image, ImageFile, ImageOps, UnidentifiedImageError

from operators.exceptions import (
    FileOutsideRoot,
    ImageDecodeError,
    ImageFetchError,
    ImageTooLarge,
    UnsupportedImageSource,
    error_text,
)
from operators.fetch import Resolver, fetch_url, system_resolver
from operators.limits import ImageLimits

_WHITE = (255, 255, 255)
# EXIF orientations that swap width and height (transpose, the two quarter turns, transverse)
_SWAPS_SIDES = frozenset({5, 6, 7, 8})
# Modes Pillow resizes as they are; any other is made RGB first (a palette would resize nearest)
_RESIZABLE = frozenset({"RGB", "RGBA", "L"})
Fit = Callable[[int, int], tuple[int, int]]  # (width, height) -> the (width, height) wanted
READABLE_FORMATS = ("PNG", "JPEG", "GIF", "WebP", "BMP", "TIFF")
# (offset, magic bytes, what they are): says what unreadable bytes look like.
_SIGNATURES = (
    (0, b"\x89PNG\r\n\x1a\n", "PNG"),
    (0, b"\xff\xd8\xff", "JPEG"),
    (0, b"GIF8", "GIF"),
    (8, b"WEBP", "WebP"),
    (0, b"BM", "BMP"),
    (0, b"II*\x00", "TIFF"),
    (0, b"MM\x00*", "TIFF"),
    (4, b"ftypheic", "HEIC"),
    (4, b"ftypavif", "AVIF"),
    (0, b"%PDF", "a PDF document"),
    (0, b"PK\x03\x04", "a ZIP archive"),
    (0, b"<svg", "SVG vector graphics"),
    (0, b"<?xml", "XML text"),
    (0, b"<!DOCTYPE html", "an HTML page"),
    (0, b"<!doctype html", "an HTML page"),
    (0, b"<html", "an HTML page"),
)


@dataclass(frozen=True)
class LoadedImage:
    """A decoded image: RGB, EXIF orientation applied, first frame only."""

    sha256: str
    image: Image.Image
    nbytes: int

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) after EXIF rotation."""
        return self.image.size


class ImageLoader:
    """Loads image sources under one set of limits; every refusal is an `ImageError`."""

    def __init__(
        self, limits: ImageLimits | None = None, resolver: Resolver = system_resolver
    ) -> None:
        self.limits = limits or ImageLimits()
        self.resolver = resolver

    def load(self, source: bytes | str) -> LoadedImage:
        """Fetch or decode `source` and return the checked RGB image."""
        return decode_image(self.read_bytes(source), self.limits)

    def read_bytes(self, source: bytes | str) -> bytes:
        """The raw image bytes behind `source`, within the byte limit."""
        if isinstance(source, bytes | bytearray | memoryview):
            return _within_byte_limit(bytes(source), self.limits)
        if source.startswith(("http://", "https://")):
            return fetch_url(source, self.limits, self.resolver)
        if source.startswith("file://"):
            return read_file_url(source, self.limits)
        return _within_byte_limit(decode_base64(source), self.limits)


def decode_base64(source: str) -> bytes:
    """Bytes of a bare base64 string or a `data:...;base64,` URI."""
    if source.startswith("data:"):
        header, _, source = source.partition(",")
        if not header.endswith(";base64"):
            raise UnsupportedImageSource("only base64 data: URIs are accepted")
    try:
        return base64.b64decode(source, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise UnsupportedImageSource(
            "an image source string must be http(s)://, file:// or base64"
        ) from exc


def read_file_url(url: str, limits: ImageLimits) -> bytes:
    """Read a file:// URL that resolves (symlinks included) inside `limits.file_root`."""
    if limits.file_root is None:
        raise FileOutsideRoot("file:// images are refused: no file_root is configured")
    parts = urlsplit(url)
    if parts.netloc not in ("", "localhost"):
        raise FileOutsideRoot(f"file:// URL names a remote host {parts.netloc!r}")
    root = Path(limits.file_root).resolve()
    path = Path(unquote(parts.path)).resolve()
    if not path.is_relative_to(root):
        raise FileOutsideRoot(f"{path} lies outside the file_root {root}")
    try:
        size = path.stat().st_size
        if size > limits.max_bytes:
            raise _byte_limit_error(size, limits)
        return path.read_bytes()
    except OSError as exc:
        raise ImageFetchError(f"cannot read {path}: {exc.strerror or exc}") from exc


def decode_image(data: bytes, limits: ImageLimits) -> LoadedImage:
    """Check pixel count from the header, then decode the first frame to RGB."""
    _within_byte_limit(data, limits)
    digest = hashlib.sha256(data).hexdigest()
    image = _open_checked(data, limits)
    try:
        ImageFile.LOAD_TRUNCATED_IMAGES = False
        image.seek(0)
        image.load()
        image = ImageOps.exif_transpose(image) or image
        rgb = to_rgb(image)
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageDecodeError(f"image data is corrupt or truncated: {error_text(exc)}") from exc
    return LoadedImage(sha256=digest, image=rgb, nbytes=len(data))


@dataclass(frozen=True)
class ReducedImage:
    """A decoded RGB image at the size a reader asked for, and the size of the whole image.

    Both sizes are (width, height) after EXIF rotation; `scale` is how much it was shrunk.
    """

    image: Image.Image
    original_size: tuple[int, int]


def decode_reduced(data: bytes, limits: ImageLimits, fit: Fit) -> ReducedImage:
    """Decode `data` under `limits`, straight to `fit(width, height)` (never larger).

    JPEGs are decoded at a reduced scale (libjpeg's DCT scaling) and other formats shrunk
    right after decoding, so a 36 MP photo costs a reader that needs 512 px a 0.5 MP array.

    >>> import io
    >>> buffer = io.BytesIO()
    >>> Image.new("RGB", (4000, 3000), "grey").save(buffer, "JPEG")
    >>> small = decode_reduced(buffer.getvalue(), ImageLimits(), lambda w, h: (w // 10, h // 10))
    >>> small.image.size, small.original_size
    ((400, 300), (4000, 3000))
    """
    _within_byte_limit(data, limits)
    image = _open_checked(data, limits)
    try:
        ImageFile.LOAD_TRUNCATED_IMAGES = False
        image.seek(0)
        original = _oriented_size(image)
        wanted = _no_larger(fit(*original), original)
        swapped = original != image.size
        image.draft(None, wanted[::-1] if swapped else wanted)  # before load; JPEG only
        image.load()
        ImageOps.exif_transpose(image, in_place=True)
        reduced = shrink(image, wanted)
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageDecodeError(f"image data is corrupt or truncated: {error_text(exc)}") from exc
    return ReducedImage(image=reduced, original_size=original)


def _oriented_size(image: Image.Image) -> tuple[int, int]:
    """(width, height) once EXIF rotation is applied, read from the header alone."""
    orientation = image.getexif().get(ExifTags.Base.Orientation, 1)
    width, height = image.size
    return (height, width) if orientation in _SWAPS_SIDES else (width, height)


def _no_larger(size: tuple[int, int], original: tuple[int, int]) -> tuple[int, int]:
    """`size` cut to `original` on each side, and at least one pixel."""
    return max(1, min(size[0], original[0])), max(1, min(size[1], original[1]))


def shrink(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """`image` as RGB at `size`, antialiased; shrunk before it is converted where Pillow can."""
    if image.mode not in _RESIZABLE:
        image = to_rgb(image)
    if image.size != size:
        # reducing_gap shrinks in two steps: fast on huge images, still antialiased
        image = image.resize(size, Image.Resampling.BILINEAR, reducing_gap=3.0)
    return to_rgb(image)


def _open_checked(data: bytes, limits: ImageLimits) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise ImageTooLarge(
            f"image header declares more pixels than the max_pixels limit allows: {exc}",
            limit="max_pixels",
        ) from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageDecodeError(unreadable_reason(data, exc)) from exc
    width, height = image.size
    if width * height > limits.max_pixels:
        raise ImageTooLarge(
            f"image is {width}x{height} = {width * height} pixels, over the max_pixels limit "
            f"of {limits.max_pixels}",
            limit="max_pixels",
        )
    return image


def unreadable_reason(data: bytes, error: BaseException) -> str:
    """Why `data` cannot be opened as an image, in words that name what the bytes look like."""
    if not data:
        return "the image is empty (0 bytes)"
    kind = sniff(data)
    known = ", ".join(READABLE_FORMATS)
    if kind is None:
        start = data[:4].hex(" ")
        return f"not a recognised image format ({known}, ...); the bytes start with {start}"
    if kind in READABLE_FORMATS:
        return f"the bytes start like {kind} but are truncated or corrupt ({error_text(error)})"
    return f"the bytes are {kind}, not an image format this pipeline reads ({known}, ...)"


def sniff(data: bytes) -> str | None:
    """What the first bytes of `data` say it is, or None for unknown bytes."""
    head = data[:32].lstrip()  # text formats may start with whitespace; binary ones never do
    for offset, magic, kind in _SIGNATURES:
        if head[offset : offset + len(magic)] == magic:
            return kind
    return None


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB, with transparency flattened onto white and CMYK/palette/grey converted."""
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        rgba = image.convert("RGBA")
        canvas = Image.new("RGB", rgba.size, _WHITE)
        canvas.paste(rgba, mask=rgba.getchannel("A"))
        return canvas
    return image.convert("RGB")


def _within_byte_limit(data: bytes, limits: ImageLimits) -> bytes:
    if len(data) > limits.max_bytes:
        raise _byte_limit_error(len(data), limits)
    return data


def _byte_limit_error(size: int, limits: ImageLimits) -> ImageTooLarge:
    return ImageTooLarge(
        f"image is {size} bytes, over the max_bytes limit of {limits.max_bytes}",
        limit="max_bytes",
    )
