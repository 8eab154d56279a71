"""A task's images as the console shows them: inline data as `data:` URIs, URLs through the console.

A post's image URL is the poster's: if the reviewer's browser fetched it, the poster would learn
who looked and when (a tracking pixel), and any address the browser can reach would be probed.
So the page never names the URL in an `src`; the reviewer's reveal asks the console
(`GET /image/{task key}/{index}`), which fetches it under the pipeline's image rules (SSRF checks,
byte, pixel and time limits), checks it decodes as a raster image, and answers with its bytes.
The Content-Security-Policy allows images from this origin and `data:` only.
"""

from __future__ import annotations

import base64
import binascii
import io
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

from contracts.records import ImageRef
from operators.images import ImageLoader
from operators.limits import ImageLimits

RASTER_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp", "image/bmp", "image/avif")
MAGIC = ((b"\x89PNG", "image/png"), (b"\xff\xd8\xff", "image/jpeg"), (b"GIF8", "image/gif"))
FETCHED_SCHEMES = ("http", "https", "file")
DISPLAY_EDGE = 2048  # the console serves fetched images at most this wide or tall


@dataclass(frozen=True)
class ImageView:
    """One image as the task page shows it: an inline `src`, a console URL to load on reveal,
    or neither, with why."""

    src: str | None
    note: str
    on_reveal: str | None = None


def image_view(image: ImageRef, task_key: str, index: int) -> ImageView:
    """Inline raster data as a `data:` URI; a URL as this console's address for it, on reveal."""
    if image.data is not None:
        mime = image.mime if image.mime in RASTER_TYPES else sniff_raster(image.data)
        if mime is None:  # SVG and friends can carry script; show no such thing
            return ImageView(None, f"inline image of type {image.mime or 'unknown'} not shown")
        return ImageView(f"data:{mime};base64,{image.data}", f"inline {mime}")
    url = str(image.url)
    if urlsplit(url).scheme.lower() not in FETCHED_SCHEMES:
        return ImageView(None, f"not an http(s) URL, not loaded: {url}")
    return ImageView(None, url, on_reveal=f"/image/{quote(task_key, safe='')}/{index}")


def sniff_raster(data: str) -> str | None:
    """The raster type the first bytes of base64 `data` announce, or None."""
    try:
        head = base64.b64decode(data[:24])
    except (binascii.Error, ValueError):
        return None
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    return next((mime for magic, mime in MAGIC if head.startswith(magic)), None)


def display_jpeg(url: str, limits: ImageLimits) -> bytes:
    """The image at `url`, fetched under `limits`, as a fresh JPEG for the reviewer's browser.

    Decoded and encoded anew: no metadata of the poster's (location, camera) reaches the
    reviewer, and nothing but a plain raster image can. Raises `ImageError` with the reason.
    """
    image = ImageLoader(limits).load(url).image
    image.thumbnail((DISPLAY_EDGE, DISPLAY_EDGE))
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=90)
    return out.getvalue()
