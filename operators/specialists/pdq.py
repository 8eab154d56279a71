"""PDQ perceptual hashes: 256 bits that stay within a few bits of each other when an image is
resized, recompressed or lightly cropped, so known images can be found again by Hamming distance.

PDQ is Meta's open hashing algorithm (the `pdqhash` bindings run Meta's C++ reference). Two
hashes of the same picture usually differ by well under 31 bits; unrelated pictures differ by
about 128.

>>> from PIL import Image, ImageDraw
>>> image = Image.linear_gradient("L").convert("RGB")
>>> ImageDraw.Draw(image).ellipse((40, 60, 200, 180), fill=(200, 30, 30))
>>> original = pdq_hash(image)
>>> smaller = pdq_hash(image.resize((128, 128)))
>>> hamming(original.bits, smaller.bits) <= 31, original.quality >= MIN_QUALITY
(True, True)
>>> PdqHash.from_hex(original.hex).bits == original.bits
True
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
from PIL import Image

from operators.images import decode_reduced, shrink
from operators.limits import ImageLimits

HASH_BYTES = 32  # 256 bits
# Meta's PDQ README (ThreatExchange pdq/README.md, "Matching") recommends discarding hashes of
# quality <= 49: they come from near-featureless images (flat colour, tiny thumbnails) and match
# far too much to act on. The same section recommends matching at distance <= 31.
MIN_QUALITY = 50
MATCH_THRESHOLD = 31
# PDQ reduces every image to 64x64 luma anyway, so shrinking to 512 px on the long side first (as
# other PDQ ports do) barely moves the hash and makes a 2000x1500 photo ~15x cheaper to hash.
# Encoded images are decoded straight to that size (a JPEG at 1/2 to 1/8 scale).
MAX_SIDE = 512
_HEX = re.compile(r"[0-9a-fA-F]{64}")


@dataclass(frozen=True)
class PdqHash:
    """A 256-bit PDQ hash and its quality (0-100; below `MIN_QUALITY` it should not be matched)."""

    bits: bytes
    quality: int

    def __post_init__(self) -> None:
        if len(self.bits) != HASH_BYTES:
            raise ValueError(f"a PDQ hash is {HASH_BYTES} bytes, got {len(self.bits)}")
        if not 0 <= self.quality <= 100:
            raise ValueError(f"PDQ quality runs from 0 to 100, got {self.quality}")

    @property
    def hex(self) -> str:
        """The 64 lowercase hex digits PDQ tools print and exchange (most significant bit first)."""
        return self.bits.hex()

    @classmethod
    def from_hex(cls, text: str, quality: int = 100) -> PdqHash:
        """Parse 64 hex digits (hex carries no quality: pass it if known); else ValueError."""
        if not isinstance(text, str) or not _HEX.fullmatch(text.strip()):
            shown = text if isinstance(text, str) else type(text).__name__
            raise ValueError(f"a PDQ hash is 64 hex digits, got {str(shown)[:80]!r}")
        return cls(bytes.fromhex(text.strip()), quality)

    @property
    def usable(self) -> bool:
        """Whether the quality is high enough for a match to mean anything."""
        return self.quality >= MIN_QUALITY


def pdq_hash(image: Image.Image) -> PdqHash:
    """The PDQ hash of a PIL image (any mode; converted to RGB, large ones shrunk first)."""
    try:
        import pdqhash
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "PDQ hashing needs pdqhash: pip install 'vlm-moderation[specialists]'"
        ) from exc
    rgb = shrink(image, hashed_size(*image.size))
    vector, quality = pdqhash.compute(np.ascontiguousarray(np.asarray(rgb, dtype=np.uint8)))
    return PdqHash(np.packbits(vector.astype(np.uint8)).tobytes(), int(quality))


def hash_image_bytes(data: bytes, limits: ImageLimits) -> PdqHash:
    """Decode `data` under `limits` (bombs and junk raise the typed image errors), then hash."""
    return pdq_hash(decode_reduced(data, limits, hashed_size).image)


def hashed_size(width: int, height: int) -> tuple[int, int]:
    """The size an image is hashed at: at most `MAX_SIDE` on its long side, aspect kept."""
    scale = min(1.0, MAX_SIDE / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def hamming(a: bytes, b: bytes) -> int:
    """The number of differing bits between two equally long byte strings."""
    if len(a) != len(b):
        raise ValueError(f"cannot compare hashes of {len(a)} and {len(b)} bytes")
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).bit_count()
