"""What an image may cost, shared by the loader and the fetcher."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class ImageLimits:
    """What an image may cost: bytes, pixels, fetch time, where it may come from."""

    max_bytes: int = 10_000_000
    max_pixels: int = 40_000_000
    fetch_timeout_s: float = 5.0
    max_redirects: int = 3
    file_root: Path | None = None
    allow_private_addresses: bool = False
    allowed_networks: tuple[str, ...] = ()

    @classmethod
    def for_decoding(cls, images: Mapping[str, Any]) -> ImageLimits:
        """The byte and pixel limits of a pipeline's `images:` section; defaults where unset."""
        default = cls()
        return cls(
            max_bytes=int(images.get("max_bytes") or default.max_bytes),
            max_pixels=int(images.get("max_pixels") or default.max_pixels),
        )
