"""The static-shape engine (bucketed static KV cache, optionally compiled) equals the eager one."""

from __future__ import annotations

import pytest
import torch

from operators.jobs import About, PostJob, TaskKind, VlmTask
from operators.loading import load_vlm
from operators.spec import ModelSpec
from operators.static_decode import StaticDecoder
from operators.tasks import VlmOperator

TASKS = (
    VlmTask(TaskKind.QUESTION, "Is there a weapon?"),
    VlmTask(TaskKind.LABEL, "violence"),
    VlmTask(TaskKind.DESCRIBE),
    VlmTask(TaskKind.QUESTION, "Does this post ask to pay off the platform?", About.POST),
    VlmTask(TaskKind.LABEL, "a threat", About.POST),
)


def mixed_jobs(images) -> list[PostJob]:
    """Three posts: prefixes of different lengths, 5 + 9 + 3 task rows, 4 captions."""
    return [
        PostJob((images[0],), "hello there", TASKS),
        PostJob((images[1], images[2]), "buy now and pay me elsewhere " * 6, TASKS),
        PostJob((images[3],), None, TASKS[:3]),
    ]


def assert_same_signals(expected, actual) -> None:
    assert len(expected) == len(actual)
    for want, got in zip(expected, actual, strict=True):
        assert want.values.keys() == got.values.keys()
        for task, value in want.values.items():
            if isinstance(value, float):
                assert got.values[task] == pytest.approx(value, abs=1e-4), task
            else:
                assert got.values[task] == value, task


def load(tiny_dirs, arch: str, **settings):
    settings.setdefault("max_new_tokens", 6)
    return load_vlm(ModelSpec(name_or_path=str(tiny_dirs[arch]), device="cpu", **settings))


@pytest.mark.parametrize("arch", ["smolvlm", "llava"])
def test_static_engine_gives_the_eager_answers_and_captions(tiny_dirs, images, arch):
    jobs = mixed_jobs(images)
    eager = VlmOperator(load(tiny_dirs, arch)).run_posts(jobs)
    static = VlmOperator(load(tiny_dirs, arch, engine="static"))
    assert static.static is not None
    assert_same_signals(eager, static.run_posts(jobs))


def test_static_engine_reuses_its_cache_tensors_across_batches(tiny_dirs, images):
    vlm = load(tiny_dirs, "smolvlm", engine="static")
    operator = VlmOperator(vlm)
    jobs = mixed_jobs(images)
    first = operator.run_posts(jobs)
    addresses = {k: c.layers[0].keys.data_ptr() for k, c in operator.static._caches.items()}
    assert addresses  # a question-pass cache and a caption cache at least
    second = operator.run_posts(jobs)
    assert_same_signals(first, second)
    again = {k: c.layers[0].keys.data_ptr() for k, c in operator.static._caches.items()}
    assert again == addresses


def test_compiled_steps_give_the_eager_answers_without_recompiling(tiny_dirs, images):
    from torch._dynamo.utils import counters

    jobs = mixed_jobs(images)[:2]
    eager = VlmOperator(load(tiny_dirs, "smolvlm", max_new_tokens=3)).run_posts(jobs)
    compiled_vlm = load(tiny_dirs, "smolvlm", engine="static", compile=True, max_new_tokens=3)
    compiled = VlmOperator(compiled_vlm).run_posts(jobs)
    assert_same_signals(eager, compiled)
    graphs = counters["stats"]["unique_graphs"]
    assert graphs >= 1  # the steps really went through torch.compile
    assert_same_signals(eager, VlmOperator(compiled_vlm).run_posts(jobs))
    assert counters["stats"]["unique_graphs"] == graphs  # same buckets: no new graph


def test_compile_implies_the_static_engine(tiny_dirs):
    vlm = load(tiny_dirs, "smolvlm", compile=True)
    operator = VlmOperator(vlm)
    assert isinstance(operator.static, StaticDecoder) and operator.static.compile_steps
    assert vlm.vision_tower._compiled_call_impl is not None  # the tower is compiled too
    assert VlmOperator(load(tiny_dirs, "smolvlm")).static is None


def test_an_unknown_engine_is_refused():
    with pytest.raises(ValueError, match="engine must be one of eager, static, plain, not 'fast'"):
        ModelSpec(name_or_path="some/model", engine="fast")


@pytest.mark.parametrize(
    ("rows", "bucket"), [(1, 1), (2, 2), (3, 4), (5, 8), (64, 64), (65, 128), (0, 1)]
)
def test_rows_round_up_to_a_power_of_two(rows, bucket):
    assert StaticDecoder.row_bucket(rows) == bucket


@pytest.mark.parametrize(("length", "bucket"), [(1, 64), (64, 64), (65, 128), (0, 64)])
def test_lengths_round_up_to_their_step(length, bucket):
    assert StaticDecoder.length_bucket(length, 64) == bucket


def test_padding_rows_repeat_the_last_real_row():
    from operators.static_decode import _pad_rows

    assert _pad_rows(3, 4).tolist() == [0, 1, 2, 2]
    assert torch.equal(_pad_rows(4, 4), torch.arange(4))
