"""Every twinnable checkpoint: the engine the load-time check picks gives the plain engine's
probabilities within 1e-3, and the plain engine gives what a forward of the processor's own
inputs gives. Posts: text only, one image, three images, a large (tiling) image, long text.

A family added to `operators.families` with `checkpoints=` is covered here without a new test.
"""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from cli.main import app
from operators.exceptions import OperatorError
from operators.jobs import About, PostJob, TaskKind, VlmTask
from operators.selfcheck import TOLERANCE, _probe_image, processor_difference, with_engine
from operators.tasks import VlmOperator
from operators.twins import VLM_TWINS

TASKS = (
    VlmTask(TaskKind.QUESTION, "Does this post offer something for sale?", About.POST),
    VlmTask(TaskKind.LABEL, "a threat of violence", About.POST),
    VlmTask(TaskKind.QUESTION, "Is there a weapon in this image?"),
    VlmTask(TaskKind.LABEL, "a person"),
)
TEXT = "Selling my old bike, barely used. Message me for the price and pick-up. "


def posts() -> list[PostJob]:
    """The five post shapes every family must get right."""
    one = (_probe_image(320, 240, seed=21),)
    three = tuple(_probe_image(200 + 40 * n, 160, seed=30 + n) for n in range(3))
    large = (_probe_image(1400, 1000, seed=40),)
    return [
        PostJob((), TEXT, TASKS[:2]),
        PostJob(one, TEXT, TASKS),
        PostJob(three, TEXT, TASKS),
        PostJob(large, TEXT, TASKS),
        PostJob(one, TEXT * 60, TASKS),
    ]


@pytest.fixture(scope="module", params=sorted(VLM_TWINS))
def twin(request, twins):
    try:
        twins.directory(request.param)
    except ImportError as exc:  # Qwen's processors need torchvision, an optional package
        pytest.skip(f"{request.param}'s processor needs a package that is not installed: {exc}")
    return request.param, twins.vlm(request.param)


def test_the_checked_engine_gives_the_plain_engines_probabilities(twin, twins):
    name, vlm = twin
    served, check = twins.checked(name)  # `selfcheck.checked(vlm)`, once per session
    jobs = posts()
    ours = VlmOperator(served).run_posts(jobs)
    reference = VlmOperator(with_engine(vlm, "plain")).run_posts(jobs)
    for job, got, want in zip(jobs, ours, reference, strict=True):
        assert not isinstance(want, OperatorError), f"{name}: plain fails: {want}"
        assert not isinstance(got, OperatorError), f"{name} on {check.engine}: {got}"
        for task in job.tasks:
            assert got.values[task] == pytest.approx(want.values[task], abs=TOLERANCE), (
                f"{name} ({check.engine}, {len(job.images)} images, {len(job.text)} chars): "
                f"{task.text}"
            )


def test_the_plain_engine_gives_what_the_processors_own_inputs_give(twin):
    name, vlm = twin
    difference = processor_difference(vlm)
    assert difference is not None, f"{name}: the processor tokenizes our one-image prompt otherwise"
    assert difference <= TOLERANCE, name


def test_a_prompt_starts_with_the_processors_leading_tokens_once(twin):
    from operators.prefixes import image_prefix_ids

    name, vlm = twin
    tokenizer = vlm.tokenizer
    prompt = vlm.layout.prefix + "Is it?"
    ids = image_prefix_ids(vlm, [vlm.image_token_id])
    expected = tokenizer(prompt, add_special_tokens=not prompt.startswith(str(tokenizer.bos_token)))
    assert ids[:2] == expected["input_ids"][:2], name
    if tokenizer.bos_token_id is not None:
        assert ids[:2] != [tokenizer.bos_token_id] * 2, f"{name}: two BOS"


# The engine each family is served on after the load-time check (docs/model-families.md says why).
SERVED_ON = {
    "HuggingFaceTB/SmolVLM-256M-Instruct": "eager",
    "HuggingFaceTB/SmolVLM2-2.2B-Instruct": "eager",
    "llava-hf/llava-1.5-7b-hf": "eager",
    "llava-hf/llava-v1.6-mistral-7b-hf": "eager",
    "llava-hf/llava-onevision-qwen2-0.5b-ov-hf": "eager",
    "mistralai/Mistral-Small-3.1-24B-Instruct-2503": "eager",
    "OpenGVLab/InternVL3-1B-hf": "eager",
    "CohereLabs/aya-vision-8b": "eager",
    "google/gemma-3-4b-it": "plain",
    "google/paligemma2-3b-mix-224": "plain",
    "Qwen/Qwen2.5-VL-3B-Instruct": "plain",
    "Qwen/Qwen3-VL-2B-Instruct": "plain",
}
POLICY = (
    "id: p\nversion: 1\nsignals:\n  questions:\n    weapon: Is there a weapon?\n"
    "    sale: {ask: Does this post sell something?, about: post}\n"
    "rules:\n  - {id: w, when: answers.weapon > 0.99, action: review}\n"
)


def test_vlmod_moderate_on_the_twin_gives_the_plain_engines_probabilities(twin, tmp_path):
    name, vlm = twin
    image = tmp_path / "photo.png"
    _probe_image(640, 480, seed=5).image.save(image)
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "p.yaml").write_text(POLICY)
    args = ["moderate", "--policy", str(tmp_path / "policies"), "--model", vlm.spec.name_or_path]
    args += ["--text", "A bike.", "--image", str(image)]
    runs = {}
    for engine in ("eager", "plain"):
        result = CliRunner().invoke(app, [*args, "--engine", engine])
        assert result.exit_code == 0, result.output
        runs[engine] = json.loads(result.stdout)["model"], json.loads(result.stdout)["signals"]
    (served, answers), (plain, reference) = runs["eager"], runs["plain"]
    assert served["engine"] == SERVED_ON[name], served["engine_note"]
    if SERVED_ON[name] == "plain":
        assert "differs from a plain" in served["engine_note"]
    else:
        assert served["engine_note"] is None
    assert plain["engine"] == "plain" and plain["engine_note"] is None
    for signal, value in reference["answers"].items():
        assert answers["answers"][signal] == pytest.approx(value, abs=TOLERANCE), (name, signal)
