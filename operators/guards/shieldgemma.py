"""`ShieldGemma`: P(yes) that an image violates a policy, from ShieldGemma 2's own classifier.

ShieldGemma 2 is a Gemma 3 under `ShieldGemma2ForImageClassification`, which reads the `Yes` and
`No` logits at the last position of its processor's prompt (one prompt per image and policy,
built by `ShieldGemma2Processor` from its chat template and policy definitions) and softmaxes
the two; `Yes` means the image violates the policy. Built-in policies are the checkpoint's own
`policy_definitions` (dangerous, sexual, violence); a custom policy is the processor's
`custom_policies`. Nothing here goes through the VLM engines, which refuse this checkpoint.

>>> guard = load_shieldgemma("google/shieldgemma-2-4b-it")  # doctest: +SKIP
>>> guard.post_values(images, [GuardPolicy("dangerous")])  # doctest: +SKIP
{'dangerous': 0.0123}
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from operators.exceptions import InferenceError, ModelLoadError, error_text

MODEL_TYPE = "shieldgemma2"
MAX_PROMPTS = 8  # prompts per forward: each is ~850 tokens with 256 image tokens


class GuardLoadError(ModelLoadError):
    """The checkpoint is not a ShieldGemma 2 classifier whose weights all load."""


class UnknownGuardPolicy(InferenceError):
    """A built-in policy name the checkpoint's processor does not define."""


@dataclass(frozen=True)
class GuardPolicy:
    """A policy to judge images against: a built-in name, or a name with its own text."""

    name: str
    text: str | None = None  # None: the checkpoint's built-in definition of `name`


class ShieldGemma:
    """A loaded ShieldGemma 2: processor (preprocess), classifier (forward), P(yes) out."""

    def __init__(self, model: Any, processor: Any, name: str) -> None:
        self.model = model
        self.processor = processor
        self.name = name

    @property
    def builtin_policies(self) -> tuple[str, ...]:
        """The policy names the checkpoint defines itself."""
        return tuple(self.processor.policy_definitions)

    def post_values(
        self, images: Sequence[Any], policies: Sequence[GuardPolicy]
    ) -> dict[str, float]:
        """Each policy's P(yes), the max over `images` (PIL); empty when there are no images."""
        per_image = self.probabilities(images, policies)
        return {
            policy.name: max(row[index] for row in per_image)
            for index, policy in enumerate(policies)
            if per_image
        }

    def probabilities(
        self, images: Sequence[Any], policies: Sequence[GuardPolicy]
    ) -> list[list[float]]:
        """P(yes) of each image (rows) under each policy (columns)."""
        self._check_names(policies)
        per_call = max(1, MAX_PROMPTS // max(1, len(policies)))
        rows: list[list[float]] = []
        for start in range(0, len(images), per_call):
            chunk = images[start : start + per_call]
            flat = self.forward(self.encode(chunk, policies))
            rows += [flat[i * len(policies) : (i + 1) * len(policies)] for i in range(len(chunk))]
        return rows

    def encode(self, images: Sequence[Any], policies: Sequence[GuardPolicy]) -> Any:
        """The processor's prompts, image by image and policy by policy within each image."""
        custom = {policy.name: policy.text for policy in policies if policy.text is not None}
        # The processor merges `custom_policies` into its own; passed as None it breaks.
        extra: dict[str, Any] = {"custom_policies": custom} if custom else {}
        names = [policy.name for policy in policies]
        return self.processor(images=list(images), policies=names, return_tensors="pt", **extra)

    def forward(self, inputs: Mapping[str, Any]) -> list[float]:
        """P(yes) of each prompt in `inputs`."""
        import torch

        model_inputs = {key: value.to(self.model.device) for key, value in inputs.items()}
        if "pixel_values" in model_inputs:
            model_inputs["pixel_values"] = model_inputs["pixel_values"].to(self.model.dtype)
        try:
            with torch.inference_mode():
                output = self.model(**model_inputs)
        except (RuntimeError, ValueError) as exc:
            raise InferenceError(f"ShieldGemma 2 failed: {error_text(exc)}") from exc
        # Column 0 is `Yes`: the image violates the policy.
        return [float(p) for p in output.probabilities[:, 0].float().cpu()]

    def _check_names(self, policies: Sequence[GuardPolicy]) -> None:
        unknown = [
            p.name for p in policies if p.text is None and p.name not in self.builtin_policies
        ]
        if unknown:
            raise UnknownGuardPolicy(
                f"{self.name} defines no policy {', '.join(unknown)}; its own are "
                f"{', '.join(self.builtin_policies)} (or give the policy's text)"
            )


def load_shieldgemma(name_or_path: str, device: str = "auto", dtype: str = "auto") -> ShieldGemma:
    """ShieldGemma 2 from `name_or_path`; GuardLoadError unless every classifier weight loads."""
    from transformers import AutoProcessor, ShieldGemma2ForImageClassification

    from operators.loading import resolve_device, resolve_dtype

    refuse_other_model_types(name_or_path, MODEL_TYPE, "ShieldGemma 2")
    resolved = resolve_device(device)
    try:
        # The PIL image processor, as the VLM path loads it: the same pixels everywhere.
        processor = AutoProcessor.from_pretrained(name_or_path, use_fast=False)
        # With output_loading_info transformers returns (model, info), which its stubs omit.
        loaded: Any = ShieldGemma2ForImageClassification.from_pretrained(
            name_or_path, dtype=resolve_dtype(dtype, resolved), output_loading_info=True
        )
        model, info = loaded
    except (OSError, ValueError) as exc:
        raise GuardLoadError(f"cannot load {name_or_path}: {error_text(exc)}") from exc
    lost = sorted(info["missing_keys"]) + sorted(info["mismatched_keys"])
    if lost:  # re-initialised at random: its answers would be noise
        raise GuardLoadError(
            f"{name_or_path}: {len(lost)} classifier weights are missing (e.g. {lost[0]}); it is "
            "not a ShieldGemma2ForImageClassification checkpoint"
        )
    return ShieldGemma(model.to(resolved).eval(), processor, name_or_path)


def refuse_other_model_types(name_or_path: str, wanted: str, guard: str) -> None:
    """GuardLoadError for a checkpoint whose config's model type is not `wanted` (`guard`'s)."""
    from transformers import PreTrainedConfig

    try:
        config, _ = PreTrainedConfig.get_config_dict(name_or_path)
    except OSError as exc:
        raise GuardLoadError(
            f"cannot read the config of {name_or_path}: {error_text(exc)}"
        ) from exc
    model_type = config.get("model_type")
    if model_type != wanted:
        raise GuardLoadError(f"{name_or_path} is a {model_type} checkpoint, not {guard} ({wanted})")
