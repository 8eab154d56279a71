"""Typed errors of the model work: every one names its stage and, for limits, the limit hit.

Image problems belong to the fetch-image stage, model problems to the infer stage. Standard
library only, like `policies.exceptions`, so the package runs on a bare GPU box.
"""

from __future__ import annotations

from contracts.errors import ModerationError, Stage
from contracts.services import error_text as error_text  # re-exported: operators' callers


class OperatorError(ModerationError):
    """Base of every error raised by `operators`; a failed job's result is one of these."""

    stage = Stage.INFER


class ImageError(OperatorError):
    """The image could not be fetched, decoded or accepted."""

    stage = Stage.FETCH_IMAGE


class ImageLimitExceeded(ImageError):
    """The image broke a configured limit; `limit` names it (e.g. `max_bytes`)."""

    def __init__(self, reason: str, *, limit: str) -> None:
        super().__init__(reason)
        self.limit = limit


class ImageTooLarge(ImageLimitExceeded):
    """Too many bytes or too many pixels (decompression bombs land here)."""


class ImageFetchTimeout(ImageLimitExceeded):
    """Fetching the image took longer than `fetch_timeout_s`."""


class ImageDecodeError(ImageError):
    """The bytes are not a readable image (truncated, corrupt, unknown format)."""


class UnsupportedImageSource(ImageError):
    """The source is neither bytes, base64, file:// nor http(s)://."""


class ImageFetchError(ImageError):
    """The remote server could not be reached or answered with an error."""


class BlockedAddress(ImageError):
    """The URL resolves, or redirects, to an address the limits forbid (SSRF guard)."""


class FileOutsideRoot(ImageError):
    """A file:// path lies outside the configured `file_root`, or no root is configured."""


class ImagePreprocessError(ImageError):
    """The model's processor rejected the image (degenerate size, extreme aspect ratio)."""


class InferenceError(OperatorError):
    """The model failed on this item."""


class UnsupportedTask(OperatorError):
    """A task the model cannot answer as asked (a caption or an embedding about the post)."""


class ModelLoadError(OperatorError):
    """The checkpoint could not be loaded; the reason says what to do."""


class UnsupportedModel(ModelLoadError):
    """The checkpoint's architecture lacks something the tasks need (e.g. yes/no tokens)."""
