"""`replay.fast` against the policy engine itself: the same decisions and the same reasons.

Random records for the example policies and for one written to use every shape of term the
fast path answers (and some it must not), with values missing, unavailable and of the wrong
type; each post is decided by `FastPolicy` and by `CompiledPolicy.evaluate` / `needed_for`.
"""

from __future__ import annotations

import math
import random
from pathlib import Path

import pytest

from contracts.history import PostRecord, RecordedValue
from contracts.producers import request_key
from contracts.records import Verdict
from pipelines.producer_registry import producer_registry
from policies.loader import load_policy_dir
from replay.engine import Replayer
from replay.history import RecordedPost
from tests.unit.replay.builders import compile_text

EXAMPLES = Path(__file__).resolve().parents[3] / "policies" / "examples"
SHAPES = """\
id: shapes
version: 1
mode: active
signals:
  labels:
    a: "a cat"
    b: "a dog"
  describe: true
  nsfw: true
  links: true
  banks: [known-bad]
default: allow
rules:
  - id: flag
    when: banks["known-bad"]
    action: block
  - id: not-flag-and-score
    when: '!banks["known-bad"] && labels.a >= 0.5'
    action: review
    queue: a
  - id: reversed
    when: 0.7 < nsfw && post.truncated
    action: escalate
  - id: not-cut
    when: '!post.truncated && labels.b == 0.25'
    action: review
    priority: 5
  - id: int-literal
    when: labels.b > 1
    action: review
  - id: either
    when: labels.a > 0.9 || labels.b > 0.9
    action: block
    priority: 3
  - id: caption
    when: description.matches("(?i)\\\\bcat\\\\b") && labels.b < 0.5
    action: review
  - id: text
    when: text.matches("(?i)buy now") && post.meta.channel == "ads"
    action: review
  - id: size
    when: size(text) > 10 && labels.a <= 0.1
    action: review
    priority: 7
  - id: links
    when: links.count >= 2 || links["shortened"] > 0
    action: review
    priority: 8
  - id: price
    when: has(post.meta.price) && post.meta.price < 100 && -0.5 < labels.a
    action: review
    priority: 9
  - id: outside-kitchen
    when: '!(has(post.meta.channel) && post.meta.channel == "kitchen") && text.contains("knife")'
    action: review
    priority: 11
  - id: arithmetic
    when: labels.a * 2.0 > 1.5
    action: review
    priority: 12
"""
TEXTS = ("", "buy NOW", "I just want to die", "a knife for sale", "swastika", None, 12)
METAS = (
    {},
    {"channel": "ads"},
    {"channel": "kitchen"},
    {"age_gated": True},
    {"age_gated": "yes"},
    {"price": 50},
    {"price": 150},
    {"price": 50.0},
    {"price": "cheap"},
    {"category": "kitchen", "price": 20},
)
CAPTIONS = ("a cat on a mat", "a dog", "a swastika flag", "", 3.5, None)


def odd(rng: random.Random, usual: object) -> object:
    """Mostly `usual`; sometimes a value of another type, or NaN."""
    roll = rng.random()
    if roll < 0.04:
        return rng.choice([True, False, 1, 0, "0.9", None, math.nan, [0.5]])
    return usual


def value_for(producer: str, rng: random.Random) -> object:
    if producer == "banks":
        return odd(rng, rng.random() < 0.2)
    if producer in ("describe", "ocr"):
        return odd(rng, rng.choice(CAPTIONS))
    if producer == "links":
        counts = {"count": rng.randint(0, 3), "shortened": odd(rng, rng.randint(0, 1))}
        return odd(rng, rng.choice([counts, {"count": 2.0}, {}]))
    return odd(rng, rng.choice([0.25, 0.5, 0.7, 0.9, 1.5, rng.random(), rng.random()]))


def random_posts(policies, count: int, seed: int) -> list[RecordedPost]:
    rng = random.Random(seed)
    asked = sorted({(r.producer, r.request) for p in policies for r in p.asks.values()}, key=repr)
    posts = []
    for n in range(count):
        values = []
        for producer, request in asked:
            roll = rng.random()
            key = {"producer": producer, "request": request_key(request)}
            if roll < 0.1:
                continue  # not recorded
            if roll < 0.15:
                values.append(RecordedValue(**key, unavailable="its store is down"))
            else:
                values.append(RecordedValue(**key, value=value_for(producer, rng)))
        meta = rng.choice(METAS)
        post = {"id": f"p{n}", "text": rng.choice(TEXTS), "images": [], "meta": meta}
        record = PostRecord(post=post, truncated=rng.random() < 0.2, values=values)
        recorded = RecordedPost(post["id"], record=record)
        for policy in policies:
            verdict = Verdict.model_validate(
                {
                    "post_id": post["id"],
                    "key": f"{post['id']}-{policy.ref.id}",
                    "action": "allow",
                    "policy": policy.ref.model_dump(),
                    "shadow": policy.mode.value == "shadow",
                }
            )
            recorded.add(verdict)
        posts.append(recorded)
    return posts


def outcomes(replayer: Replayer, posts: list[RecordedPost]) -> list[tuple]:
    found = []
    for post in posts:
        for outcome in replayer.replay(post).outcomes:
            after = outcome.after
            found.append(
                (
                    post.post_id,
                    outcome.candidate.name,
                    None if after is None else (after.action, after.rules),
                    outcome.missing,
                )
            )
    return found


@pytest.mark.parametrize("seed", [1, 2])
def test_fast_decisions_are_the_engines_on_the_example_policies(seed):
    policies = load_policy_dir(EXAMPLES, registry=producer_registry())
    posts = random_posts(policies.policies, 800, seed)
    fast = Replayer(policies, decide_unchanged=True)
    exact = Replayer(policies, decide_unchanged=True, exact=True)
    assert outcomes(fast, posts) == outcomes(exact, posts)


def test_fast_decisions_are_the_engines_on_every_shape_of_term(tmp_path):
    compile_text(tmp_path / "shapes", "shapes.yaml", SHAPES)
    policies = load_policy_dir(tmp_path / "shapes", registry=producer_registry())
    posts = random_posts(policies.policies, 3000, 3)
    fast = Replayer(policies, decide_unchanged=True)
    found = outcomes(fast, posts)
    assert found == outcomes(Replayer(policies, decide_unchanged=True, exact=True), posts)
    # The sample reaches every outcome: each rule matches somewhere, and posts are stopped.
    matched = {rule for *_, decided, _ in found if decided for rule in decided[1]}
    assert matched >= {rule.id for rule in policies.policies[0].rules}
    assert any(missing for *_, missing in found)


def test_the_shapes_it_answers_and_those_it_leaves_to_cel(tmp_path):
    from replay.fast import FastPolicy

    compile_text(tmp_path / "shapes", "shapes.yaml", SHAPES)
    policy = load_policy_dir(tmp_path / "shapes", registry=producer_registry()).policies[0]
    answered = {
        term.term.source: term.answer is not None
        for rule in FastPolicy(policy).rules
        for term in rule.terms
    }
    assert answered == {
        'banks["known-bad"]': True,
        '!banks["known-bad"]': True,
        "labels.a >= 0.5": True,
        "0.7 < nsfw": True,
        "post.truncated": True,
        "!post.truncated": True,
        "labels.b == 0.25": True,
        "labels.b > 1": True,  # an int literal: answered for an int or a double value
        "labels.a > 0.9 || labels.b > 0.9": True,
        'description.matches("(?i)\\\\bcat\\\\b")': True,
        "labels.b < 0.5": True,
        'text.matches("(?i)buy now")': True,
        'post.meta.channel == "ads"': True,
        "size(text) > 10": True,
        "labels.a <= 0.1": True,
        'links.count >= 2 || links["shortened"] > 0': True,
        "has(post.meta.price)": True,
        "post.meta.price < 100": True,
        "-0.5 < labels.a": True,
        '!(has(post.meta.channel) && post.meta.channel == "kitchen")': True,
        'text.contains("knife")': True,
        "labels.a * 2.0 > 1.5": False,  # arithmetic is left to CEL
    }
