"""`ProfanityScorer`: how likely each text is to be profane or offensive, P in [0, 1].

A linear SVM over word n-grams (calibrated to probabilities) from `alt-profanity-check`, trained
on English tweets and Wikipedia comments. Its wheel ships the pickled model, and pins the
scikit-learn version it was pickled with, so loading it raises no version warning; a mismatch
would mean a broken install, so we let such a warning show rather than silence it. The package
is the optional extra `specialists`, imported (which loads the model, about a second) when the
first scorer is built, once per process.

>>> scorer = ProfanityScorer()  # doctest: +SKIP
>>> scores = scorer.probabilities(["have a lovely day", "you fucking idiot", ""])  # doctest: +SKIP
>>> [round(p) for p in scores]  # doctest: +SKIP
[0, 1, 0]
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

from operators.exceptions import InferenceError, ModelLoadError, error_text

INSTALL_HINT = "pip install 'vlm-moderation[specialists]'"


class ProfanityUnavailable(ModelLoadError):
    """alt-profanity-check is missing or its model will not load; the reason names the extra."""


class ProfanityFailed(InferenceError):
    """The profanity model failed on these texts."""


class ProfanityScorer:
    """Scores texts in one model call per batch; blank texts score 0.0 without a call."""

    def __init__(self) -> None:
        self._predict_prob = shared_model()

    def probabilities(self, texts: Sequence[str]) -> list[float]:
        """P(profane) of each text, in order."""
        scores = [0.0] * len(texts)
        worded = [index for index, text in enumerate(texts) if text.strip()]
        if not worded:
            return scores
        try:
            found = self._predict_prob([texts[index] for index in worded])
        except ValueError as exc:  # what scikit-learn raises on input it cannot vectorise
            raise ProfanityFailed(f"the profanity model failed: {error_text(exc)}") from exc
        for index, probability in zip(worded, found, strict=True):
            scores[index] = float(probability)
        return scores


_MODEL: list[Callable[[Sequence[str]], Any]] = []  # empty until loaded; a list for the lock
_MODEL_LOCK = threading.Lock()


def shared_model() -> Callable[[Sequence[str]], Any]:
    """The process's `predict_prob`, loaded on first use."""
    with _MODEL_LOCK:
        if not _MODEL:
            _MODEL.append(_load_model())
        return _MODEL[0]


def _load_model() -> Callable[[Sequence[str]], Any]:
    """Import the package, which unpickles its model; `ProfanityUnavailable` if it cannot."""
    try:
        from profanity_check import predict_prob
    except ImportError as exc:
        raise ProfanityUnavailable(
            f"profanity scoring needs alt-profanity-check: {INSTALL_HINT} ({error_text(exc)})"
        ) from exc
    except (OSError, EOFError, AttributeError) as exc:  # a truncated or incompatible pickle
        raise ProfanityUnavailable(
            f"the profanity model would not load: {error_text(exc)}; reinstall: {INSTALL_HINT}"
        ) from exc
    return predict_prob
