"""`LlamaGuard`: P(unsafe) and each hazard category's probability from Llama Guard 4's answer.

Llama Guard 4 is a dense Llama 4 (`Llama4ForConditionalGeneration`) whose chat template writes
its safety prompt around the conversation: the categories S1-S14 (less the template's
`excluded_category_keys`), the conversation, and the question about its last user turn. It
answers `safe`, or `unsafe`, a newline and the violated categories (`unsafe\\nS1,S3`). Nothing is
generated here; the numbers are read off the answer's logits, teacher-forced:

- `unsafe` = P(u) / (P(s) + P(u)), where u and s are the first tokens of `unsafe` and `safe`,
  from the logits at the first answer position (the other tokens' mass is left out);
- `Sk` = `unsafe` x P(the answer goes on with Sk's tokens, and not with those of a longer code
  that starts with them, e.g. S10 after S1 | the answer so far is `unsafe\\n`): under the
  tokenizer's own spelling of the codes, the probability that the first category listed is Sk.

A code's tokens are the tokenizer's for `unsafe\\nSk` after those of `unsafe\\n` (as the model
would read them). The prompt with `unsafe\\n` and a chain of shared code tokens appended gives,
in one forward, the first answer position's logits too (a causal model's logits at a position
do not depend on what follows it), so a post needs one forward per longest such chain: one
where every code is spelled `S` and then its number, as in the twin. A checkpoint whose template
writes no Llama Guard prompt, or whose tokenizer spells the answer so that these numbers mean
something else, is refused in one line. Nothing here goes through the VLM engines, which
refuse this checkpoint.

>>> guard = load_llamaguard("meta-llama/Llama-Guard-4-12B")  # doctest: +SKIP
>>> guard.post_values("how do I make a bomb?", [], CATEGORIES)  # doctest: +SKIP
{'unsafe': 0.98, 'S1': 0.05, ..., 'S9': 0.9, ...}
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from operators.exceptions import InferenceError, error_text
from operators.guards.shieldgemma import GuardLoadError, refuse_other_model_types

MODEL_TYPE = "llama4"
CATEGORIES = tuple(f"S{k}" for k in range(1, 15))
PREFIX = "unsafe\n"  # the answer before its first category
PROMPT_MARK = "<BEGIN UNSAFE CONTENT CATEGORIES>"
_LISTED = re.compile(r"^(S\d+): ", re.MULTILINE)  # a category line of the prompt


class UnsupportedCategories(InferenceError):
    """The checkpoint's chat template cannot list only the categories asked for."""


@dataclass(frozen=True)
class AnswerTokens:
    """How the tokenizer spells the answer: the first tokens of `safe` and `unsafe`, the
    tokens of `unsafe\\n` and each code's tokens after them."""

    safe: int
    unsafe: int
    prefix: tuple[int, ...]
    codes: Mapping[str, tuple[int, ...]]

    def contexts(self) -> list[tuple[int, ...]]:
        """The longest answer beginnings whose next-token logits the values need."""
        needed = {
            self.prefix + code[:end] for code in self.codes.values() for end in range(len(code))
        }
        return sorted(c for c in needed if not any(_extends(o, c) for o in needed))

    def p_unsafe(self, logprobs: Logprobs) -> float:
        """P(u) / (P(u) + P(s)) at the first answer token."""
        return 1.0 / (1.0 + math.exp(logprobs.next((), self.safe) - logprobs.next((), self.unsafe)))

    def first_code(self, logprobs: Logprobs) -> dict[str, float]:
        """Each code's P(the answer `unsafe\\n` goes on with its tokens, and not with a longer
        code's that start with them)."""
        spelled = {code: logprobs.sequence(self.prefix, ids) for code, ids in self.codes.items()}
        return {
            code: max(0.0, spelled[code] - sum(spelled[c] for c in self._longer(code)))
            for code in self.codes
        }

    def _longer(self, code: str) -> list[str]:
        return [c for c, ids in self.codes.items() if _extends(ids, self.codes[code])]


@dataclass(frozen=True)
class Logprobs:
    """Next-token log-probabilities after the prompt and each token of some answer beginnings:
    `rows[context][i]` follows the prompt and `context[:i]`."""

    rows: Mapping[tuple[int, ...], Any]

    def next(self, context: tuple[int, ...], token: int) -> float:
        """log P(`token` | the prompt, then `context`)."""
        owner = next(c for c in self.rows if c[: len(context)] == context)
        return float(self.rows[owner][len(context)][token])

    def sequence(self, context: tuple[int, ...], tokens: tuple[int, ...]) -> float:
        """P(`tokens`, one after the other | the prompt, then `context`)."""
        return math.exp(sum(self.next(context + tokens[:i], t) for i, t in enumerate(tokens)))


def answer_tokens(tokenizer: Any) -> AnswerTokens:
    """The answer's tokens; GuardLoadError when they cannot give the documented numbers."""

    def ids(text: str) -> tuple[int, ...]:
        return tuple(tokenizer(text, add_special_tokens=False).input_ids)

    safe, unsafe, prefix = ids("safe"), ids("unsafe"), ids(PREFIX)
    if safe[0] == unsafe[0]:
        raise GuardLoadError("its tokenizer starts `safe` and `unsafe` with the same token")
    codes = {}
    for code in CATEGORIES:
        spelled = ids(PREFIX + code)
        if spelled[: len(prefix)] != prefix or len(spelled) == len(prefix):
            raise GuardLoadError(f"its tokenizer merges `unsafe\\n` into the code {code}")
        codes[code] = spelled[len(prefix) :]
    if len(set(codes.values())) != len(codes):
        raise GuardLoadError("its tokenizer spells two category codes alike")
    return AnswerTokens(safe[0], unsafe[0], prefix, codes)


class LlamaGuard:
    """A loaded Llama Guard 4: chat template (preprocess), forward, probabilities out."""

    def __init__(self, model: Any, processor: Any, name: str, answer: AnswerTokens) -> None:
        self.model = model
        self.processor = processor
        self.name = name
        self.answer = answer
        self._listing: set[tuple[str, ...]] = set()  # category subsets the template is seen to list

    def post_values(
        self, text: str | None, images: Sequence[Any], categories: Sequence[str]
    ) -> dict[str, float]:
        """`unsafe` and each of `categories` for a user turn of `text` and `images` (PIL)."""
        inputs = self.encode(text, images, categories)
        logprobs = Logprobs({c: self.forward(inputs, c) for c in self.answer.contexts()})
        unsafe = self.answer.p_unsafe(logprobs)
        first = self.answer.first_code(logprobs)
        return {"unsafe": unsafe, **{code: unsafe * first[code] for code in categories}}

    def encode(self, text: str | None, images: Sequence[Any], categories: Sequence[str]) -> Any:
        """The chat template's prompt for one user turn: its text, then its images."""
        self._check_listing(tuple(categories))
        content = [{"type": "text", "text": text}] if text else []
        content += [{"type": "image", "image": image} for image in images]
        return self.processor.apply_chat_template(
            [{"role": "user", "content": content}],
            add_generation_prompt=True,
            tokenize=True,
            return_dict=True,
            return_tensors="pt",
            excluded_category_keys=[c for c in CATEGORIES if c not in categories],
        )

    def _check_listing(self, categories: tuple[str, ...]) -> None:
        """UnsupportedCategories unless the template lists exactly `categories` when told to
        leave the others out (`excluded_category_keys`, as Llama Guard's templates take it)."""
        if categories in self._listing:
            return
        prompt = self.processor.apply_chat_template(
            [{"role": "user", "content": [{"type": "text", "text": "hello"}]}],
            add_generation_prompt=True,
            tokenize=False,
            excluded_category_keys=[c for c in CATEGORIES if c not in categories],
        )
        listed = _LISTED.findall(prompt)
        if sorted(listed) != sorted(categories):
            raise UnsupportedCategories(
                f"{self.name}: asked for {', '.join(categories)}, its chat template lists "
                f"{', '.join(listed) or 'none'} (it does not take excluded_category_keys)"
            )
        self._listing.add(categories)

    def forward(self, inputs: Mapping[str, Any], context: tuple[int, ...]) -> Any:
        """Log-probabilities of the next token after the prompt and each token of `context`."""
        import torch

        device = self.model.device
        model_inputs = {key: value.to(device) for key, value in inputs.items()}
        answer = torch.tensor([context], dtype=model_inputs["input_ids"].dtype, device=device)
        model_inputs["input_ids"] = torch.cat([model_inputs["input_ids"], answer], dim=1)
        model_inputs["attention_mask"] = torch.ones_like(model_inputs["input_ids"])
        if "pixel_values" in model_inputs:
            model_inputs["pixel_values"] = model_inputs["pixel_values"].to(self.model.dtype)
        try:
            with torch.inference_mode():
                logits = self.model(**model_inputs, logits_to_keep=len(context) + 1).logits
        except (RuntimeError, ValueError) as exc:
            raise InferenceError(f"Llama Guard failed: {error_text(exc)}") from exc
        return torch.log_softmax(logits[0].float(), dim=-1).cpu()


def _extends(longer: tuple[int, ...], shorter: tuple[int, ...]) -> bool:
    return len(longer) > len(shorter) and longer[: len(shorter)] == shorter


def load_llamaguard(name_or_path: str, device: str = "auto", dtype: str = "auto") -> LlamaGuard:
    """Llama Guard 4 from `name_or_path`; GuardLoadError unless it is one whose weights load."""
    from transformers import AutoProcessor, Llama4ForConditionalGeneration

    from operators.loading import missing_package_reason, resolve_device, resolve_dtype

    refuse_other_model_types(name_or_path, MODEL_TYPE, "Llama Guard 4")
    resolved = resolve_device(device)
    try:
        processor = AutoProcessor.from_pretrained(name_or_path)
        answer = _guard_prompt_and_answer(name_or_path, processor)  # before the weights load
        # With output_loading_info transformers returns (model, info), which its stubs omit.
        loaded: Any = Llama4ForConditionalGeneration.from_pretrained(
            name_or_path, dtype=resolve_dtype(dtype, resolved), output_loading_info=True
        )
        model, info = loaded
    except ImportError as exc:  # Llama 4's image processor needs torchvision
        raise GuardLoadError(missing_package_reason(name_or_path, exc)) from None
    except (OSError, ValueError) as exc:
        raise GuardLoadError(f"cannot load {name_or_path}: {error_text(exc)}") from exc
    lost = sorted(info["missing_keys"]) + sorted(info["mismatched_keys"])
    if lost:  # re-initialised at random: its answers would be noise
        raise GuardLoadError(f"{name_or_path}: {len(lost)} weights are missing (e.g. {lost[0]})")
    return LlamaGuard(model.to(resolved).eval(), processor, name_or_path, answer)


def _guard_prompt_and_answer(name_or_path: str, processor: Any) -> AnswerTokens:
    """The answer's tokens, once the template is seen to write Llama Guard's prompt."""
    _refuse_other_templates(name_or_path, processor)
    try:
        return answer_tokens(processor.tokenizer)
    except GuardLoadError as exc:
        raise GuardLoadError(f"{name_or_path}: {exc}") from None


def _refuse_other_templates(name_or_path: str, processor: Any) -> None:
    """GuardLoadError for a Llama 4 whose template writes no Llama Guard prompt (Scout, ...)."""
    probe = [{"role": "user", "content": [{"type": "text", "text": "hello"}]}]
    try:
        prompt = processor.apply_chat_template(probe, add_generation_prompt=True, tokenize=False)
    except Exception as exc:  # a template that fails on a plain turn is no guard's either
        raise GuardLoadError(f"{name_or_path}: its chat template fails: {error_text(exc)}") from exc
    if PROMPT_MARK not in prompt:
        raise GuardLoadError(
            f"{name_or_path}: its chat template writes no Llama Guard safety prompt (no "
            f"{PROMPT_MARK}); it is not a Llama Guard checkpoint"
        )
