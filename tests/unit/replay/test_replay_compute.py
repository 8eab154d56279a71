"""`vlmod replay --compute-missing`: what the history lacks is computed by the (tiny) model.

The candidate asks a label the history never recorded. Without --compute-missing every post
is not replayable; with it, the tiny model computes the label for each post's image, and the
decisions follow the model's own answers, asked here directly of the same model (not through
the replay or the gatherer). The candidate's threshold sits at the median of those answers,
so half the posts change.
"""

from __future__ import annotations

import statistics

import pytest

from demo.samples import drawn_image
from pipelines.config import ModelSettings, PipelineConfig
from pipelines.signal_records import InferenceRequest
from pipelines.wiring import build_signal_source
from tests.unit.replay.builders import compile_text, decided, record_of, replay_json, write_jsonl

POSTS = 6
RECORDED = """\
id: images
version: 1
mode: active
signals:
  labels:
    weapon: "a weapon such as a gun or a knife"
default: allow
rules:
  - id: weapon
    when: labels.weapon > 0.8
    action: review
    queue: weapons
"""
GORE = '    gore: "graphic violence, blood or gore"\n'
CANDIDATE = (
    RECORDED.replace("version: 1", "version: 2").replace("default:", GORE + "default:", 1)
    + """\
  - id: gore
    when: labels.gore > {threshold!r}
    action: review
    queue: violence
"""
)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Posts with one image file each, their history, and the model's gore score per post."""
    folder = tmp_path_factory.mktemp("compute")
    images = folder / "images"
    images.mkdir()
    config = PipelineConfig(
        model=ModelSettings(name_or_path="tiny:smolvlm", device="cpu"),
        images={"file_root": str(images)},
        policy_dir=str(folder / "candidates"),
    )
    (folder / "pipeline.yaml").write_text(
        "model: {name_or_path: 'tiny:smolvlm', device: cpu}\n"
        f"images: {{file_root: '{images}'}}\n"
        f"policy_dir: '{folder / 'candidates'}'\n"
    )
    recorded = compile_text(folder / "recorded", "images.yaml", RECORDED)
    probe = compile_text(folder / "probe", "images.yaml", CANDIDATE.format(threshold=0.5))
    task = probe.asks["labels", "gore"].request
    source = build_signal_source(config)
    verdicts, scores = [], {}
    for n in range(POSTS):
        image = drawn_image(n)
        (images / f"{n}.png").write_bytes(image)
        post = {"id": f"p{n}", "text": "look", "images": [{"url": f"file://{images}/{n}.png"}]}
        post["images"][0]["mime"] = None
        verdicts.append(decided(recorded, record_of(recorded, post, {"labels.weapon": 0.1})))
        [result] = source.compute([InferenceRequest(f"p{n}", (image,), frozenset({task}))])
        scores[f"p{n}"] = result.values[task]
    return folder, write_jsonl(folder / "history.jsonl", verdicts), scores


def test_without_it_every_post_lacks_the_new_label(world):
    folder, history, _ = world
    compile_text(folder / "candidates", "images.yaml", CANDIDATE.format(threshold=0.5))
    report = replay_json("--policy", folder / "candidates", "--history", history)
    assert report["not_replayable"] == {
        "count": POSTS,
        "reasons": {"labels.gore not recorded": POSTS},
    }


def test_with_it_the_tiny_model_computes_the_label_and_the_posts_are_decided(world):
    folder, history, scores = world
    threshold = statistics.median(scores.values())
    compile_text(folder / "candidates", "images.yaml", CANDIDATE.format(threshold=threshold))
    report = replay_json(
        "--policy", folder / "candidates",
        "--history", history,
        "--compute-missing",
        "--config", folder / "pipeline.yaml",
    )  # fmt: skip
    assert report["not_replayable"]["count"] == 0
    flagged = sum(score > threshold for score in scores.values())
    assert 0 < flagged < POSTS, f"the tiny model's scores tie: {scores}"
    images = report["policies"]["images"]
    assert images["transitions"] == {"allow->allow": POSTS - flagged, "allow->review": flagged}
    assert images["rules"]["gore"]["after"] == flagged


def test_a_value_read_from_an_inline_image_the_record_did_not_keep_is_not_computed(world):
    folder, _, _ = world
    recorded = compile_text(folder / "recorded", "images.yaml", RECORDED)
    post = {"id": "inline", "text": "look", "images": [{"url": None, "mime": "image/png"}]}
    verdict = decided(recorded, record_of(recorded, post, {"labels.weapon": 0.1}))
    history = write_jsonl(folder / "inline.jsonl", [verdict])
    compile_text(folder / "candidates", "images.yaml", CANDIDATE.format(threshold=0.5))
    report = replay_json(
        "--policy", folder / "candidates",
        "--history", history,
        "--compute-missing",
        "--config", folder / "pipeline.yaml",
    )  # fmt: skip
    reason = "labels.gore not computed: the post's inline images were not recorded"
    assert report["not_replayable"] == {"count": 1, "reasons": {reason: 1}}
