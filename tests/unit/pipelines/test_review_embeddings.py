"""`review_embeddings: true`: every post asks the model for its post embedding, and its review
tasks carry exactly the vector the model gave (the one its record keeps), named by the model."""

from __future__ import annotations

import json

import pytest

from pipelines.config import ModelSettings, PipelineConfig
from pipelines.local import LocalModerator
from pipelines.producer_registry import pipeline_registry
from pipelines.steps import EMBED_PRODUCER, SourceMessage
from policies.loader import load_policy_dir

POLICY = """
id: words
version: 1
queues:
  spam: review.spam
rules:
  - id: spam
    when: text.contains("giveaway")
    action: review
    queue: spam
default: allow
"""


@pytest.fixture(scope="module")
def policy_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("policies")
    (directory / "words.yaml").write_text(POLICY)
    return directory


def _moderate(policy_dir, model: str, embeddings: bool, text: str):
    config = PipelineConfig(
        kafka={"bootstrap_servers": "unused:9092"},
        policy_dir=str(policy_dir),
        review_embeddings=embeddings,
        model=ModelSettings(name_or_path=model, device="cpu"),
    )
    policies = load_policy_dir(policy_dir, registry=pipeline_registry(config))
    local = LocalModerator.with_policies(config, policies)
    body = json.dumps({"id": "p", "text": text}).encode()
    [outcome] = local.moderator.moderate([SourceMessage(body, topic="t", partition=0, offset=0)])
    assert outcome.dead_letter is None, outcome.dead_letter
    return outcome


def _recorded_embedding(outcome):
    record = outcome.verdicts[0].verdict.record
    [value] = [v.value for v in record.values if v.producer == EMBED_PRODUCER]
    return value


def test_a_review_task_carries_the_post_embedding_the_model_gave(policy_dir):
    outcome = _moderate(policy_dir, "tiny:smolvlm", True, "big giveaway")
    [active] = outcome.verdicts
    embedding = active.review.task.embedding
    assert embedding is not None and embedding.model.endswith("tiny-smolvlm")
    assert len(embedding.vector) == 64  # the tiny model's hidden size
    assert embedding.vector == pytest.approx(_recorded_embedding(outcome), rel=0, abs=0)
    assert EMBED_PRODUCER in {run.name for run in active.verdict.producers}, "the model ran"


def test_without_the_setting_a_text_rule_decides_without_the_model_and_no_embedding(policy_dir):
    outcome = _moderate(policy_dir, "tiny:smolvlm", False, "big giveaway")
    [active] = outcome.verdicts
    assert active.review.task.embedding is None
    assert [run.name for run in active.verdict.producers] == []


def test_a_model_without_embeddings_leaves_the_task_without_one_and_loses_nothing(policy_dir):
    outcome = _moderate(policy_dir, "noop", True, "big giveaway")
    [active] = outcome.verdicts
    assert active.verdict.action == "review" and active.review.task.embedding is None
