"""Which producers of a stage share decoded images, and how many posts' images to hold at once.

Consecutive consumer producers that read decoded images (they declare `image_fit`) run as one
group over a few posts at a time: each post's images are decoded once for the group and
dropped after it (`SignalGatherer._run_decoded`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Protocol, TypeVar

from contracts.producers import Input, ProducerRegistry, SignalProducer

Fit = Callable[[int, int], tuple[int, int]]  # (width, height) -> the size a producer reads at
# Images held decoded at once for a group (a few MB each at OCR's size, 1600 px a side)
SHARED_IMAGES = 16


class HoldsImages(Protocol):
    """A post with its fetched images: a Journey, or a post sent to the specialist pool."""

    @property
    def images(self) -> Sequence[bytes] | None:
        """The image bytes, when fetched."""
        ...


PostT = TypeVar("PostT", bound=HoldsImages)


def decoding_groups(
    producers: Sequence[SignalProducer], registry: ProducerRegistry
) -> list[tuple[list[SignalProducer], list[Fit]]]:
    """`producers` in order, in runs: consecutive readers of decoded images together, with
    their fits; each other producer alone, with none. Order is kept, so `after` still holds."""
    groups: list[tuple[list[SignalProducer], list[Fit]]] = []
    for producer in producers:
        fit = registry.traits(producer.name).image_fit
        reads = fit if Input.IMAGES in producer.inputs else None
        if reads is not None and groups and groups[-1][1]:
            groups[-1][0].append(producer)
            groups[-1][1].append(reads)
        else:
            groups.append(([producer], [reads] if reads is not None else []))
    return groups


def chunks(posts: Sequence[PostT], images: int) -> Iterator[list[PostT]]:
    """`posts` in order, in runs holding about `images` images (at least one post each)."""
    chunk: list[PostT] = []
    held = 0
    for post in posts:
        chunk.append(post)
        held += len(post.images or ())
        if held >= images:
            yield chunk
            chunk, held = [], 0
    if chunk:
        yield chunk
