"""The message contracts: JSON round trips, schemas, and field-level refusals."""

from __future__ import annotations

import base64
import json

import pytest
from jsonschema import Draft202012Validator

from contracts.errors import Stage
from contracts.records import (
    SCHEMAS,
    Action,
    DeadLetter,
    MatchedRule,
    ModelRef,
    PolicyRef,
    Post,
    ShadowVerdict,
    Signals,
    Verdict,
    VerdictDiff,
    verdict_key,
)

PNG_1PX = base64.b64encode(b"\x89PNG\r\n\x1a\n").decode()


def sample_post() -> Post:
    return Post.model_validate(
        {
            "id": "p1",
            "text": "hello",
            "images": [
                {"url": "https://example.com/a.jpg"},
                {"data": PNG_1PX, "mime": "image/png"},
            ],
            "author": "u9",
            "created_at": "2026-11-28T07:00:00Z",
            "lang": "en",
            "meta": {"country": "BR", "followers": 12},
            "campaign": "summer",
        }
    )


def sample_verdict() -> Verdict:
    return Verdict(
        post_id="p1",
        key=verdict_key("p1", "community-standards", 3),
        action=Action.REVIEW,
        queue="spam",
        priority=5,
        policy=PolicyRef(id="community-standards", version=3, sha256="ab" * 32),
        matched_rules=[
            MatchedRule(
                id="spam", action=Action.REVIEW, queue="spam", evidence={"text": "buy followers"}
            )
        ],
        signals=Signals(
            labels={"violence": 0.1}, answers={"minor": 0.0}, description="a cat", ocr="BUY NOW"
        ),
        model=ModelRef(name="HuggingFaceTB/SmolVLM-256M-Instruct", revision="main"),
        trace_id="0af7651916cd43dd8448eb211c80319c",
        latency_ms=12.5,
    )


def sample_dead_letter() -> DeadLetter:
    return DeadLetter(
        original=DeadLetter.encode_bytes(b"not json") or "",
        topic="posts",
        partition=0,
        offset=41,
        stage=Stage.DECODE,
        error_type="PostDecodeError",
        error="not JSON",
    )


def sample_shadow() -> ShadowVerdict:
    shadow = sample_verdict().model_copy(update={"shadow": True, "action": Action.BLOCK})
    diff = VerdictDiff(
        active=sample_verdict().policy,
        shadow=shadow.policy,
        action=(Action.REVIEW, Action.BLOCK),
        rules_added=["gore"],
    )
    return ShadowVerdict(verdict=shadow, diff=diff)


@pytest.mark.parametrize("make", [sample_post, sample_verdict, sample_dead_letter, sample_shadow])
def test_every_contract_round_trips_through_json(make):
    record = make()
    again = type(record).model_validate_json(record.model_dump_json())
    assert again == record


def test_post_keeps_unknown_fields():
    post = sample_post()
    assert json.loads(post.model_dump_json())["campaign"] == "summer"


def test_signals_keep_extra_values():
    assert json.loads(sample_verdict().model_dump_json())["signals"]["ocr"] == "BUY NOW"


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_json_schemas_are_valid(name):
    schema = SCHEMAS[name].model_json_schema()
    Draft202012Validator.check_schema(schema)
    assert schema["type"] == "object" and "properties" in schema


def test_verdict_key_is_stable_and_distinguishes_versions():
    assert verdict_key("p1", "cs", 3) == verdict_key("p1", "cs", 3)
    assert verdict_key("p1", "cs", 3) != verdict_key("p1", "cs", 4)
    assert verdict_key("p1", "cs", 3) != verdict_key("p2", "cs", 3)


def test_action_severity_orders_allow_to_escalate():
    ranked = sorted(Action, key=lambda action: action.severity)
    assert ranked == [Action.ALLOW, Action.REVIEW, Action.BLOCK, Action.ESCALATE]


def test_verdict_refuses_unknown_fields():
    data = json.loads(sample_verdict().model_dump_json()) | {"surprise": 1}
    with pytest.raises(ValueError, match="surprise"):
        Verdict.model_validate(data)
