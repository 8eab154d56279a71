"""A head trained by `vlmod heads train` on posts the tiny model embeds routes a held-out post
through a policy (`vlmod moderate`), and promote and rollback change the version in the verdicts
that follow in a running moderator, without a restart."""

from __future__ import annotations

import json
import uuid

import pytest
from typer.testing import CliRunner

from cli.main import app
from heads.producer import HeadSettings
from kafka_io.settings import KafkaSettings
from pipelines.config import PipelineConfig
from pipelines.local import LocalModerator
from pipelines.producer_registry import producer_registry
from policies.loader import load_policy_dir

pytest.importorskip("sklearn")

POLICY = """
id: waves
version: 1
signals:
  heads: [{head}]
rules:
  - id: spam-wave
    when: 'heads["{head}"] > 0.5'
    action: review
    queue: spam
default: allow
"""
SPAM = "cheap pills, buy now and save, limited offer number {n}"
HAM = "we watched the sunset at the beach with the kids, day {n}"


def invoke(*args: str) -> object:
    result = CliRunner().invoke(app, list(map(str, args)))
    assert "Traceback" not in result.output, result.output
    return result


def write_examples(path, spam_label: int) -> str:
    lines = []
    for n in range(16):
        lines.append({"post": {"id": f"s{n}", "text": SPAM.format(n=n)}, "label": spam_label})
        lines.append({"post": {"id": f"h{n}", "text": HAM.format(n=n)}, "label": 1 - spam_label})
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return str(path)


@pytest.fixture
def world(redis_url, tmp_path):
    head = f"wave-{uuid.uuid4().hex[:6]}"
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "waves.yaml").write_text(POLICY.format(head=head))
    train = (
        "heads", "train", head, "--model", "tiny:smolvlm", "--redis-url", redis_url, "--json",
        "--precision", "0.8", "--examples",
    )  # fmt: skip
    first = invoke(*train, write_examples(tmp_path / "spam.jsonl", spam_label=1))
    assert first.exit_code == 0, first.output
    figures = json.loads(first.stdout)
    assert figures["version"] == 1 and figures["auroc"] > 0.9, figures
    # A second version, trained the other way round: it flags the beach posts instead.
    second = invoke(*train, write_examples(tmp_path / "ham.jsonl", spam_label=0))
    assert second.exit_code == 0, second.output
    return head, policies, redis_url


def moderate(policies, redis_url, text: str) -> dict:
    args = ("moderate", "--policy", policies, "--redis-url", redis_url, "--text", text)
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def head_version(verdict, head: str) -> int:
    [run] = [p for p in verdict["producers"] if p["name"] == "heads"]
    return run["evidence"]["versions"][head]


def test_the_trained_head_routes_a_held_out_post(world):
    head, policies, redis_url = world
    flagged = moderate(policies, redis_url, SPAM.format(n=99))
    assert flagged["action"] == "review" and flagged["queue"] == "spam"
    assert head_version(flagged, head) == 1
    assert flagged["signals"]["heads"][head] > 0.5
    passed = moderate(policies, redis_url, HAM.format(n=99))
    assert passed["action"] == "allow" and passed["signals"]["heads"][head] < 0.5


def test_promote_and_rollback_reach_a_running_moderator(world):
    head, policies, redis_url = world
    config = PipelineConfig(
        kafka=KafkaSettings(bootstrap_servers="unused:9092"),
        policy_dir=str(policies),
        redis_url=redis_url,
        specialists={"heads": HeadSettings(refresh_s=1e-6)},
    )
    running = LocalModerator.with_policies(
        config, load_policy_dir(config.policy_dir, registry=producer_registry())
    )
    post = {"id": "p", "text": SPAM.format(n=7)}
    before, _ = running.moderate_one(post)
    assert before.action == "review"
    assert invoke("heads", "promote", head, "2", "--redis-url", redis_url).exit_code == 0
    after, _ = running.moderate_one(post)
    assert after.action == "allow"  # version 2 flags the other kind
    assert invoke("heads", "rollback", head, "--redis-url", redis_url).exit_code == 0
    again, _ = running.moderate_one(post)
    assert again.action == "review"
    versions = [head_version(v.model_dump(mode="json"), head) for v in (before, after, again)]
    assert versions == [1, 2, 1]


def test_a_head_redis_lacks_is_a_rule_error_naming_it(redis_url, tmp_path):
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "waves.yaml").write_text(POLICY.format(head="never-trained"))
    verdict = moderate(policies, redis_url, "anything")
    assert verdict["action"] == "allow"
    [error] = verdict["rule_errors"]
    assert error["id"] == "spam-wave" and "no head named 'never-trained'" in error["error"]


def test_training_on_drawn_images_reaches_the_learning_curve(redis_url, tmp_path):
    """100 posts whose label is the drawn shape's warmth (`bench/heads.py` measures the curve:
    held-out AUROC 0.81 ± 0.01 at 100 labels): the training's own held-out folds see it too."""
    import base64
    import io

    import numpy as np

    from operators.specialists.render import warm_or_cool_shape

    rng = np.random.default_rng(3)
    lines = []
    for n in range(100):
        out = io.BytesIO()
        warm_or_cool_shape(bool(n % 2), rng).save(out, "PNG")
        image = {"data": base64.b64encode(out.getvalue()).decode()}
        post = {"id": f"d{n}", "text": "look at this", "images": [image]}
        lines.append(json.dumps({"post": post, "label": n % 2}))
    examples = tmp_path / "drawn.jsonl"
    examples.write_text("\n".join(lines) + "\n")
    head = f"warm-{uuid.uuid4().hex[:6]}"
    args = ("heads", "train", head, "--examples", examples, "--model", "tiny:smolvlm")
    result = invoke(*args, "--redis-url", redis_url, "--json", "--precision", "0.7")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["auroc"] > 0.72
