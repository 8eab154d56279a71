"""How a checkpoint's chat template splits into a shared image prefix and per-task suffixes.

Every task for one image is "prefix + suffix": the prefix (system prompt, user turn opening,
image placeholder) is the same for all questions of that image, so its KV cache is computed
once; the suffix is the question and the assistant cue.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from operators.exceptions import UnsupportedModel

_SENTINEL = "\u2063VLMOD_QUESTION\u2063"


@dataclass(frozen=True)
class PromptLayout:
    """The chat template rendered around a placeholder question."""

    prefix: str
    suffix: str

    def full_text(self, question: str) -> str:
        """The prompt a plain, uncached pipeline would send for `question`."""
        return self.prefix + self.task_text(question)

    def task_text(self, question: str) -> str:
        """The part after the image: the question and the assistant cue."""
        return question + self.suffix


def layout_from_template(processor: Any, system_prompt: str | None) -> PromptLayout:
    """Render the processor's chat template once and cut it at the question."""
    messages: list[dict[str, Any]] = []
    if system_prompt:
        messages.append({"role": "system", "content": [{"type": "text", "text": system_prompt}]})
    user = [{"type": "image"}, {"type": "text", "text": _SENTINEL}]
    messages.append({"role": "user", "content": user})
    if getattr(processor, "chat_template", None) is None:
        raise UnsupportedModel("the checkpoint's processor has no chat template; add one")
    rendered = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    if rendered.count(_SENTINEL) != 1:
        raise UnsupportedModel("the chat template does not place the user's text exactly once")
    prefix, suffix = rendered.split(_SENTINEL)
    return PromptLayout(prefix=prefix, suffix=suffix)


def answer_token_ids(tokenizer: Any, words: Sequence[str]) -> tuple[int, ...]:
    """Ids of the single tokens that spell `words`, bare or after a space.

    Multi-token spellings are skipped: their first token is shared with other words.
    """
    ids: list[int] = []
    for word in words:
        for spelling in (word, " " + word):
            encoded = tokenizer.encode(spelling, add_special_tokens=False)
            if len(encoded) == 1 and encoded[0] not in ids:
                ids.append(int(encoded[0]))
    return tuple(ids)


def yes_no_token_ids(
    tokenizer: Any, yes_words: Sequence[str], no_words: Sequence[str]
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The yes and the no token ids; refuse vocabularies where either set is empty or shared."""
    yes = answer_token_ids(tokenizer, yes_words)
    no = answer_token_ids(tokenizer, no_words)
    if not yes or not no:
        raise UnsupportedModel(
            f"the tokenizer spells none of {list(yes_words)} or {list(no_words)} as one token; "
            "set ModelSpec.yes_words / no_words to words it does"
        )
    if set(yes) & set(no):
        raise UnsupportedModel("the yes and no answer words share a token; choose other words")
    return yes, no
