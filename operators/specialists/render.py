"""Draw phrases into images, and photo-like backgrounds: test, bench and demo material.

Pure Pillow and numpy. Without a `font`, text is drawn with Pillow's bundled scalable font
(Aileron, shipped inside Pillow >= 10.1 built with FreeType), so tests and demos depend on
nothing the system may lack. `system_fonts()` lists TrueType fonts found on this machine for
callers that want variety (the bench).

>>> image = render_text_image("DM me on Telegram", font_size=24)
>>> image.mode, image.width > image.height
('RGB', True)
"""

from __future__ import annotations

import io
import math
import random
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

Colour = tuple[int, int, int]
Font = ImageFont.FreeTypeFont | ImageFont.ImageFont
FONT_DIRS = (
    Path("/usr/share/fonts"),
    Path("/usr/local/share/fonts"),
    Path.home() / ".fonts",
    Path.home() / ".local/share/fonts",
)
MIN_FONT_SIZE = 8


def load_font(font: str | Path | None, size: int) -> Font:
    """A scalable font at `size` px: the file at `font`, or Pillow's bundled default."""
    if font is None:
        return ImageFont.load_default(size=size)
    return ImageFont.truetype(str(font), size)


def system_fonts(dirs: Sequence[Path] = FONT_DIRS) -> list[Path]:
    """TrueType/OpenType files under the usual font folders, sorted; empty where there are none."""
    found = {
        path
        for folder in dirs
        if folder.is_dir()
        for path in folder.rglob("*")
        if path.suffix.lower() in (".ttf", ".otf")
    }
    return sorted(found)


def wrap_text(text: str, font: Font, max_width: float) -> list[str]:
    """Greedy word wrap to `max_width` px; words wider than a line are broken between letters."""
    lines: list[str] = []
    for paragraph in text.split("\n"):
        line = ""
        for word in paragraph.split():
            for piece in _fitting_pieces(word, font, max_width):
                candidate = f"{line} {piece}" if line else piece
                if line and font.getlength(candidate) > max_width:
                    lines.append(line)
                    candidate = piece
                line = candidate
        lines.append(line)
    return lines


def _fitting_pieces(word: str, font: Font, max_width: float) -> list[str]:
    """`word` cut between letters into pieces no wider than `max_width` (one if it fits)."""
    pieces = [""]
    for letter in word:
        if pieces[-1] and font.getlength(pieces[-1] + letter) > max_width:
            pieces.append("")
        pieces[-1] += letter
    return pieces


def render_text_image(
    text: str,
    *,
    size: tuple[int, int] | None = None,
    font_size: int = 32,
    colour: Colour = (0, 0, 0),
    background: Colour | Image.Image = (255, 255, 255),
    font: str | Path | None = None,
    seed: int | None = None,
    stroke_width: int = 0,
    stroke_colour: Colour = (0, 0, 0),
) -> Image.Image:
    """`text` drawn legibly, wrapped to fit; `size=None` fits the image to the text.

    With a fixed `size` the font shrinks (to 8 px at least) until the wrapped text fits without
    breaking a word, and `seed` moves the block to a random free position instead of the
    centre. A `background` image is resized to cover the canvas.
    """
    margin = max(4, font_size // 2)
    drawn = _fit_font(text, font, font_size, size, margin)
    block = _block_size(drawn, stroke_width)
    width, height = size or (block[0] + 2 * margin, block[1] + 2 * margin)
    canvas = _canvas(background, (width, height))
    origin = _origin((width, height), block, margin, seed)
    ImageDraw.Draw(canvas).multiline_text(
        origin,
        "\n".join(drawn.lines),
        font=drawn.font,
        fill=colour,
        spacing=drawn.spacing,
        stroke_width=stroke_width,
        stroke_fill=stroke_colour,
    )
    return canvas


class _Drawn:
    """Wrapped lines at one font size, and how much room they take."""

    def __init__(self, text: str, font: Font, size: int, max_width: float) -> None:
        """Wrap `text` to `max_width` and measure the block."""
        self.font = font
        self.spacing = max(2, size // 4)
        self.lines = wrap_text(text, font, max_width)
        self.breaks_words = len(" ".join(self.lines).split()) > len(text.split())
        box = ImageDraw.Draw(Image.new("L", (1, 1))).multiline_textbbox(
            (0, 0), "\n".join(self.lines), font=font, spacing=self.spacing
        )
        self.width, self.height = int(box[2]) + 1, int(box[3]) + 1


def _fit_font(
    text: str, font: str | Path | None, size: int, canvas: tuple[int, int] | None, margin: int
) -> _Drawn:
    """The text at the largest size up to `size` that fits `canvas` less its margins."""
    if canvas is None:
        return _Drawn(text, load_font(font, size), size, float("inf"))
    room_w, room_h = canvas[0] - 2 * margin, canvas[1] - 2 * margin
    while True:
        drawn = _Drawn(text, load_font(font, size), size, max(room_w, 1))
        fits = drawn.width <= room_w and drawn.height <= room_h and not drawn.breaks_words
        if fits or size <= MIN_FONT_SIZE:
            return drawn
        size = max(MIN_FONT_SIZE, int(size * 0.85))


def _block_size(drawn: _Drawn, stroke_width: int) -> tuple[int, int]:
    """Room the drawn text takes, outline included."""
    return drawn.width + 2 * stroke_width, drawn.height + 2 * stroke_width


def _canvas(background: Colour | Image.Image, size: tuple[int, int]) -> Image.Image:
    """A fresh RGB canvas: a flat colour, or the background image stretched to `size`."""
    if isinstance(background, Image.Image):
        return background.convert("RGB").resize(size, Image.Resampling.BILINEAR)
    return Image.new("RGB", size, background)


def _origin(
    canvas: tuple[int, int], block: tuple[int, int], margin: int, seed: int | None
) -> tuple[int, int]:
    """Top-left of the text block: centred, or at a seeded random spot inside the margins."""
    free_x, free_y = max(0, canvas[0] - block[0]), max(0, canvas[1] - block[1])
    if seed is None:
        return free_x // 2, free_y // 2
    rng = random.Random(seed)
    low_x, low_y = min(margin, free_x // 2), min(margin, free_y // 2)
    return rng.randint(low_x, free_x - low_x), rng.randint(low_y, free_y - low_y)


def smooth_photo(width: int, height: int, seed: int = 0) -> Image.Image:
    """Smooth colour fields plus sensor-like noise: cheap at any size, and no two tiles alike."""
    y, x = np.mgrid[0:height, 0:width]
    rng = np.random.default_rng(seed)
    fields = [128 + 100 * np.sin(x / 180) * np.cos(y / 240), 90 + 120 * y / height, 200 - x / 10]
    pixels = np.stack(fields, -1) + rng.normal(0, 12, (height, width, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def photo_like(seed: int, size: tuple[int, int] = (512, 384)) -> Image.Image:
    """A seeded stand-in for a photo: colour gradients, soft shapes and sensor-like noise."""
    rng = np.random.default_rng(seed)
    width, height = size
    image = Image.fromarray(_gradient(rng, width, height))
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(3, 9))):
        _random_shape(draw, rng, width, height)
    image = image.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(1.0, 4.0))))
    noise = rng.normal(0.0, 8.0, (height, width, 3))
    pixels = np.asarray(image, dtype=np.float64) + noise
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def _gradient(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """A linear two-colour gradient at a random angle, as RGB pixels."""
    start, end = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    angle = rng.uniform(0, np.pi)
    xs, ys = np.meshgrid(np.linspace(0, 1, width), np.linspace(0, 1, height))
    ramp = np.cos(angle) * xs + np.sin(angle) * ys
    ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1e-9)
    pixels = start + ramp[..., None] * (end - start)
    return pixels.astype(np.uint8)


def _random_shape(
    draw: ImageDraw.ImageDraw, rng: np.random.Generator, width: int, height: int
) -> None:
    """One filled ellipse or rectangle of a random colour somewhere on the canvas."""
    x0, x1 = sorted(int(v) for v in rng.integers(0, max(width, 2), 2))
    y0, y1 = sorted(int(v) for v in rng.integers(0, max(height, 2), 2))
    fill = tuple(int(v) for v in rng.integers(0, 256, 3))
    if rng.random() < 0.5:
        draw.ellipse((x0, y0, x1, y1), fill=fill)
    else:
        draw.rectangle((x0, y0, x1, y1), fill=fill)


def half_size(image: Image.Image) -> Image.Image:
    """`image` at half its width and height: how a repost is often resized."""
    return image.resize((image.width // 2, image.height // 2), Image.Resampling.BILINEAR)


def jpeg_70(image: Image.Image) -> Image.Image:
    """`image` recompressed as JPEG at quality 70."""
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=70)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def crop_area_5(image: Image.Image) -> Image.Image:
    """5% of the area cut evenly from the four edges (each side keeps sqrt(0.95))."""
    keep = math.sqrt(0.95)
    dx, dy = round(image.width * (1 - keep) / 2), round(image.height * (1 - keep) / 2)
    return image.crop((dx, dy, image.width - dx, image.height - dy))


def warm_or_cool_shape(warm: bool, rng: np.random.Generator, size: int = 96) -> Image.Image:
    """A disc or a square (at a random place and size, on a noisy background) whose colour
    leans warm (more red than blue) or cool: a known truth for learning-curve tests of heads."""
    noise = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    image = Image.fromarray(noise // 2 + 64)
    draw = ImageDraw.Draw(image)
    red, green, blue = (int(c) for c in rng.integers(0, 256, 3))
    if (red > blue) != warm:
        red, blue = blue, red
    side = int(rng.integers(size // 4, size // 2))
    x, y = (int(v) for v in rng.integers(0, size - side, 2))
    shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
    shape((x, y, x + side, y + side), fill=(red, green, blue))
    return image
