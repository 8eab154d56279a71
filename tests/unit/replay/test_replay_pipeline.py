"""Replay on what the pipeline itself recorded: the tiny model's verdicts, records and all.

Posts go through the local pipeline (`build_moderator`, as `vlmod moderate` builds it) with
a policy reading the model's labels and answers, links and the text. Decided again by the same
policy, nothing changes and every post is replayable, the planner's skipped signals included.
With a threshold moved, the transitions are those the model's scores in the verdicts' own
`signals` imply.
"""

from __future__ import annotations

import base64
import json
import statistics

import pytest

from demo.samples import drawn_image
from pipelines.config import ModelSettings, PipelineConfig
from pipelines.local import build_moderator
from pipelines.producer_registry import pipeline_registry
from pipelines.steps import SourceMessage
from pipelines.wiring import build_model_sources
from policies.loader import load_policy_dir
from tests.unit.replay.builders import compile_text, replay_json

POSTS = 8
POLICY = """\
id: pipeline
version: {version}
mode: {mode}
signals:
  labels:
    weapon: "a weapon such as a gun or a knife"
  questions:
    minor: "Does the image show a child or a teenager?"
  links: true
default: allow
rules:
  - id: spam-links
    when: links.count >= 2
    action: block
  - id: weapon
    when: labels.weapon > {threshold!r}
    action: review
    queue: weapons
  - id: weapon-with-minor
    when: labels.weapon > 0.2 && answers.minor > {threshold!r}
    action: review
    queue: child-safety
    priority: 1
  - id: selling
    when: text.matches("(?i)\\\\bfor sale\\\\b")
    action: review
    queue: market
"""
TEXTS = ("look", "knife for sale", "see http://a.example and http://b.example", None)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """The pipeline's verdicts (active and shadow) on the posts, and the weapon scores."""
    folder = tmp_path_factory.mktemp("pipeline")
    config = PipelineConfig(model=ModelSettings(name_or_path="tiny:smolvlm", device="cpu"))
    compile_text(folder / "live", "p.yaml", POLICY.format(version=1, mode="active", threshold=0.5))
    compile_text(folder / "live", "p-next.yaml", POLICY.format(version=2, mode="shadow",
                                                               threshold=0.3))  # fmt: skip
    policies = load_policy_dir(folder / "live", registry=pipeline_registry(config))
    moderator = build_moderator(config, policies, build_model_sources(config))
    messages = []
    for n in range(POSTS):
        image = base64.b64encode(drawn_image(n + 40)).decode()
        body = {"id": f"p{n}", "text": TEXTS[n % len(TEXTS)], "images": [{"data": image}]}
        messages.append(SourceMessage(json.dumps(body).encode()))
    verdicts = []
    for outcome in moderator.moderate(messages):
        assert outcome.dead_letter is None
        verdicts += [active.verdict for active in outcome.verdicts]
        verdicts += [shadow.verdict for shadow in outcome.shadows]
    history = folder / "history.jsonl"
    history.write_text("".join(v.model_dump_json() + "\n" for v in verdicts))
    assert sum(v.record is not None for v in verdicts) == POSTS  # once per post
    return folder, history, verdicts


def test_the_same_policies_decided_again_change_nothing(recorded):
    folder, history, _ = recorded
    report = replay_json("--policy", folder / "live", "--history", history, "--decide-unchanged")
    assert report["posts"] == POSTS
    assert report["not_replayable"]["count"] == 0
    for name in ("pipeline", "pipeline@shadow"):
        assert report["policies"][name]["replayed"] == POSTS
        assert report["policies"][name]["changed"] == 0


def test_a_moved_threshold_changes_what_the_recorded_scores_say(recorded):
    folder, history, verdicts = recorded
    active = [v for v in verdicts if not v.shadow]
    # Scores as the verdicts' own signals carry them; the planner may have skipped some.
    weapon = {v.post_id: v.signals.labels.get("weapon") for v in active}
    known = sorted(score for score in weapon.values() if score is not None)
    threshold = statistics.median(known)
    compile_text(folder / "moved", "p.yaml", POLICY.format(version=3, mode="active",
                                                           threshold=threshold))  # fmt: skip
    report = replay_json("--policy", folder / "moved", "--history", history)
    pipeline = report["policies"]["pipeline"]
    assert report["not_replayable"]["count"] == 0
    assert pipeline["replayed"] == POSTS
    # The weapon rule now matches exactly the posts whose recorded score passes the median.
    assert pipeline["rules"]["weapon"]["after"] == sum(
        score is not None and score > threshold for score in weapon.values()
    )
    before = sum(score is not None and score > 0.5 for score in weapon.values())
    assert pipeline["rules"]["weapon"]["before"] == before
    assert pipeline["rules"]["weapon"]["added"] == pipeline["rules"]["weapon"]["after"] - before
    assert pipeline["rules"]["weapon"]["added"] > 0
