"""A post's images, each decoded once and shared by every producer that reads it.

The image specialists read the same pictures at different sizes (NSFW at most 512 px a side,
PDQ 512 px on the long side, OCR up to `ocr.max_side`). The pipeline decodes each image once,
on first use, straight to the widest of those sizes (`widest`; a JPEG at 1/2 to 1/8 scale),
and each reader shrinks its copy from there; an image that cannot be decoded raises the same
`ImageError` for each reader.

>>> import io
>>> from PIL import Image
>>> buffer = io.BytesIO()
>>> Image.new("RGB", (2000, 1000), "grey").save(buffer, "JPEG")
>>> fit = widest([lambda w, h: (w // 4, h // 4), lambda w, h: (w // 2, h // 8)])
>>> images = DecodedImages([buffer.getvalue()], ImageLimits(), fit)
>>> images.get(0).image.size, images.get(0).original_size
((1000, 500), (2000, 1000))
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from operators import images as decoding
from operators.exceptions import ImageError
from operators.images import Fit, ReducedImage
from operators.limits import ImageLimits


class DecodedImages:
    """Encoded images decoded under `limits` to `fit`, each on first use, then kept."""

    def __init__(self, datas: Sequence[bytes], limits: ImageLimits, fit: Fit) -> None:
        self.datas = datas
        self.limits = limits
        self.fit = fit
        self._done: dict[int, ReducedImage | ImageError] = {}

    def __len__(self) -> int:
        return len(self.datas)

    def get(self, index: int) -> ReducedImage:
        """Image `index`, decoded the first time it is asked for; its ImageError if it cannot."""
        if index not in self._done:
            try:
                self._done[index] = decoding.decode_reduced(
                    self.datas[index], self.limits, self.fit
                )
            except ImageError as error:  # every reader of this image fails the same way
                self._done[index] = error
        found = self._done[index]
        if isinstance(found, ImageError):
            raise found
        return found


def widest(fits: Iterable[Fit]) -> Fit:
    """The aspect-kept size that serves every one of `fits`: no side smaller than any asks for.

    The picture keeps its shape (a reader that squashes it, as NSFW does, squashes its own
    copy), at the largest scale any fit asks for on either side, never above full size.
    """
    chosen = tuple(fits)

    def fit(width: int, height: int) -> tuple[int, int]:
        asked = [each(width, height) for each in chosen]
        scale = min(1.0, max((max(w / width, h / height) for w, h in asked), default=1.0))
        return max(1, round(width * scale)), max(1, round(height * scale))

    return fit
