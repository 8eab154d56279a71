"""Replica calls on a real Serve deployment: a small call by value answers as by reference, and
a call whose request or answer passes gRPC's 4 MiB is sent again by reference and answered."""

from __future__ import annotations

import logging

import pytest
from ray import serve

from pipelines.replica_calls import ReplicaCalls

APP = "replica-calls-test"
MIB = 1024 * 1024


@serve.deployment(name="echo", num_replicas=1, ray_actor_options={"num_cpus": 0})
class Echo:
    """Answers (bytes received, then `answer_bytes` bytes)."""

    async def __call__(self, payload: tuple[bytes, int]) -> tuple[int, bytes]:
        body, answer_bytes = payload
        return len(body), b"a" * answer_bytes


@pytest.fixture(scope="module")
def echo(ray_local):
    handle = serve.run(Echo.bind(), name=APP, route_prefix=None)
    yield handle
    serve.delete(APP)


def test_a_small_call_by_value_answers_like_one_by_reference(echo, caplog):
    with caplog.at_level(logging.WARNING, logger="pipelines.replica_calls"):
        by_value = ReplicaCalls(echo, MIB).call((b"x" * 1000, 10), 1000, timeout_s=60)
    by_reference = ReplicaCalls(echo, 0).call((b"x" * 1000, 10), 1000, timeout_s=60)
    assert by_value == by_reference == (1000, b"a" * 10)
    assert "too large" not in caplog.text


@pytest.mark.parametrize(
    "request_bytes, answer_bytes", [(5 * MIB, 10), (10, 5 * MIB)], ids=["request", "answer"]
)
def test_a_call_grpc_refuses_for_its_size_is_answered_by_reference(
    echo, caplog, request_bytes, answer_bytes
):
    calls = ReplicaCalls(echo, 4 * MIB)
    # Declared small enough to try by value: the size gRPC sees is what refuses it.
    with caplog.at_level(logging.WARNING, logger="pipelines.replica_calls"):
        got = calls.call((b"x" * request_bytes, answer_bytes), 1000, timeout_s=60)
    assert got == (request_bytes, b"a" * answer_bytes)
    assert "too large for gRPC; sent by reference" in caplog.text
