"""Where a specialist's onnxruntime sessions run: the CPU (the default), or a CUDA GPU.

`device: cuda` (under `specialists.nsfw` or `specialists.ocr`) asks for onnxruntime's CUDA
provider, first, with the CPU behind it for the nodes CUDA cannot run. It needs an onnxruntime
built with CUDA (the `onnxruntime-gpu` package, in place of `onnxruntime`) and a GPU in the
process, as a specialist pool with `specialists.pool.num_gpus` gets. Where the provider is
missing the specialist is refused in one line, never quietly moved to the CPU: a GPU asked for
and not used is a capacity plan gone wrong.

>>> session_providers("cpu")  # doctest: +SKIP
[('CPUExecutionProvider', {})]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

Device = Literal["cpu", "cuda"]
CUDA, CPU = "CUDAExecutionProvider", "CPUExecutionProvider"


class DeviceUnavailable(RuntimeError):
    """The device a specialist's settings ask for is not in this process's onnxruntime."""


def session_providers(
    device: Device,
    cpu_options: dict[str, Any] | None = None,
    available: Sequence[str] | None = None,
) -> list[tuple[str, dict[str, Any]]]:
    """onnxruntime's providers for `device`, most preferred first; `available` defaults to
    what this onnxruntime offers."""
    cpu = (CPU, dict(cpu_options or {}))
    if device == "cpu":
        return [cpu]
    if available is None:
        import onnxruntime

        available = onnxruntime.get_available_providers()
    if CUDA not in available:
        raise DeviceUnavailable(
            f"device: cuda needs onnxruntime with {CUDA}; this one has "
            f"{', '.join(available) or 'none'} (install onnxruntime-gpu in place of "
            "onnxruntime, or set device: cpu)"
        )
    return [(CUDA, {}), cpu]


def provider_names(device: Device, available: Sequence[str] | None = None) -> list[str]:
    """`session_providers` by name only, for libraries that take names."""
    return [name for name, _ in session_providers(device, available=available)]


def check_session_device(session: Any, device: Device) -> None:
    """Refuse a session that onnxruntime quietly built on the CPU although `device` is cuda (as
    it does when the CUDA provider is installed but its libraries do not load)."""
    if device == "cuda" and session.get_providers()[:1] != [CUDA]:
        raise DeviceUnavailable(
            f"device: cuda: onnxruntime built the session on {', '.join(session.get_providers())}"
            " (the CUDA provider did not load: check CUDA and cuDNN beside onnxruntime-gpu)"
        )
