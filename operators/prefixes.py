"""Prompt prefixes as token ids, assembled piece by piece instead of by the processor.

A prefix is: the template's pieces (ours, tokenized normally, so their control tokens stay
control tokens), each image's placeholder expansion (what the processor makes of that image on
its own), and for a post-level prompt the framed post text. The post text is untrusted: its
`<post>` delimiters are escaped, it is tokenized with special tokens split into plain text, any
control id that still slips through is dropped, and it is cut to `ModelSpec.max_text_tokens`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from operators.loading import Vlm
from operators.prompts import PostLayout, escape_post_text


@dataclass(frozen=True)
class PostText:
    """A post's text as prompt tokens, none of them a control token; `cut` tokens were dropped."""

    ids: tuple[int, ...]
    cut: int = 0


def encode_post_text(vlm: Vlm, text: str) -> PostText:
    """Tokenize untrusted text as plain text and keep its first `max_text_tokens` tokens."""
    clean = escape_post_text(text.encode("utf-8", "replace").decode("utf-8"))
    encoded = vlm.tokenizer(clean, add_special_tokens=False, split_special_tokens=True)
    forbidden = vlm.prompts.control_ids
    ids = [int(i) for i in encoded["input_ids"] if int(i) not in forbidden]
    budget = vlm.spec.max_text_tokens
    return PostText(tuple(ids[:budget]), max(0, len(ids) - budget))


def assemble_prefix(
    layout: PostLayout, expansions: Sequence[Sequence[int]], text: PostText | None
) -> list[int]:
    """Template pieces around the image expansions, then the framed text (if any)."""
    if len(expansions) != layout.images:
        raise ValueError(f"{len(expansions)} image expansions for a {layout.images}-image layout")
    ids: list[int] = []
    for piece, expansion in zip(layout.piece_ids, expansions, strict=False):
        ids += piece
        ids += expansion
    if text is None:
        ids += layout.piece_ids[-1]
    else:
        ids += layout.open_ids
        ids += text.ids
        ids += layout.close_ids
    return ids


def image_prefix_ids(vlm: Vlm, expansion: Sequence[int]) -> list[int]:
    """The image-level prefix: the one-image template around one image, no post text."""
    return assemble_prefix(vlm.prompts.layout(1), [expansion], None)


def post_prefix_ids(
    vlm: Vlm, expansions: Sequence[Sequence[int]], text: PostText | None
) -> list[int]:
    """The post-level prefix: every image of the post in order, then its framed text."""
    return assemble_prefix(vlm.prompts.layout(len(expansions)), expansions, text)
