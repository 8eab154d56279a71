"""What an image may cost, shared by the loader, the fetcher and the image specialists.

The pipeline's `images:` section is this record, so every field here is settable there.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from contracts.records import DEFAULT_MAX_IMAGES


def _network(network: str) -> str:
    """A network in CIDR notation, checked when the limits are built rather than per fetch."""
    try:
        ipaddress.ip_network(network)
    except ValueError:
        raise ValueError(f"{network!r} is not a network such as 10.1.2.0/24") from None
    return network


Network = Annotated[str, AfterValidator(_network)]


class ImageLimits(BaseModel):
    """What an image may cost: bytes, pixels, fetch time, where it may come from.

    Each refusal names the limit it hit.

    >>> ImageLimits(file_root="/srv/images").file_root
    PosixPath('/srv/images')
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_images: int = Field(DEFAULT_MAX_IMAGES, ge=1, description="Most images per post.")
    max_bytes: int = Field(10_000_000, gt=0, description="Largest encoded image.")
    max_pixels: int = Field(40_000_000, gt=0, description="Largest decoded image.")
    fetch_timeout_s: float = Field(5.0, gt=0, description="Timeout of one URL fetch.")
    max_redirects: int = Field(3, ge=0, description="Most redirects one URL fetch follows.")
    file_root: Path | None = Field(None, description="Directory file:// URLs may read under.")
    allow_private_addresses: bool = Field(False, description="Allow URLs to private networks.")
    allowed_networks: tuple[Network, ...] = Field(
        (),
        description="Networks (CIDR, e.g. 10.1.2.0/24) URLs may reach even when "
        "allow_private_addresses is off.",
    )


def limits_of(images: object) -> ImageLimits:
    """The image limits a `ProducerContext` carries (`images`); the defaults where none."""
    if images is None:
        return ImageLimits()
    if not isinstance(images, ImageLimits):
        kind = type(images).__name__
        raise TypeError(f"ProducerContext.images must be an ImageLimits, not a {kind}")
    return images
