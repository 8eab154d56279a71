"""Tiny twins of published checkpoints: their real processing, random small weights.

A twin keeps everything that decides what the model is shown - the published image processor
settings (SmolVLM's tiling into 512-pixel tiles plus a global image), the processor's image
sequence length, the chat template and the special tokens, and the vision tower's patch and
tile geometry - and shrinks only widths, depths and the vocabulary (a locally trained tokenizer
that holds the real special tokens). The published small text files live in
`operators/checkpoint_files/<org>__<name>/` (see each `SOURCE.md`); no weights are involved.

>>> from operators.twins import make_twin
>>> make_twin("/tmp/smolvlm-twin", "HuggingFaceTB/SmolVLM-256M-Instruct")  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from operators.families import FAMILIES, Kind, Twin
from operators.random_checkpoint import build_random_model, checkpoint_directory, save_checkpoint
from operators.tokenizer import build_tokenizer

# Every published checkpoint a registered family can twin, and that family.
TWINS = FAMILIES.twins()
# Those the VLM path loads (guards such as ShieldGemma 2 have their own signal and tests).
VLM_TWINS = FAMILIES.twins(Kind.IMAGE_TEXT_TO_TEXT)
_UNNAMED_TOKENS = ("bos_token", "eos_token", "pad_token", "unk_token")


def published_files_dir() -> Path:
    """Where the published configs live: $VLMOD_TWIN_FILES, else the package's own copies."""
    root = os.environ.get("VLMOD_TWIN_FILES")
    if root:
        return Path(root)
    return Path(__file__).resolve().parent / "checkpoint_files"


def published_files(checkpoint: str) -> dict[str, Any]:
    """The published JSON files of `checkpoint`, by file name."""
    if checkpoint not in TWINS:
        raise ValueError(f"no twin of {checkpoint!r}; known: {', '.join(TWINS)}")
    directory = published_files_dir() / checkpoint.replace("/", "__")
    if not directory.is_dir():
        raise FileNotFoundError(f"the published files of {checkpoint} are missing: {directory}")
    return {path.name: json.loads(path.read_text()) for path in directory.glob("*.json")}


def make_twin(directory: Path | str, checkpoint: str, seed: int = 0) -> Path:
    """Write a seeded random-weight twin of `checkpoint` into `directory`."""
    files = published_files(checkpoint)
    twin = twin_of(checkpoint)
    directory = checkpoint_directory(Path(directory))
    processor = twin.processor(files, twin_tokenizer(files))
    config = twin.config(files, processor.tokenizer)
    check_geometry(twin, config, processor)
    model = build_random_model(config, processor, seed, twin.model_class)
    save_checkpoint(directory, model, processor)
    return directory


def twin_of(checkpoint: str) -> Twin:
    """The twin builder of `checkpoint`'s family."""
    twin = TWINS[checkpoint].twin
    if twin is None:
        raise ValueError(f"the family of {checkpoint} lists it but has no twin builder")
    return twin


def twin_tokenizer(files: dict[str, Any]) -> Any:
    """A small locally trained tokenizer holding the checkpoint's real special tokens."""
    specials = files["special_tokens_map.json"]
    added = files["tokenizer_config.json"]["added_tokens"]
    # Every other single token the map names is one a processor reads by name (Gemma 3's
    # `image_token`, InternVL's `context_image_token`).
    named = {
        key: value
        for key, value in specials.items()
        if isinstance(value, str) and key not in _UNNAMED_TOKENS
    }
    return build_tokenizer(
        added,
        bos=specials.get("bos_token"),  # Qwen2 tokenizers have none
        eos=specials["eos_token"],
        pad=specials["pad_token"],
        unk=specials.get("unk_token"),
        named=named,
        add_bos=bool(files["tokenizer_config.json"].get("add_bos_token", False)),
    )


def check_geometry(twin: Twin, config: Any, processor: Any) -> None:
    """Raise ValueError when the processor's tiles and the vision tower's input disagree."""
    tower, said = twin.geometry(config, processor)
    if tower != said:
        raise ValueError(
            f"the vision tower {tower} disagrees with the processor {said}: (tile size, image "
            "tokens or patch size)"
        )
