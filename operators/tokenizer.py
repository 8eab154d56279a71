"""A small byte-level BPE tokenizer trained offline, for the random-weight checkpoints."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from operators.spec import DEFAULT_DESCRIBE_PROMPT, DEFAULT_LABEL_QUESTION

_CORPUS = (
    "yes no Yes No YES NO User Assistant USER ASSISTANT System",
    DEFAULT_LABEL_QUESTION,
    DEFAULT_DESCRIBE_PROMPT,
    "Answer yes or no. Is there a weapon in this image? Is this image violent?",
    "Is there nudity? Does the image contain text? Is this a photo of a person?",
    "a photo of a cat sitting on a red chair next to a window with the sun outside",
    "violence weapons nudity drugs hate symbols self harm spam gore blood minors",
    "the quick brown fox jumps over the lazy dog 0 1 2 3 4 5 6 7 8 9 . , ? ! : ;",
)


def _corpus() -> Iterator[str]:
    for _ in range(4):
        yield from _CORPUS


def build_tokenizer(
    specials: Sequence[str],
    *,
    bos: str | None,
    eos: str,
    pad: str,
    unk: str | None = None,
    named: Mapping[str, str] | None = None,
    add_bos: bool = False,
) -> Any:
    """Train a deterministic ~500-token byte-level BPE with `specials` as special tokens.

    `named` gives special tokens the processor reads by name (Gemma 3's `image_token`,
    `boi_token`, `eoi_token`). `add_bos` puts `bos` before every text, as Llama, Gemma, Mistral
    and Cohere tokenizers do by default.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=512,
        special_tokens=list(specials),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(_corpus(), trainer=trainer)
    if add_bos and bos:
        bos_id = backend.token_to_id(bos)
        backend.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, bos_id)]
        )
    extras: dict[str, Any] = {"unk_token": unk} if unk else {}
    if named:
        extras["extra_special_tokens"] = dict(named)
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=bos,
        eos_token=eos,
        pad_token=pad,
        padding_side="left",
        **extras,
    )
