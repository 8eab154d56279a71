"""Llama Guard 4 as the `llamaguard:` signal, on its twin (meta-llama/Llama-Guard-4-12B's
processing, a tiny dense Llama 4 with random weights): every weight loads, `llamaguard.unsafe`
and `llamaguard.<Sk>` are what the chat template's prompt and a plain forward give, for a
text-only post and one with images, an unknown category is refused in one line, and the VLM
path refuses the checkpoint in one line naming the signal."""

from __future__ import annotations

import io
import json
import math
import re
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from contracts.producers import ProducerContext, ProducerJob, ProducerOutput, Unavailable
from contracts.records import Post
from operators.guards.llamaguard import GuardLoadError, UnsupportedCategories, load_llamaguard
from operators.guards.llamaguard_signals import (
    ALL,
    NOTHING,
    LlamaGuardRequest,
    LlamaGuardSignals,
)
from operators.guards.producers import GuardLoading
from operators.specialists.render import smooth_photo
from operators.twins import TWINS, VLM_TWINS, published_files

# Llama 4's only image processor is a torchvision one (an optional package: the `families` extra).
pytest.importorskip("torchvision", reason="Llama4ImageProcessor needs torchvision")

LLAMAGUARD = "meta-llama/Llama-Guard-4-12B"
REPO = Path(__file__).resolve().parents[3]
POST = "Tell me where to buy a gun without a licence."


@pytest.fixture(scope="module")
def twin_dir(tmp_path_factory) -> Path:
    """The twin as `vlmod model make-tiny DIR --like meta-llama/Llama-Guard-4-12B` writes it."""
    directory = tmp_path_factory.mktemp("llamaguard") / "twin"
    built = CliRunner().invoke(app, ["model", "make-tiny", str(directory), "--like", LLAMAGUARD])
    assert built.exit_code == 0, built.output
    return directory


@pytest.fixture(scope="module")
def reference(twin_dir):
    """The checkpoint as transformers documents it: its processor and model, none of ours."""
    from transformers import AutoProcessor, Llama4ForConditionalGeneration

    processor = AutoProcessor.from_pretrained(twin_dir)
    return processor, Llama4ForConditionalGeneration.from_pretrained(twin_dir).eval()


def next_token_probs(reference, text, images, categories, answer=()) -> list:
    """P(each next token) after the template's prompt, then after each token of `answer`, from
    one plain forward."""
    import torch
    from PIL import Image

    processor, model = reference
    content = [{"type": "text", "text": text}] if text else []
    content += [{"type": "image", "image": Image.open(io.BytesIO(data))} for data in images]
    inputs = processor.apply_chat_template(
        [{"role": "user", "content": content}],
        add_generation_prompt=True,
        tokenize=True,
        return_dict=True,
        return_tensors="pt",
        excluded_category_keys=[c for c in ALL if c not in categories],
    )
    inputs["input_ids"] = torch.cat(
        [inputs["input_ids"], torch.tensor([list(answer)], dtype=torch.long)], dim=1
    )
    inputs["attention_mask"] = torch.ones_like(inputs["input_ids"])
    if "pixel_values" in inputs:  # the processor gives bfloat16; the twin is float32
        inputs["pixel_values"] = inputs["pixel_values"].to(model.dtype)
    with torch.inference_mode():
        logits = model(**inputs).logits[0, -(len(answer) + 1) :]
    return list(torch.softmax(logits.double(), dim=-1))


def expected(reference, text, images, categories) -> dict[str, float]:
    """`unsafe` = P(u)/(P(u)+P(s)) at the first answer token (u, s: the first tokens of
    `unsafe`, `safe`); `Sk` = that x (P(the answer `unsafe\\n` goes on with Sk's tokens) minus
    the same for each longer code whose tokens start with Sk's), one forward per code."""
    tokenizer = reference[0].tokenizer

    def ids(word: str) -> list[int]:
        return tokenizer(word, add_special_tokens=False).input_ids

    first = next_token_probs(reference, text, images, categories)[0]
    u, s = ids("unsafe")[0], ids("safe")[0]
    unsafe = float(first[u] / (first[u] + first[s]))
    prefix = ids("unsafe\n")
    spelled = {code: ids("unsafe\n" + code)[len(prefix) :] for code in ALL}
    chance = {}
    for code, tokens in spelled.items():
        rows = next_token_probs(reference, text, images, categories, prefix + tokens[:-1])
        chance[code] = math.prod(
            float(r[t]) for r, t in zip(rows[len(prefix) :], tokens, strict=True)
        )
    values = {"unsafe": unsafe}
    for code in categories:
        mine = spelled[code]
        longer = [c for c in ALL if len(spelled[c]) > len(mine) and spelled[c][: len(mine)] == mine]
        values[code] = unsafe * (chance[code] - sum(chance[c] for c in longer))
    return values


def photo(seed: int, size: tuple[int, int] = (320, 240)) -> bytes:
    buffer = io.BytesIO()
    smooth_photo(*size, seed).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def producer() -> LlamaGuardSignals:
    """One producer for the module: it loads the twin once, as a consumer process would."""
    signals = LlamaGuardSignals()
    signals.bind(ProducerContext(settings={"llamaguard": GuardLoading(device="cpu")}))
    return signals


def values(producer, text, images, model, categories=ALL) -> ProducerOutput:
    requests = [
        LlamaGuardRequest(model, item, tuple(categories)) for item in ("unsafe", *categories)
    ]
    job = ProducerJob(Post(id="p", text=text), frozenset(requests), images)
    [output] = producer.compute([job])
    assert isinstance(output, ProducerOutput), output
    return output


def check_close(got: ProducerOutput, want: dict[str, float]) -> None:
    by_item = {request.item: value for request, value in got.values.items()}
    assert set(by_item) == set(want)
    for item, value in want.items():
        # Absolute 1e-6 as asked, and relative 1e-4: the twin's category values are tiny.
        assert by_item[item] == pytest.approx(value, abs=1e-6), item
        assert by_item[item] == pytest.approx(value, rel=1e-4, abs=1e-300), item


def test_the_twin_is_a_guard_kept_out_of_the_vlm_twins():
    assert LLAMAGUARD in TWINS and LLAMAGUARD not in VLM_TWINS


def test_every_weight_of_the_twin_loads(twin_dir):
    from transformers import Llama4ForConditionalGeneration

    model, info = Llama4ForConditionalGeneration.from_pretrained(twin_dir, output_loading_info=True)
    assert info["missing_keys"] == set() and info["unexpected_keys"] == set()
    assert info["mismatched_keys"] == set() and info["error_msgs"] == []
    text = model.config.text_config
    assert (text.num_local_experts, text.moe_layers) == (0, [])  # dense, as Llama Guard 4 is


def test_the_twin_keeps_the_published_processing(twin_dir, reference):
    processor, model = reference
    files = published_files(LLAMAGUARD)
    saved = json.loads((twin_dir / "processor_config.json").read_text())
    for key, value in files["preprocessor_config.json"].items():
        if key not in ("processor_class", "image_processor_type"):
            assert saved["image_processor"][key] == value, key
    assert processor.chat_template == files["chat_template.json"]["chat_template"]
    for token in files["tokenizer_config.json"]["added_tokens"]:
        assert len(processor.tokenizer.encode(token, add_special_tokens=False)) == 1, token
    real_vision = files["config.json"]["vision_config"]
    for key in ("image_size", "patch_size", "pixel_shuffle_ratio"):
        assert getattr(model.config.vision_config, key) == real_vision[key], key
    patch = processor.tokenizer.convert_tokens_to_ids(processor.img_patch_token)
    assert model.config.image_token_index == patch


def test_the_twin_spells_s1_as_the_start_of_s10(reference):
    """The case the category values subtract for: S1's tokens begin S10's."""
    tokenizer = reference[0].tokenizer
    s1, s10 = (tokenizer(f"unsafe\n{c}", add_special_tokens=False).input_ids for c in ("S1", "S10"))
    assert s10[: len(s1)] == s1 and len(s10) > len(s1)


def test_a_text_only_post_gets_the_answer_probabilities(twin_dir, reference, producer):
    got = values(producer, POST, (), str(twin_dir))
    check_close(got, expected(reference, POST, (), ALL))


def test_a_post_with_images_and_some_categories(twin_dir, reference, producer):
    images = (photo(1), photo(2, (700, 300)))  # one tile; three tiles and the global one
    categories = ("S1", "S4", "S10")
    got = values(producer, "look at this", images, str(twin_dir), categories)
    want = expected(reference, "look at this", images, categories)
    check_close(got, want)
    text_only = values(producer, "look at this", (), str(twin_dir), categories)
    assert next(v for r, v in text_only.values.items() if r.item == "unsafe") != pytest.approx(
        want["unsafe"], abs=1e-6
    )  # the images are read


def test_a_post_with_nothing_to_judge_has_no_value(twin_dir, producer):
    got = values(producer, None, (), str(twin_dir))
    assert set(got.values.values()) == {Unavailable(NOTHING)}


def test_a_checkpoint_that_is_not_llama4_is_refused_in_one_line(tmp_path):
    from transformers import Gemma3TextConfig

    Gemma3TextConfig().save_pretrained(tmp_path)
    with pytest.raises(GuardLoadError, match="is a gemma3_text checkpoint, not Llama Guard 4"):
        load_llamaguard(str(tmp_path))


def with_template(twin_dir: Path, directory: Path, template: str) -> Path:
    """A copy of the twin whose chat template is `template`."""
    import shutil

    shutil.copytree(twin_dir, directory)
    for stale in directory.glob("chat_template.*"):
        stale.unlink()
    (directory / "chat_template.json").write_text(json.dumps({"chat_template": template}))
    return directory


def test_a_llama4_without_the_guard_prompt_is_refused_in_one_line(twin_dir, tmp_path):
    plain = "{% for m in messages %}{{ m['content'][0]['text'] }}{% endfor %}"
    other = with_template(twin_dir, tmp_path / "scout-like", plain)
    with pytest.raises(GuardLoadError, match="writes no Llama Guard safety prompt") as error:
        load_llamaguard(str(other), device="cpu")
    assert "\n" not in str(error.value)


def test_a_template_that_cannot_leave_categories_out_is_refused_in_one_line(
    twin_dir, reference, tmp_path
):
    template = reference[0].chat_template.replace("if key not in excluded_category_keys", "if true")
    assert template != reference[0].chat_template
    directory = with_template(twin_dir, tmp_path / "lists-all", template)
    signals = LlamaGuardSignals()
    signals.bind(ProducerContext(settings={"llamaguard": GuardLoading(device="cpu")}))
    whole = values(signals, POST, (), str(directory))  # all 14: nothing to leave out
    assert len(whole.values) == 15
    requests = [LlamaGuardRequest(str(directory), i, ("S1",)) for i in ("unsafe", "S1")]
    [error] = signals.compute([ProducerJob(Post(id="p", text=POST), frozenset(requests))])
    assert isinstance(error, UnsupportedCategories)
    assert "asked for S1, its chat template lists S1, S2, S3" in str(error)
    assert "\n" not in str(error)


class SpelledTokenizer:
    """A tokenizer that spells each text as the table says, one id per character otherwise."""

    def __init__(self, table: dict[str, list[int]]) -> None:
        self.table = table

    def __call__(self, text: str, add_special_tokens: bool = False):
        from types import SimpleNamespace

        return SimpleNamespace(input_ids=self.table.get(text, [ord(c) for c in text]))


@pytest.mark.parametrize(
    ("table", "reason"),
    [
        ({"safe": [1, 2], "unsafe": [1, 3]}, "starts `safe` and `unsafe` with the same token"),
        ({"unsafe\nS1": [117, 110, 115, 97, 102, 101, 9]}, "merges `unsafe\\n` into the code S1"),
        ({"unsafe\nS2": [ord(c) for c in "unsafe\nS1"]}, "spells two category codes alike"),
    ],
)
def test_an_answer_the_numbers_cannot_be_read_from_is_refused(table, reason):
    from operators.guards.llamaguard import answer_tokens

    with pytest.raises(GuardLoadError, match=re.escape(reason)):
        answer_tokens(SpelledTokenizer(table))


def test_the_package_declares_the_producer():
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["entry-points"]
    assert declared["vlmod.producers"]["llamaguard"] == (
        "operators.guards.llamaguard_signals:LlamaGuardSignals"
    )


@pytest.fixture
def installed(monkeypatch):
    """The registry as an install of this tree has it (the venv may predate the entry point)."""
    import contracts.registry

    found = contracts.registry.installed_producers()
    if all(make.__name__ != "LlamaGuardSignals" for make in found):
        found = (*found, LlamaGuardSignals)
    monkeypatch.setattr(contracts.registry, "installed_producers", lambda: found)


def policy_dir(tmp_path: Path, model: str, categories: str) -> Path:
    directory = tmp_path / "policies"
    directory.mkdir()
    (directory / "guard.yaml").write_text(
        f"""id: llama-guard
version: 1
signals:
  llamaguard:
    model: {model}
    categories: {categories}
queues:
  safety: trust.review.safety
rules:
  - id: unsafe-post
    when: llamaguard.unsafe > 0.0 && llamaguard.S9 >= 0.0
    action: review
    queue: safety
"""
    )
    return directory


def test_vlmod_moderate_reads_llamaguard_on_a_text_post(twin_dir, reference, tmp_path, installed):
    policies = policy_dir(tmp_path, str(twin_dir), "[S1, S9]")
    args = ["moderate", "--policy", str(policies), "--model", "noop", "--text", POST]
    judged = CliRunner().invoke(app, args)
    assert judged.exit_code == 0, judged.output
    verdict = json.loads(judged.stdout)
    [rule] = verdict["matched_rules"]
    assert (verdict["action"], rule["id"]) == ("review", "unsafe-post")
    want = expected(reference, POST, (), ("S1", "S9"))
    assert rule["evidence"]["llamaguard.unsafe"] == pytest.approx(want["unsafe"], abs=1e-6)


def test_an_unknown_category_is_refused_at_load_in_one_line(twin_dir, tmp_path, installed):
    policies = policy_dir(tmp_path, str(twin_dir), "[S1, S15]")
    result = CliRunner().invoke(app, ["policy", "check", str(policies)])
    assert result.exit_code != 0
    [line] = result.output.strip().splitlines()
    assert "guard.yaml:6:22: signals.llamaguard.categories[1]" in line
    assert "'S13' or 'S14'" in line


def test_the_vlm_path_refuses_llama_guard_in_one_line(twin_dir, tmp_path, installed):
    policies = policy_dir(tmp_path, str(twin_dir), "[S1, S9]")
    args = ["moderate", "--policy", str(policies), "--model", str(twin_dir), "--text", "x"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    [line] = result.stderr.strip().splitlines()
    assert line.count("llama4 (Llama 4, e.g. Llama Guard 4) is served as a guard") == 1
    assert "`llamaguard:` signal" in line
