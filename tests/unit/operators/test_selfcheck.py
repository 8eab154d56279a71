"""The load-time check of the shared-prefix engine against the plain one: it passes on the
families the engine serves right, and a shared engine broken on purpose is caught (fallback to
plain, whose numbers are then served) or refused."""

from __future__ import annotations

import pytest
import torch

import operators.forward as forward
from operators.exceptions import UnsupportedModel
from operators.jobs import PostJob, TaskKind
from operators.selfcheck import TOLERANCE, check_engine, checked, probe_jobs, with_engine
from operators.tasks import VlmOperator


def test_the_shared_engine_passes_on_both_tiny_families(vlm):
    check = check_engine(vlm)
    assert check.engine == vlm.spec.engine == "eager" and not check.fell_back
    assert check.max_difference is not None and check.max_difference < TOLERANCE
    assert check.probes >= 2 and vlm.family in check.reason


@pytest.fixture
def broken_positions(monkeypatch):
    """The shared engine with positions twice as far apart: plausible numbers, all wrong (a
    uniform shift would change nothing: rotary positions are relative)."""
    original = forward._positions

    def stretched(mask: torch.Tensor, new_tokens: int) -> torch.Tensor:
        return original(mask, new_tokens) * 2

    monkeypatch.setattr(forward, "_positions", stretched)


def test_a_broken_shared_engine_falls_back_to_plain_and_serves_plain_numbers(
    vlm, images, broken_positions
):
    served, check = checked(vlm)
    assert check.fell_back and served.spec.engine == "plain"
    assert check.max_difference is not None and check.max_difference > TOLERANCE
    assert "differs from a plain forward" in check.reason and "\n" not in check.reason
    job = probe_jobs(vlm)[1]
    [answer] = VlmOperator(served).run_posts([job])
    [wrong] = VlmOperator(vlm).run_posts([job])
    [reference] = VlmOperator(with_engine(vlm, "plain")).run_posts([job])
    assert answer.values == reference.values
    numbers = [t for t in job.tasks if t.kind != TaskKind.EMBED]
    assert any(abs(wrong.values[t] - reference.values[t]) > TOLERANCE for t in numbers)


def test_a_wrong_post_embedding_alone_falls_back_to_plain(vlm, monkeypatch):
    """Every probability right, the post embedding off by 5 %: still caught."""
    original = forward.mean_over_tokens

    def scaled(*args, **kwargs):
        return original(*args, **kwargs) * 1.05

    monkeypatch.setattr(forward, "mean_over_tokens", scaled)
    served, check = checked(vlm)
    assert served.spec.engine == "plain"
    assert check.max_difference is not None and check.max_difference < TOLERANCE
    assert "post embedding differs from a plain forward's by 0.05 relative" in check.reason


def test_a_broken_shared_engine_is_refused_when_fallback_is_not_allowed(vlm, broken_positions):
    refused = r"differs from a plain forward.*self_check is refuse"
    with pytest.raises(UnsupportedModel, match=refused):
        checked(vlm, on_mismatch="refuse")


def test_a_shared_engine_that_fails_falls_back_with_its_error(vlm, monkeypatch):
    def fails(*args, **kwargs):
        raise ValueError("3 image tokens in the prompt for 5 image features")

    monkeypatch.setattr(forward, "embed_with_images", fails)
    served, check = checked(vlm)
    assert served.spec.engine == "plain" and "fails on" in check.reason
    assert "3 image tokens" in check.reason


def test_a_model_whose_plain_forward_fails_is_refused(vlm, monkeypatch):
    import operators.plain as plain

    def fails(*args, **kwargs):
        raise RuntimeError("shape mismatch")

    monkeypatch.setattr(plain, "plain_inputs", fails)
    with pytest.raises(UnsupportedModel, match="cannot be served: a plain forward"):
        check_engine(vlm)


def test_probes_outgrow_a_sliding_window(vlm, monkeypatch):
    config = vlm.model.config.get_text_config(decoder=True)
    monkeypatch.setattr(config, "sliding_window", 300, raising=False)
    jobs = probe_jobs(vlm)
    assert len(jobs) == 3
    crowded: PostJob = jobs[-1]
    assert crowded.images and crowded.text and len(crowded.text) > 1000
