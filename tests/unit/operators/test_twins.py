"""Tiny twins of published checkpoints: real processing (SmolVLM tiling), small random weights.

Every task runs on the SmolVLM-256M twin for images that tile differently, and the shared-prefix
engine's answers equal one plain full-prompt forward of the same ids and pixels.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from operators.batching import encode_image
from operators.exceptions import UnsupportedModel
from operators.images import LoadedImage
from operators.jobs import About, ImageJob, ImageSignals, PostJob, PostSignals, TaskKind, VlmTask
from operators.loading import load_vlm
from operators.spec import ModelSpec
from operators.specialists.render import smooth_photo
from operators.tasks import VlmOperator
from operators.twins import TWINS, published_files
from operators.work import model_key
from tests.unit.operators.reference import plain_probability

SMOLVLM = "HuggingFaceTB/SmolVLM-256M-Instruct"
LLAVA = "llava-hf/llava-1.5-7b-hf"
SPAM = VlmTask(
    TaskKind.QUESTION, "Does this post ask the buyer to pay off the platform?", About.POST
)
THREAT = VlmTask(TaskKind.LABEL, "a threat of violence", About.POST)
WEAPON = VlmTask(TaskKind.QUESTION, "Is there a weapon?")
TEXT = "Selling my old bike, DM me on the other app and pay there."
# name -> (width, height); tiles under the real SmolVLM settings (2048 resize, 512 tiles).
SHAPES = {"wide": (1536, 512), "tall": (512, 1536), "small": (32, 32), "photo": (1536, 1024)}


def photo_like(width: int, height: int, seed: int = 0) -> LoadedImage:
    """A smooth photo-like image, so tiles differ from each other."""
    image = smooth_photo(width, height, seed)
    sha = f"{seed:02d}{width:05d}{height:05d}".ljust(64, "0")
    return LoadedImage(sha256=sha, image=image, nbytes=width * height * 3)


@pytest.fixture(scope="module")
def twin_dirs(twins) -> dict[str, Path]:
    return {name: twins.directory(name) for name in (SMOLVLM, LLAVA)}


@pytest.fixture(scope="module")
def smol(twins):
    return twins.vlm(SMOLVLM)


@pytest.fixture(scope="module")
def shaped() -> dict[str, LoadedImage]:
    return {name: photo_like(*size, seed=i) for i, (name, size) in enumerate(SHAPES.items())}


def tiles(vlm, image: LoadedImage) -> int:
    return int(encode_image(vlm, image.image).pixel_inputs["pixel_values"].shape[1])


def test_twin_keeps_the_published_processing(twin_dirs):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    for name, directory in twin_dirs.items():
        files = published_files(name)
        processor = AutoProcessor.from_pretrained(directory)
        model = AutoModelForImageTextToText.from_pretrained(directory)
        saved = json.loads((directory / "processor_config.json").read_text())
        for key, value in files["preprocessor_config.json"].items():
            # null in a published file means the class default; the sequence length of an
            # image is the processor's own setting (checked through the tokens per image)
            if key not in ("processor_class", "image_seq_length") and value is not None:
                # SmolVLM2 publishes its video settings beside the image ones
                owner = "video_processor" if key == "video_sampling" else "image_processor"
                assert saved[owner][key] == value, key
        published = files.get("chat_template.json", {}).get("chat_template")  # PaliGemma: none
        assert processor.chat_template == published
        vocab = processor.tokenizer.get_vocab()
        for token in files["tokenizer_config.json"]["added_tokens"]:
            assert len(processor.tokenizer.encode(token, add_special_tokens=False)) == 1
            assert token in vocab
        real_vision = files["config.json"]["vision_config"]
        assert model.config.vision_config.image_size == real_vision["image_size"]
        assert model.config.vision_config.patch_size == real_vision["patch_size"]
        assert sum(p.numel() for p in model.parameters()) < 1_000_000


def test_smolvlm_twin_tiles_like_the_real_one(smol):
    processor = smol.processor
    assert processor.image_processor.do_image_splitting is True
    assert processor.image_processor.max_image_size == {"longest_edge": 512}
    assert processor.image_processor.size == {"longest_edge": 2048}
    assert processor.image_seq_len == 64
    assert smol.model.config.vision_config.image_size == 512
    assert smol.model.config.scale_factor == 4


def test_a_1536x1024_photo_is_encoded_as_several_tiles(smol, shaped):
    encoding = encode_image(smol, shaped["photo"].image)
    tokens = smol.tokenizer.convert_ids_to_tokens(list(encoding.expansion))
    count = encoding.pixel_inputs["pixel_values"].shape[1]
    # 1536x1024 -> 2048x1366 -> a 4x3 grid of 512px tiles, plus the global image.
    assert count == 13
    assert tokens.count("<image>") == 64 * count
    assert "<row_3_col_4>" in tokens and "<row_4_col_1>" not in tokens
    assert tokens.count("<global-img>") == 1


def test_each_shape_tiles_as_expected(smol, shaped):
    grids = {name: tiles(smol, image) for name, image in shaped.items()}
    assert grids == {"wide": 9, "tall": 9, "small": 17, "photo": 13}


@pytest.fixture(scope="module")
def llava(twins):
    return twins.vlm(LLAVA, max_new_tokens=2)


@pytest.mark.parametrize("twin", ["smol", "llava"])
@pytest.mark.parametrize("shape", list(SHAPES))
def test_every_image_task_runs_and_matches_a_plain_forward(request, twin, shaped, shape):
    vlm = request.getfixturevalue(twin)
    image = shaped[shape]
    job = ImageJob(image, {"v": "violence"}, {"w": WEAPON.prompt}, describe=True, embed=True)
    [signals] = VlmOperator(vlm).run([job])
    assert isinstance(signals, ImageSignals), signals
    assert 0.0 <= signals.labels["v"] <= 1.0
    assert signals.description is not None
    assert signals.embedding is not None and all(math.isfinite(v) for v in signals.embedding)
    expected = plain_probability(vlm, [image], None, WEAPON)
    assert signals.answers["w"] == pytest.approx(expected, abs=1e-4)


def test_post_tasks_over_tiled_images_match_a_plain_forward(smol, shaped):
    images = (shaped["wide"], shaped["small"])
    [signals] = VlmOperator(smol).run_posts([PostJob(images, TEXT, (SPAM, THREAT, WEAPON))])
    assert isinstance(signals, PostSignals), signals
    for task in (SPAM, THREAT):
        expected = plain_probability(smol, images, TEXT, task)
        assert signals.values[task] == pytest.approx(expected, abs=1e-4)


def test_a_batch_mixing_tile_counts_equals_each_post_alone(smol, shaped):
    operator = VlmOperator(smol)
    jobs = [
        PostJob((shaped["photo"],), TEXT, (SPAM, WEAPON)),
        PostJob((shaped["small"], shaped["tall"]), None, (THREAT, WEAPON, VlmTask(TaskKind.EMBED))),
        PostJob((shaped["wide"],), "another post", (SPAM,)),
    ]
    together = operator.run_posts(jobs)
    for job, batched in zip(jobs, together, strict=True):
        [alone] = operator.run_posts([job])
        for task in job.tasks:
            if task.kind is TaskKind.EMBED:
                assert batched.values[task] == pytest.approx(alone.values[task], abs=1e-4)
            else:
                assert batched.values[task] == pytest.approx(alone.values[task], abs=1e-4)


def test_the_static_engine_matches_eager_on_a_batch_mixing_tile_counts(twin_dirs, smol, shaped):
    static = load_vlm(
        ModelSpec(
            name_or_path=str(twin_dirs[SMOLVLM]), device="cpu", max_new_tokens=3, engine="static"
        )
    )
    describe = VlmTask(TaskKind.DESCRIBE)
    jobs = [
        PostJob((shaped["photo"],), TEXT, (SPAM, WEAPON, describe)),
        PostJob((shaped["small"], shaped["tall"]), None, (THREAT, WEAPON)),
        PostJob((shaped["wide"],), "another post", (SPAM, describe)),
    ]
    eager = VlmOperator(smol).run_posts(jobs)
    for want, got in zip(eager, VlmOperator(static).run_posts(jobs), strict=True):
        for task, value in want.values.items():
            expected = pytest.approx(value, abs=1e-4) if isinstance(value, float) else value
            assert got.values[task] == expected, task


def test_image_tokens_are_known_from_the_image_size_alone(twin_dirs, smol, llava, shaped):
    capped = load_vlm(
        ModelSpec(name_or_path=str(twin_dirs[SMOLVLM]), device="cpu", max_image_edge=1024)
    )
    single = load_vlm(
        ModelSpec(name_or_path=str(twin_dirs[SMOLVLM]), device="cpu", image_splitting=False)
    )
    for vlm in (smol, capped, single, llava):
        for image in shaped.values():
            expansion = encode_image(vlm, image.image).expansion
            counted = vlm.fast_pixels.image_tokens(image.image, vlm.processor)
            assert counted == len(expansion), (vlm.name, image.image.size)


def test_tiling_overrides_cut_the_tiles_and_change_the_cache_key(twin_dirs, smol, shaped):
    directory = str(twin_dirs[SMOLVLM])
    single = load_vlm(ModelSpec(name_or_path=directory, device="cpu", image_splitting=False))
    capped = load_vlm(ModelSpec(name_or_path=directory, device="cpu", max_image_edge=1024))
    assert tiles(single, shaped["photo"]) == 1
    assert tiles(capped, shaped["photo"]) == 5  # 1024x683 -> 2x2 tiles + global
    assert len({model_key(smol), model_key(single), model_key(capped)}) == 3


def test_tiling_overrides_are_refused_for_a_processor_that_does_not_tile(twin_dirs):
    with pytest.raises(UnsupportedModel, match="does not tile"):
        load_vlm(ModelSpec(name_or_path=str(twin_dirs[LLAVA]), device="cpu", image_splitting=True))


def test_llava_twin_runs_a_post(llava, shaped):
    vlm = llava
    images = (shaped["photo"],)
    [signals] = VlmOperator(vlm).run_posts([PostJob(images, TEXT, (SPAM,))])
    encoding = encode_image(vlm, images[0].image)
    assert encoding.expansion.count(vlm.tokenizer.convert_tokens_to_ids("<image>")) == 576
    assert signals.values[SPAM] == pytest.approx(
        plain_probability(vlm, images, TEXT, SPAM), abs=1e-4
    )


def test_cli_lists_and_builds_twins(tmp_path):
    runner = CliRunner()
    listed = runner.invoke(app, ["model", "make-tiny", "--list"])
    assert listed.exit_code == 0 and listed.stdout.split() == list(TWINS)
    unknown = runner.invoke(app, ["model", "make-tiny", str(tmp_path / "x"), "--like", "a/b"])
    assert unknown.exit_code == 2 and "unknown --like" in unknown.stderr
    built = runner.invoke(app, ["model", "make-tiny", str(tmp_path / "t"), "--like", LLAVA])
    assert built.exit_code == 0, built.output
    assert (tmp_path / "t" / "model.safetensors").is_file()


def test_the_pipeline_config_tiling_knobs_reach_the_model_spec(tmp_path):
    from pipelines.config import ModelSettings, PipelineConfig
    from pipelines.wiring import model_spec

    model = ModelSettings(name_or_path=str(tmp_path), image_splitting=False, max_image_edge=1024)
    spec = model_spec(PipelineConfig(model=model))
    assert (spec.image_splitting, spec.max_image_edge) == (False, 1024)


def test_vlmod_moderate_judges_a_tiled_photo_with_the_twin(
    twin_dirs, shaped, tmp_path, monkeypatch
):
    import operators.forward
    from contracts.records import Verdict

    photo = tmp_path / "photo.png"
    shaped["photo"].image.save(photo)
    tiles_seen: list[list[int]] = []  # per vision call: the tiles of each image
    encode = operators.forward.encode_images

    def counting(vlm, pixel_inputs):
        mask = pixel_inputs["pixel_attention_mask"]
        tiles_seen.append([int(n) for n in mask.flatten(2).any(2).sum(1)])
        return encode(vlm, pixel_inputs)

    monkeypatch.setattr(operators.forward, "encode_images", counting)
    examples = Path(__file__).resolve().parents[3] / "policies" / "examples"
    args = ["--policy", str(examples), "--model", str(twin_dirs[SMOLVLM])]
    result = CliRunner().invoke(app, ["moderate", *args, "--image", str(photo), "--id", "p1"])
    assert result.exit_code == 0, result.output
    assert Verdict.model_validate_json(result.stdout).post_id == "p1"
    # The load-time engine check encodes its own probe images first; the post comes last: one
    # 1536x1024 image, a 4x3 grid of 512 px tiles + the global view.
    assert tiles_seen[-1] == [13]
