"""The demo's sample posts: small drawn images, realistic texts, and a few malformed messages.

The first three posts show the real specialists at work, on generated harmless images: a repost
of the image in the demo's `known-bad` hash bank (resized, recompressed, slightly cropped), a
flyer whose printed text sends readers to Telegram, and a post with profane text.
"""

from __future__ import annotations

import base64
import io
import json
import random
from dataclasses import dataclass
from typing import Any

from PIL import Image, ImageDraw

TEXTS = (
    "Sunset at the beach with friends",
    "Buy followers now! 10k for $5, DM me",
    "My new kitchen knife set arrived",
    "Selling brand new Rolex, 95% off, replica quality",
    "Happy birthday to my little sister!",
    "Click here to claim your free crypto: bit.ly/xyz",
    "Homemade bread, first try",
    "Anyone up for hiking this weekend?",
)


@dataclass(frozen=True)
class SampleMessage:
    """One message for the input topic, and what the demo expects to become of it."""

    key: bytes
    value: bytes
    malformed: bool = False


def drawn_image(seed: int, size: int = 96) -> bytes:
    """A small PNG of random shapes, different for each seed."""
    rng = random.Random(seed)
    image = Image.new("RGB", (size, size), tuple(rng.randrange(256) for _ in range(3)))
    draw = ImageDraw.Draw(image)
    for _ in range(4):
        box = sorted(rng.randrange(size) for _ in range(2)) + sorted(
            rng.randrange(size) for _ in range(2)
        )
        fill = tuple(rng.randrange(256) for _ in range(3))
        draw.ellipse((box[0], box[2], box[1], box[3]), fill=fill)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


# Text with one image, text alone, text with one image, text with two images: the model
# judges each post as a whole, whatever it holds.
IMAGES_PER_POST = (1, 0, 1, 2)


DEMO_BANK = "known-bad"
FLYER_TEXT = "DM me on Telegram to claim your prize"
PROFANE_TEXT = "this is fucking ridiculous, you idiots"


def banked_image() -> Image.Image:
    """The image the demo puts in its `known-bad` hash bank (a generated, harmless picture)."""
    from operators.specialists.render import photo_like

    return photo_like(5, (640, 480))


def png_bytes(image: Image.Image) -> bytes:
    """`image` as PNG bytes."""
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def repost_of(image: Image.Image) -> bytes:
    """How a known image comes back: 1% cropped off each side, half size, JPEG quality 70."""
    width, height = image.size
    dx, dy = width // 100, height // 100
    small = image.crop((dx, dy, width - dx, height - dy)).resize((width // 2, height // 2))
    out = io.BytesIO()
    small.save(out, format="JPEG", quality=70)
    return out.getvalue()


def scam_flyer() -> bytes:
    """A flyer with printed text that lures readers off the platform."""
    from operators.specialists.render import render_text_image

    return png_bytes(
        render_text_image(FLYER_TEXT, size=(480, 200), font_size=36, background=(255, 236, 150))
    )


def showcase_posts() -> list[dict[str, Any]]:
    """Posts whose verdicts come from the real specialists: a bank match, OCR, profanity."""
    inline = [base64.b64encode(data).decode() for data in (repost_of(banked_image()), scam_flyer())]
    return [
        {
            "id": "post-known-image",
            "text": "found this, thoughts?",
            "images": [{"data": inline[0]}],
        },
        {"id": "post-flyer", "text": "big news, see the picture", "images": [{"data": inline[1]}]},
        {"id": "post-profane", "text": PROFANE_TEXT},
    ]


def sample_posts(count: int = 24, *, seed: int = 0) -> list[SampleMessage]:
    """`count` well-formed posts (the showcase first, then text with 0-2 images) + malformed."""
    rng = random.Random(seed)
    images = [base64.b64encode(drawn_image(seed * 1000 + i)).decode() for i in range(6)]
    messages = []
    for post in showcase_posts()[:count]:
        post |= {"author": f"user-{rng.randrange(100)}", "lang": "en", "meta": {"surface": "feed"}}
        messages.append(SampleMessage(post["id"].encode(), json.dumps(post).encode()))
    for n in range(len(messages), count):
        post_id = f"post-{n:04d}"
        picked = [images[rng.randrange(len(images))] for _ in range(IMAGES_PER_POST[n % 4])]
        post = {
            "id": post_id,
            "text": TEXTS[n % len(TEXTS)],
            "author": f"user-{rng.randrange(100)}",
            "lang": "en",
            "images": [{"data": data, "mime": "image/png"} for data in picked],
            "meta": {"surface": rng.choice(["feed", "marketplace", "comments"])},
        }
        messages.append(SampleMessage(post_id.encode(), json.dumps(post).encode()))
    return messages + malformed_posts()


def malformed_posts() -> list[SampleMessage]:
    """Messages that must end on the dead-letter topic, each for a different reason."""
    broken_png = base64.b64encode(drawn_image(99)[:40]).decode()
    bodies: list[tuple[str, bytes]] = [
        ("bad-json", b"{not json"),
        ("no-id", json.dumps({"text": "who am I?"}).encode()),
        ("bad-images", json.dumps({"id": "bad-images", "images": "cat.jpg"}).encode()),
        ("bad-base64", json.dumps({"id": "bad-base64", "images": [{"data": "%%%"}]}).encode()),
        (
            "broken-image",
            json.dumps({"id": "broken-image", "images": [{"data": broken_png}]}).encode(),
        ),
    ]
    return [SampleMessage(key.encode(), body, malformed=True) for key, body in bodies]
