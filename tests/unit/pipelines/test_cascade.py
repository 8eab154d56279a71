"""Several models in one pipeline: cheap models first, a large one only where a rule is open."""

from __future__ import annotations

import base64
import json

import pytest

from contracts.errors import ConfigInvalid
from contracts.producers import Cost
from contracts.records import ModelRef
from contracts.vlm import DEFAULT_MODEL, TaskKind, empty_value
from demo.samples import drawn_image
from kafka_io.settings import KafkaSettings
from pipelines.config import PipelineConfig
from pipelines.local import build_moderator
from pipelines.model_settings import NamedModelSettings
from pipelines.producer_registry import pipeline_registry
from pipelines.signal_records import InferenceResult
from pipelines.signal_source import NoopSignals
from pipelines.stages import ModelSources, stages_of
from pipelines.steps import SourceMessage
from policies.loader import load_policy_dir
from tests.unit.policies.test_models import CASCADE

PNG = base64.b64encode(drawn_image(1)).decode()


class ScoringSource:
    """A model that answers every question about a post with the score its text names."""

    def __init__(self, name: str, calls: list[tuple[str, str]]) -> None:
        self.model = ModelRef(name=f"scripted-{name}")
        self.name, self.calls = name, calls

    def compute(self, requests):
        results = []
        for request in requests:
            self.calls.append((self.name, request.post_id))
            score = float(request.text or 0)
            values = {
                task: score if task.kind is TaskKind.QUESTION else empty_value(task)
                for task in request.tasks
            }
            results.append(InferenceResult(request.post_id, values))
        return results


def two_model_config(policy_dir, *, default_cost="small", named="large", named_cost="large"):
    return PipelineConfig(
        kafka=KafkaSettings(bootstrap_servers="unused:9092"),
        policy_dir=str(policy_dir),
        model={"name_or_path": "noop", "cost": default_cost},
        models={named: NamedModelSettings(name_or_path="noop", cost=named_cost)},
    )


@pytest.fixture
def policy_dir(tmp_path):
    (tmp_path / "cascade.yaml").write_text(CASCADE)
    return tmp_path


def moderate(config, sources, scores):
    policies = load_policy_dir(config.policy_dir, registry=pipeline_registry(config))
    moderator = build_moderator(config, policies, sources)
    messages = [
        SourceMessage(
            json.dumps({"id": f"p{n}", "text": str(score), "images": [{"data": PNG}]}).encode()
        )
        for n, score in enumerate(scores)
    ]
    verdicts = [a.verdict for outcome in moderator.moderate(messages) for a in outcome.verdicts]
    return {verdict.post_id: verdict for verdict in verdicts}


def test_one_model_keeps_one_model_stage():
    models = ModelSources({DEFAULT_MODEL: NoopSignals()}, {DEFAULT_MODEL: 0})
    stages = stages_of([Cost.MODEL, Cost.TRIVIAL], {Cost.MODEL}, models)
    assert [(s.cost, s.rank, s.models) for s in stages] == [
        (Cost.TRIVIAL, 0, ()),
        (Cost.MODEL, 0, ("default",)),
    ]


def test_models_of_one_cost_share_a_stage_and_dearer_ones_come_after():
    sources = {name: NoopSignals() for name in ("default", "also-small", "large")}
    models = ModelSources(sources, {"default": 0, "also-small": 0, "large": 1})
    stages = stages_of([Cost.SPECIALIST, Cost.MODEL], {Cost.MODEL}, models)
    assert [(s.cost, s.models) for s in stages] == [
        (Cost.SPECIALIST, ()),
        (Cost.MODEL, ("default", "also-small")),
        (Cost.MODEL, ("large",)),
    ]


def test_the_large_model_is_called_only_for_posts_the_small_one_left_undecided(policy_dir):
    calls: list[tuple[str, str]] = []
    sources = {"default": ScoringSource("small", calls), "large": ScoringSource("large", calls)}
    scores = [0.1, 0.9, 0.5, 0.05, 0.95, 0.6, 0.3]
    verdicts = moderate(two_model_config(policy_dir), sources, scores)
    undecided = {f"p{n}" for n, score in enumerate(scores) if 0.2 < score <= 0.8}
    asked_large = [post for model, post in calls if model == "large"]
    assert sorted(asked_large) == sorted(undecided) and len(undecided) < len(scores)
    assert [post for model, post in calls if model == "small"] == [f"p{n}" for n in range(7)]
    assert calls.index(("large", asked_large[0])) == len(scores), "every small call comes first"
    for post, verdict in verdicts.items():
        expected = ["default", "large"] if post in undecided else ["default"]
        assert list(verdict.models) == expected
        assert verdict.model == ModelRef(name="scripted-small"), "the default model, as before"
    assert verdicts["p1"].action == "block" and verdicts["p0"].action == "allow"
    assert verdicts["p2"].signals.answers == {"weapon": 0.5, "weapon_large": 0.5}


def test_a_cheap_named_model_runs_before_a_large_default_one(policy_dir):
    # The same cascade with the roles swapped: the default model is the large one.
    cascade = CASCADE.replace('weapon: "Is there a weapon?"', 'weapon: {ask: "x", model: small}')
    cascade = cascade.replace("model: large", "model: default")
    (policy_dir / "cascade.yaml").write_text(cascade)
    config = two_model_config(policy_dir, default_cost="large", named="small", named_cost=0)
    calls: list[tuple[str, str]] = []
    sources = {"default": ScoringSource("large", calls), "small": ScoringSource("small", calls)}
    verdicts = moderate(config, sources, [0.1, 0.5, 0.9])
    assert calls == [("small", "p0"), ("small", "p1"), ("small", "p2"), ("large", "p1")]
    assert [list(verdicts[p].models) for p in ("p0", "p1")] == [["small"], ["small", "default"]]


def test_sources_must_be_given_for_exactly_the_configs_models(tmp_path):
    config = two_model_config(tmp_path)
    models = ModelSources.of(config, {"default": NoopSignals(), "large": NoopSignals()})
    assert dict(models.ranks) == {"default": 0, "large": 1}
    with pytest.raises(ConfigInvalid, match="the config names default, large; sources were"):
        ModelSources.of(config, NoopSignals())
