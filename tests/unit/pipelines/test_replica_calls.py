"""Which way a call to a replica pool goes: by value over gRPC while small, else by reference;
a call gRPC refuses for its size is sent again by reference, any other failure is not."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
from pydantic import ValidationError

from contracts.vlm import About, TaskKind, VlmTask
from pipelines.config import PoolSettings
from pipelines.replica_calls import ReplicaCalls, too_large
from pipelines.serving import ServeSignalSource, call_bytes
from pipelines.signal_records import InferenceRequest, InferenceResult


def rpc_error(code: grpc.StatusCode) -> grpc.aio.AioRpcError:
    """The error a by-value Serve call raises when gRPC refuses or fails it."""
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details="refused")


@dataclass
class Answer:
    value: Any
    timeouts: list[float]

    def result(self, timeout_s: float) -> Any:
        self.timeouts.append(timeout_s)
        if isinstance(self.value, BaseException):
            raise self.value
        return self.value


@dataclass
class Handle:
    """Records calls the way Serve's handle takes them; `options` gives the by-value twin."""

    answer: Any = "answer"
    by_value_answer: Any = "by value"
    sent: list[tuple[str, Any]] = field(default_factory=list)
    timeouts: list[float] = field(default_factory=list)
    by_reference: bool = True
    twin: Handle | None = None

    def options(self, *, _by_reference: bool) -> Handle:
        assert _by_reference is False
        self.twin = Handle(self.by_value_answer, sent=self.sent, timeouts=self.timeouts)
        self.twin.by_reference = False
        return self.twin

    def remote(self, payload: Any) -> Answer:
        self.sent.append(("reference" if self.by_reference else "value", payload))
        return Answer(self.answer, self.timeouts)


def test_a_small_call_goes_by_value_with_its_timeout():
    handle = Handle()
    assert ReplicaCalls(handle, 100).call("p", 100, timeout_s=7.0) == "by value"
    assert handle.sent == [("value", "p")]
    assert handle.timeouts == [7.0]


def test_a_call_over_the_limit_or_of_unknown_answer_goes_by_reference():
    handle = Handle()
    calls = ReplicaCalls(handle, 100)
    assert calls.call("big", 101, timeout_s=1.0) == "answer"
    assert calls.call("embeddings", None, timeout_s=1.0) == "answer"
    assert handle.sent == [("reference", "big"), ("reference", "embeddings")]


def test_zero_sends_every_call_by_reference_without_a_by_value_handle():
    handle = Handle()
    calls = ReplicaCalls(handle, 0)
    assert calls.call("p", 0, timeout_s=1.0) == "answer"
    assert handle.twin is None
    assert handle.sent == [("reference", "p")]


def test_a_call_refused_for_its_size_is_sent_again_by_reference(caplog):
    handle = Handle(by_value_answer=rpc_error(grpc.StatusCode.RESOURCE_EXHAUSTED))
    with caplog.at_level(logging.WARNING, logger="pipelines.replica_calls"):
        assert ReplicaCalls(handle, 100).call("p", 50, timeout_s=1.0) == "answer"
    assert handle.sent == [("value", "p"), ("reference", "p")]
    assert "too large for gRPC" in caplog.text


@pytest.mark.parametrize(
    "error", [rpc_error(grpc.StatusCode.UNAVAILABLE), TimeoutError("no answer in 1 s")]
)
def test_any_other_failure_is_raised_not_sent_again(error):
    handle = Handle(by_value_answer=error)
    with pytest.raises(type(error)):
        ReplicaCalls(handle, 100).call("p", 50, timeout_s=1.0)
    assert handle.sent == [("value", "p")]


def test_only_grpcs_size_refusal_counts_as_too_large():
    assert too_large(rpc_error(grpc.StatusCode.RESOURCE_EXHAUSTED))
    assert not too_large(rpc_error(grpc.StatusCode.INTERNAL))
    assert not too_large(ValueError("RESOURCE_EXHAUSTED"))


def task(kind: TaskKind) -> VlmTask:
    return VlmTask(kind, "", About.IMAGE if kind is TaskKind.DESCRIBE else About.POST)


def test_a_model_call_carries_its_images_and_text_and_embeddings_make_it_unknown():
    plain = [
        InferenceRequest("a", (b"x" * 10, b"y" * 5), frozenset({task(TaskKind.DESCRIBE)}), "hey"),
        InferenceRequest("b", (), frozenset({task(TaskKind.QUESTION)}), None),
    ]
    assert call_bytes(plain) == 18
    embedding = InferenceRequest("c", (), frozenset({task(TaskKind.EMBED)}), "hi")
    assert call_bytes([*plain, embedding]) is None


def test_the_signal_source_falls_back_and_turns_other_failures_into_post_failures():
    results = [InferenceResult("a", values={})]
    refused = Handle(answer=results, by_value_answer=rpc_error(grpc.StatusCode.RESOURCE_EXHAUSTED))
    request = InferenceRequest("a", (b"x",), frozenset({task(TaskKind.QUESTION)}))
    assert ServeSignalSource(refused, grpc_max_bytes=10).compute([request]) == results
    assert [way for way, _ in refused.sent] == ["value", "reference"]

    down = Handle(by_value_answer=rpc_error(grpc.StatusCode.UNAVAILABLE))
    (failed,) = ServeSignalSource(down, grpc_max_bytes=10).compute([request])
    assert failed.post_id == "a" and failed.failure is not None
    assert "refused" in failed.failure.reason


def test_the_setting_defaults_to_one_mib_and_stays_under_grpcs_limit():
    assert PoolSettings().replica_grpc_max_bytes == 1_048_576
    with pytest.raises(ValidationError, match="replica_grpc_max_bytes"):
        PoolSettings(replica_grpc_max_bytes=4_194_305)
