"""Pure pieces of the replica path: results per post, and splitting Serve batches per call."""

from __future__ import annotations

from contracts.vlm import About, TaskKind, VlmTask, empty_value
from operators.exceptions import ImageDecodeError
from operators.jobs import PostSignals
from pipelines.replica_core import result_of
from pipelines.serving import split_like
from pipelines.signal_records import InferenceRequest, InferenceResult

GUN = VlmTask(TaskKind.LABEL, "a gun")
PAY = VlmTask(TaskKind.QUESTION, "Does it ask to pay elsewhere?", About.POST)


def test_a_posts_values_counters_and_cut_tokens_cross_to_the_consumer():
    request = InferenceRequest("p", (), frozenset({GUN, PAY}), text="hi")
    signals = PostSignals({GUN: 0.7, PAY: 0.2}, text_tokens_cut=5, cache_hits=1, cache_misses=1)
    result = result_of(request, signals)
    assert result.failure is None and result.values == {GUN: 0.7, PAY: 0.2}
    assert (result.text_tokens_cut, result.cache_hits, result.cache_misses) == (5, 1, 1)


def test_a_posts_operator_error_becomes_its_failure_with_the_stage():
    request = InferenceRequest("p", (b"x",), frozenset({GUN}))
    result = result_of(request, ImageDecodeError("not a recognised image format"))
    assert result.values is None and result.failure is not None
    assert (result.failure.stage, result.failure.reason) == (
        "fetch-image",
        "not a recognised image format",
    )


def test_empty_values_say_the_model_saw_nothing():
    assert empty_value(GUN) == 0.0 and empty_value(PAY) == 0.0
    assert empty_value(VlmTask(TaskKind.DESCRIBE)) == ""
    assert empty_value(VlmTask(TaskKind.EMBED)) == []


def test_split_like_cuts_a_flat_batch_back_per_call_in_order():
    flat = [InferenceResult(str(n)) for n in range(6)]
    parts = split_like([["a"], [], ["b", "c", "d"], ["e", "f"]], flat)
    assert [[r.post_id for r in part] for part in parts] == [["0"], [], ["1", "2", "3"], ["4", "5"]]
