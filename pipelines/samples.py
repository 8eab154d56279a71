"""The demo's sample posts: small drawn images, realistic texts, and a few malformed messages."""

from __future__ import annotations

import base64
import io
import json
import random
from dataclasses import dataclass

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


def sample_posts(count: int = 24, *, seed: int = 0) -> list[SampleMessage]:
    """`count` well-formed posts (text only, or with 1 or 2 images, some reposted) + malformed."""
    rng = random.Random(seed)
    images = [base64.b64encode(drawn_image(seed * 1000 + i)).decode() for i in range(6)]
    messages = []
    for n in range(count):
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
