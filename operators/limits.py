"""What an image may cost, shared by the loader and the fetcher."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


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
