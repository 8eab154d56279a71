"""Writing a random-weight checkpoint: the target directory, seeded weights, saving.

Shared by `operators.tiny` (small checkpoints of an architecture) and `operators.twins` (small
twins of published checkpoints).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def checkpoint_directory(directory: Path) -> Path:
    """`directory`, created if missing; an OSError naming it when it cannot take a checkpoint."""
    if directory.exists() and not directory.is_dir():
        raise FileExistsError(f"{directory} exists and is not a directory")
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise type(exc)(f"cannot create {directory}: {_why(exc)}") from None
    if not os.access(directory, os.W_OK | os.X_OK):
        raise PermissionError(f"cannot write into {directory}: permission denied")
    return directory


def save_checkpoint(directory: Path, model: Any, processor: Any) -> None:
    """Save `model` and `processor` into `directory`; an OSError naming it on failure."""
    from safetensors import SafetensorError

    try:
        model.save_pretrained(directory)
        processor.save_pretrained(directory)
    except (OSError, SafetensorError) as exc:  # safetensors reports I/O errors as its own type
        raise OSError(f"cannot write the checkpoint into {directory}: {_why(exc)}") from None


def _why(error: Exception) -> str:
    strerror = error.strerror if isinstance(error, OSError) else None
    return strerror or str(error) or type(error).__name__


def build_random_model(
    config: Any, processor: Any, seed: int, model_class: str = "AutoModelForImageTextToText"
) -> Any:
    """A seeded random-weight `model_class` for `config`, its generation ids from `processor`."""
    import torch
    import transformers

    torch.manual_seed(seed)
    built = getattr(transformers, model_class)
    # Auto classes build from a config; a concrete class (a guard's classifier) is called.
    model = (built.from_config(config) if model_class.startswith("Auto") else built(config)).eval()
    randomize_zero_matrices(model)
    if getattr(model, "generation_config", None) is None:  # a classifier generates nothing
        return model
    model.generation_config.pad_token_id = processor.tokenizer.pad_token_id
    model.generation_config.eos_token_id = processor.tokenizer.eos_token_id
    return model


def randomize_zero_matrices(model: Any, std: float = 0.2) -> None:
    """Random values for weight matrices a family initialises to zeros.

    Gemma 3 (and ShieldGemma 2) start their image projection at zero: a twin left so projects
    every image to the same nothing, and every test of image handling would pass blind.
    """
    import torch

    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.dim() >= 2 and not bool(parameter.any()):
                parameter.normal_(0.0, std)
