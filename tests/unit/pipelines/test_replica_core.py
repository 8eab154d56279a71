"""Pure pieces of the replica path: folding image results per post, splitting Serve batches."""

from __future__ import annotations

from operators.exceptions import ImageDecodeError
from operators.jobs import ImageSignals
from pipelines.replica_core import fold_images
from pipelines.serving import split_like
from pipelines.signal_records import InferenceRequest, InferenceResult


def request(**kwargs) -> InferenceRequest:
    return InferenceRequest(post_id="p", images=(b"a", b"b"), **kwargs)


def test_fold_takes_the_max_of_each_probability_and_joins_captions():
    req = request(labels=frozenset({"gun"}), questions=frozenset({"kid?"}), describe=True)
    first = ImageSignals("a", labels={"gun": 0.2}, answers={"kid?": 0.9}, description="a cat")
    second = ImageSignals("b", labels={"gun": 0.7}, answers={"kid?": 0.1}, description="a dog")
    first.cache_hits, second.cache_misses = 2, 3
    result = fold_images(req, [first, second])
    assert result.failure is None and result.signals is not None
    assert result.signals.labels == {"gun": 0.7} and result.signals.answers == {"kid?": 0.9}
    assert result.signals.description == "a cat | a dog"
    assert (result.cache_hits, result.cache_misses) == (2, 3)


def test_fold_reports_the_first_failed_image_as_the_posts_failure():
    error = ImageDecodeError("not a recognised image format")
    result = fold_images(request(labels=frozenset({"gun"})), [ImageSignals("a"), error])
    assert result.signals is None and result.failure is not None
    assert (result.failure.stage, result.failure.reason) == (
        "fetch-image",
        "not a recognised image format",
    )


def test_fold_without_images_answers_zero_and_no_caption():
    req = InferenceRequest(post_id="p", images=(), labels=frozenset({"gun"}), describe=True)
    result = fold_images(req, [])
    assert result.signals is not None
    assert result.signals.labels == {"gun": 0.0} and result.signals.description is None


def test_split_like_cuts_a_flat_batch_back_per_call_in_order():
    flat = [InferenceResult(str(n)) for n in range(6)]
    parts = split_like([["a"], [], ["b", "c", "d"], ["e", "f"]], flat)
    assert [[r.post_id for r in part] for part in parts] == [["0"], [], ["1", "2", "3"], ["4", "5"]]
