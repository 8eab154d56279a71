"""Load any image-text-to-text checkpoint through `AutoProcessor` + `AutoModelForImageTextToText`.

This is the same seam users take with a hub id or a local directory; the tiny test checkpoints
go through it too.

>>> from operators.spec import ModelSpec
>>> vlm = load_vlm(ModelSpec(name_or_path="/path/to/checkpoint"))  # doctest: +SKIP
"""

from __future__ import annotations

import inspect
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from operators.exceptions import ModelLoadError, UnsupportedModel
from operators.families import Family, family_of
from operators.prompts import PromptBook, PromptLayout, layout_from_template, yes_no_token_ids
from operators.spec import ModelSpec

if TYPE_CHECKING:
    from operators.fast_pixels import FastPixels


@dataclass
class Vlm:
    """A loaded checkpoint and everything the tasks derive from it once."""

    model: Any
    processor: Any
    spec: ModelSpec
    name: str
    revision: str | None
    layout: PromptLayout
    yes_ids: tuple[int, ...]
    no_ids: tuple[int, ...]
    prompts: PromptBook  # the template per image count, tokenized once
    image_token_id: int = -1  # the placeholder each projected image feature replaces
    cache_keyword: str = "cache"  # the forward's KV-cache argument: `cache` or `past_key_values`
    # The processor's pixels in uint8, normalized on the device; None runs the processor.
    fast_pixels: FastPixels | None = None

    @property
    def tokenizer(self) -> Any:
        """The processor's tokenizer (left padding)."""
        return self.processor.tokenizer

    @property
    def device(self) -> Any:
        """The device the model's weights live on."""
        return self.model.device

    @property
    def family(self) -> str:
        """The config's `model_type`, e.g. `idefics3` or `llava`."""
        return str(self.model.config.model_type)

    @property
    def vision_tower(self) -> Any:
        """The vision encoder module, for hooks and counting image encodings."""
        attribute = family_of(self.family).vision_tower
        inner = getattr(self.model, "model", self.model)
        if attribute is None or not hasattr(inner, attribute):
            raise UnsupportedModel(f"no known vision tower for model type {self.family!r}")
        return getattr(inner, attribute)

    @property
    def eos_ids(self) -> tuple[int, ...]:
        """Token ids that end a generated description."""
        eos = self.model.generation_config.eos_token_id
        if eos is None:
            eos = self.tokenizer.eos_token_id
        return tuple(eos) if isinstance(eos, list) else (int(eos),)


def resolve_device(device: str) -> str:
    """`auto` means the first CUDA device when there is one, else the CPU."""
    import torch

    if device != "auto":
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_dtype(dtype: str, device: str) -> Any:
    """`auto` means bfloat16 on a GPU that supports it, float32 elsewhere."""
    import torch

    if dtype != "auto":
        resolved = getattr(torch, dtype, None)
        if not isinstance(resolved, torch.dtype):
            raise ModelLoadError(f"unknown dtype {dtype!r}; use e.g. bfloat16, float16, float32")
        return resolved
    if device.startswith("cuda") and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def load_vlm(spec: ModelSpec) -> Vlm:
    """Load the processor and the model named by `spec`, ready for the tasks."""
    device = resolve_device(spec.device)
    dtype = resolve_dtype(spec.dtype, device)
    processor, model = _load_pretrained(spec, device, dtype)
    apply_tiling_overrides(processor.image_processor, spec)
    processor.tokenizer.padding_side = "left"
    use_family_template(processor, str(model.config.model_type))
    yes_ids, no_ids = yes_no_token_ids(processor.tokenizer, spec.yes_words, spec.no_words)
    vlm = Vlm(
        model=model,
        processor=processor,
        spec=spec,
        name=spec.name_or_path,
        revision=spec.revision or _commit_hash(model),
        layout=layout_from_template(processor, spec.system_prompt),
        yes_ids=yes_ids,
        no_ids=no_ids,
        prompts=PromptBook(processor, spec.system_prompt),
        image_token_id=image_token_id(model.config),
        cache_keyword=cache_keyword(model),
        # After the tiling overrides: the fast path copies the processor's settings as they are.
        fast_pixels=_fast_pixels(spec, processor, family_of(model.config.model_type)),
    )
    if spec.compile:
        # The vision tower is most of the work per image; its batch of tiles varies, so compile
        # it for dynamic batch sizes rather than one graph per count.
        vlm.vision_tower.compile(dynamic=True)
    return vlm


def use_family_template(processor: Any, model_type: str) -> None:
    """Give a processor without a chat template its family's prompt layout, where it has one."""
    template = family_of(model_type).chat_template
    if getattr(processor, "chat_template", None) is None and template is not None:
        processor.chat_template = template


def image_token_id(config: Any) -> int:
    """The id of the image placeholder token, under the name the family's config uses."""
    for name in ("image_token_id", "image_token_index"):
        value = getattr(config, name, None)
        if isinstance(value, int):
            return value
    raise UnsupportedModel(f"the {config.model_type} config names no image token id")


def cache_keyword(model: Any) -> str:
    """`cache` in newer transformers 5.x releases, `past_key_values` before."""
    parameters = inspect.signature(model.forward).parameters
    return "cache" if "cache" in parameters else "past_key_values"


def _fast_pixels(spec: ModelSpec, processor: Any, family: Family) -> FastPixels | None:
    from operators.fast_pixels import fast_pixels_for

    # Grouped encodings come from the processor as float pixels; uint8 ones beside them in one
    # collation would skip their normalization, so a family that groups images has no fast path.
    if not spec.fast_pixels or family.groups_images:
        return None
    return fast_pixels_for(processor)


def refuse_unsupported_family(model_type: str) -> None:
    """Raise UnsupportedModel for a family that loading refuses, saying why."""
    refused = family_of(model_type).refused
    if refused:
        raise UnsupportedModel(f"{model_type} {refused}")


def apply_tiling_overrides(image_processor: Any, spec: ModelSpec) -> None:
    """Set the spec's image splitting and resize edge on a tiling image processor."""
    if spec.image_splitting is None and spec.max_image_edge is None:
        return
    if not hasattr(image_processor, "do_image_splitting"):
        raise UnsupportedModel(
            f"{type(image_processor).__name__} does not tile images; leave image_splitting and "
            "max_image_edge unset for this checkpoint"
        )
    if spec.image_splitting is not None:
        image_processor.do_image_splitting = spec.image_splitting
    if spec.max_image_edge is not None:
        image_processor.size = {"longest_edge": spec.max_image_edge}


def _load_pretrained(spec: ModelSpec, device: str, dtype: Any) -> tuple[Any, Any]:
    from transformers import AutoModelForImageTextToText, AutoProcessor

    _refuse_missing_local_path(spec.name_or_path)
    common: dict[str, Any] = {
        "revision": spec.revision,
        "local_files_only": spec.local_files_only,
        "trust_remote_code": spec.trust_remote_code,
    }
    model_kwargs: dict[str, Any] = {**common, "dtype": dtype, **spec.extra_load_kwargs}
    if spec.attn_implementation:
        model_kwargs["attn_implementation"] = spec.attn_implementation
    remote = not Path(spec.name_or_path).expanduser().is_dir() and not spec.local_files_only
    if remote and not _in_local_cache(spec) and not hub_reachable():
        raise ModelLoadError(_unreachable_reason(spec))
    try:
        # The PIL image processors: the same pixels with or without torchvision, and the ones
        # `fast_pixels` copies bit for bit; transformers falls back to torchvision's where a
        # family has no PIL one (Llama 4). `use_fast=False`, deprecated, and not its successor
        # `backend="pil"`: that one also reaches the video processors, which have no PIL
        # backend, and LLaVA-OneVision's processor then fails to load.
        # From config.json alone: a refused family is refused before its weights load (and a
        # guard such as ShieldGemma 2 would load here with its text tower re-initialised).
        refuse_unsupported_family(_model_type(spec.name_or_path, common))
        processor = AutoProcessor.from_pretrained(spec.name_or_path, use_fast=False, **common)
        model: Any = AutoModelForImageTextToText.from_pretrained(spec.name_or_path, **model_kwargs)
    except ImportError as exc:  # transformers says which package, over several lines
        raise ModelLoadError(missing_package_reason(spec.name_or_path, exc)) from exc
    except OSError as exc:
        raise ModelLoadError(_unreachable_reason(spec)) from exc
    except ValueError as exc:  # transformers lists every model type it knows, over many lines
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UnsupportedModel(
            f"{spec.name_or_path!r} is not an image-text-to-text checkpoint ({first}); name a "
            "vision-language checkpoint that AutoModelForImageTextToText loads"
        ) from exc
    return processor, model.to(device).eval()


# Packages some families' processors need, and the extra that brings them.
FAMILY_PACKAGES = {"torchvision": "families", "num2words": "families"}


def _model_type(name_or_path: str, common: dict[str, Any]) -> str:
    """The checkpoint's `model_type`, read from its config without building the config class."""
    from transformers import PreTrainedConfig

    config, _ = PreTrainedConfig.get_config_dict(name_or_path, **common)
    return str(config.get("model_type", ""))


def missing_package_reason(name: str, error: ImportError) -> str:
    """One line naming the package a checkpoint's code needs and how to install it."""
    text = " ".join(str(error).split())
    found = re.search(r"requires the (\w[\w. -]*?) librar", text, re.IGNORECASE)
    package = (found.group(1) if found else getattr(error, "name", None) or "a package").strip()
    extra = FAMILY_PACKAGES.get(package.lower())
    pip = re.search(r"pip install [\w\[\],.=<>-]+", text)
    if extra:
        how = f"`pip install 'vlm-moderation[{extra}]'` (docs/torchvision.md)"
    else:
        how = f"`{pip.group(0)}`" if pip else f"install {package}"
    return f"loading {name} needs {package}, which is not installed: {how}, then load it again"


def _in_local_cache(spec: ModelSpec) -> bool:
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(spec.name_or_path, "config.json", revision=spec.revision)
    return isinstance(found, str)


def hub_reachable(timeout_s: float = 3.0) -> bool:
    """Whether the hub endpoint accepts a TCP connection; huggingface_hub retries for minutes."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    parts = urlsplit(constants.ENDPOINT)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname or "", port), timeout=timeout_s):
            return True
    except OSError:
        return False


def _refuse_missing_local_path(name_or_path: str) -> None:
    looks_local = name_or_path.startswith(("/", ".", "~")) or Path(name_or_path).exists()
    if looks_local and not Path(name_or_path).expanduser().is_dir():
        raise ModelLoadError(
            f"No checkpoint directory at {name_or_path}: build one with "
            f"`vlmod model make-tiny {name_or_path}` or point the model spec at a directory "
            "holding config.json and the weights."
        )


def _unreachable_reason(spec: ModelSpec) -> str:
    revision = f" at revision {spec.revision}" if spec.revision else ""
    return (
        f"Cannot load {spec.name_or_path!r}{revision}: it is not in the local Hugging Face cache "
        "and the hub is unreachable or does not have it, so download it on a connected machine "
        f"(`hf download {spec.name_or_path}`) and pass that local directory, or copy its HF_HOME "
        "cache here."
    )


def _commit_hash(model: Any) -> str | None:
    commit = getattr(model.config, "_commit_hash", None)
    return str(commit) if commit else None
