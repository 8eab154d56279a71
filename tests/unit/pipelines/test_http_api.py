"""POST /v1/moderate's logic without Ray: raw bytes in, 200/413/422/500 with a short reason out."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path

import pytest
from fastapi import Request

from pipelines.config import ApiSettings, ModelSettings, PipelineConfig
from pipelines.local import LocalModerator
from pipelines.serving import moderation_response
from policies.loader import load_policy_dir

EXAMPLES = Path(__file__).resolve().parents[3] / "policies" / "examples"
LIMIT = 1_000
MARKER = "do-not-echo-me-" * 8


class FakeBody:
    """An ASGI `receive` that hands out chunks and counts what was read."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = list(chunks)
        self.read = 0

    async def __call__(self) -> dict:
        if not self.chunks:
            return {"type": "http.disconnect"}
        chunk = self.chunks.pop(0)
        self.read += len(chunk)
        return {"type": "http.request", "body": chunk, "more_body": bool(self.chunks)}


def request(body: FakeBody, content_length: int | None) -> Request:
    headers = [(b"content-type", b"application/json")]
    if content_length is not None:
        headers.append((b"content-length", str(content_length).encode()))
    scope = {"type": "http", "method": "POST", "path": "/v1/moderate", "headers": headers}
    return Request(scope, body)


@pytest.fixture(scope="module")
def moderator() -> LocalModerator:
    config = PipelineConfig(model=ModelSettings(name_or_path="noop"), policy_dir=str(EXAMPLES))
    return LocalModerator.with_policies(config, load_policy_dir(EXAMPLES))


def answer(moderate_one, raw: bytes, *, chunked: bool = False) -> tuple[int, dict, FakeBody]:
    chunks = [raw[i : i + 100] for i in range(0, len(raw), 100)] if chunked else [raw]
    body = FakeBody(chunks)
    declared = None if chunked else len(raw)
    response = asyncio.run(moderation_response(request(body, declared), moderate_one, LIMIT))
    return response.status_code, json.loads(bytes(response.body)), body


def test_a_post_gets_its_verdict(moderator):
    raw = json.dumps({"id": "h1", "text": "Buy followers now"}).encode()
    status, verdict, _ = answer(moderator.moderate_one, raw)
    assert status == 200, verdict
    assert (verdict["post_id"], verdict["action"]) == ("h1", "review")


def test_the_api_limit_is_a_config_field():
    assert PipelineConfig().api == ApiSettings(max_request_bytes=16_000_000)
    with pytest.raises(ValueError, match="bogus"):
        PipelineConfig.model_validate({"api": {"bogus": 1}})


def test_a_declared_length_over_the_limit_is_413_before_reading(moderator):
    status, body, received = answer(moderator.moderate_one, b"x" * (LIMIT + 1))
    assert status == 413
    assert body == {
        "detail": f"request body is over the limit of {LIMIT} bytes (api.max_request_bytes)"
    }
    assert received.read == 0, "the body was read although its declared length was too big"


def test_a_streamed_body_over_the_limit_is_413_without_reading_it_all(moderator):
    status, body, received = answer(moderator.moderate_one, b"x" * (50 * LIMIT), chunked=True)
    assert status == 413, body
    assert LIMIT < received.read <= LIMIT + 100, "reading stops at the first chunk past the limit"


def test_a_post_that_cannot_be_moderated_is_422_without_echoing_it(moderator):
    raw = json.dumps({"text": "no id", "meta": {"note": MARKER}}).encode()
    status, body, _ = answer(moderator.moderate_one, raw)
    assert status == 422
    assert set(body["detail"]) == {"stage", "error_type", "error", "post_id"}
    assert body["detail"]["stage"] == "validate"
    assert "id" in body["detail"]["error"]
    text = json.dumps(body)
    assert MARKER not in text
    assert base64.b64encode(raw).decode()[:40] not in text


@pytest.mark.parametrize(
    ("raw", "stage"),
    [(b"\xff\xfe not utf-8", "decode"), (b"[1, 2]", "decode"), (b"", "decode")],
)
def test_bodies_fastapi_could_not_hand_over_are_422_with_a_reason(moderator, raw, stage):
    status, body, _ = answer(moderator.moderate_one, raw)
    assert status == 422, body
    assert body["detail"]["stage"] == stage
    assert body["detail"]["error"]


def test_an_unexpected_error_is_500_with_a_one_line_reason():
    def explode(raw: bytes):
        raise RuntimeError("replica exploded\nwith a second line")

    status, body, _ = answer(explode, b'{"id": "x"}')
    assert status == 500
    assert body == {"detail": "internal error: RuntimeError: replica exploded"}
