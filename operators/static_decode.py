"""The static-shape path for the question pass and the decode steps.

After the prefill (eager: its shapes vary with images and text), every task row's keys and values
move into a preallocated `StaticCache` whose shape comes from a small set of buckets: rows round
up to a power of two, the prefix length and the suffix length round up to fixed steps, and the
cache holds room for every new token. The question pass and each greedy step then run on fixed
shapes, so `torch.compile` can capture them once per bucket (CUDA graphs on a GPU) and the cache
tensors are reused batch after batch instead of grown and reallocated.

Cache layout per row, left to right: the prefix (left-padded as prefilled), a gap up to the prefix
bucket, the suffix (left-padded to its bucket), then the generated tokens. The 2-D mask hides the
gaps; positions count only unmasked tokens, so answers equal the eager path's.

>>> StaticDecoder.row_bucket(5), StaticDecoder.length_bucket(70, 64)
(8, 128)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from transformers import StaticCache

from operators.forward import PrefixBatch, TaskRows, yes_probability
from operators.loading import Vlm
from operators.spec import ModelSpec

PREFIX_STEP = 64  # tokens; one SmolVLM tile is 64 image tokens
SUFFIX_STEP = 16
StepFunction = Callable[..., Any]


class StaticDecoder:
    """Answers task rows from a prefilled cache on bucketed, fixed shapes; optionally compiled."""

    def __init__(self, compile_steps: bool = False, max_caches: int = 8) -> None:
        self.compile_steps = compile_steps
        self.max_caches = max_caches
        self._caches: dict[tuple[int, int], Any] = {}
        self._step: StepFunction | None = None

    @staticmethod
    def row_bucket(rows: int) -> int:
        """Rows rounded up to a power of two, so batch sizes come from a short list."""
        return 1 << max(0, math.ceil(math.log2(max(rows, 1))))

    @staticmethod
    def length_bucket(length: int, step: int) -> int:
        """A length rounded up to a multiple of `step`."""
        return max(step, math.ceil(length / step) * step)

    def continue_rows(
        self, vlm: Vlm, prefill_cache: Any, prefix: PrefixBatch, rows: TaskRows
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """P(yes) per task row and the generated ids of the generate rows, as the eager path."""
        layout = _Layout.of(prefix, rows, vlm.spec.max_new_tokens)
        padded = _pad_rows(rows.size, self.row_bucket(rows.size))
        cache = self._cache(vlm, padded.numel(), layout.total)
        index = rows.prefix_index[padded].to(vlm.device)
        _take_rows(cache, prefill_cache, index, layout.prefilled, layout.prefix)
        mask = layout.mask(prefix.attention_mask[rows.prefix_index], rows.attention_mask)
        mask = mask[padded].to(vlm.device)
        suffix = _left_pad(rows.input_ids, layout.suffix, vlm.tokenizer.pad_token_id)[padded]
        logits = self._run(vlm, suffix, mask, layout.prefix, cache)
        probability = yes_probability(logits[: rows.size], vlm.yes_ids, vlm.no_ids).cpu()
        if not rows.generate_rows.numel():
            return probability, None
        generated = self._generate(vlm, cache, logits, mask, rows.generate_rows, layout)
        return probability, generated

    def _generate(
        self,
        vlm: Vlm,
        source: Any,
        logits: torch.Tensor,
        mask: torch.Tensor,
        picked: torch.Tensor,
        layout: _Layout,
    ) -> torch.Tensor:
        padded = picked[_pad_rows(picked.numel(), self.row_bucket(picked.numel()))]
        cache = self._cache(vlm, padded.numel(), layout.total)
        start = layout.prefix + layout.suffix
        _take_rows(cache, source, padded.to(vlm.device), start, start)
        logits, mask = logits[padded.to(logits.device)], mask[padded.to(mask.device)].clone()
        eos = torch.tensor(vlm.eos_ids, device=logits.device)
        finished = torch.zeros(logits.shape[0], dtype=torch.bool, device=logits.device)
        tokens: list[torch.Tensor] = []
        for step in range(vlm.spec.max_new_tokens):
            next_ids = logits.argmax(dim=-1).masked_fill(finished, vlm.tokenizer.pad_token_id)
            tokens.append(next_ids)
            finished |= torch.isin(next_ids, eos)
            if step + 1 == vlm.spec.max_new_tokens or bool(finished[: picked.numel()].all()):
                break
            mask[:, start + step] = 1
            logits = self._run(vlm, next_ids[:, None], mask, start + step, cache)
        return torch.stack(tokens, dim=1)[: picked.numel()].cpu()

    def _run(
        self, vlm: Vlm, input_ids: torch.Tensor, mask: torch.Tensor, offset: int, cache: Any
    ) -> torch.Tensor:
        """One fixed-shape step: `input_ids` written at cache slots from `offset`.

        The cache's write position is already `offset`: `_take_rows` set it, and each
        step advances it inside the model.
        """
        width = input_ids.shape[1]
        positions = (mask.long().cumsum(dim=-1) - 1).clamp(min=0)[:, offset : offset + width]
        step = self._step_function(vlm)
        if self.compile_steps and vlm.device.type == "cuda":
            # Each call is a new step for CUDA graph trees: earlier outputs were consumed.
            torch.compiler.cudagraph_mark_step_begin()
        return step(input_ids.to(vlm.device), mask, positions, cache)

    def _step_function(self, vlm: Vlm) -> StepFunction:
        if self._step is None:
            keyword = vlm.cache_keyword

            def step(ids: torch.Tensor, mask: torch.Tensor, positions: Any, cache: Any) -> Any:
                output = vlm.model(
                    input_ids=ids,
                    attention_mask=mask,
                    position_ids=positions,
                    use_cache=True,
                    logits_to_keep=1,
                    **{keyword: cache},
                )
                return output.logits[:, -1].float()

            self._step = _compiled(step, vlm) if self.compile_steps else step
        return self._step

    def _cache(self, vlm: Vlm, rows: int, length: int) -> Any:
        """A cache of this bucket, reused so compiled steps keep their static addresses."""
        key = (rows, length)
        if key not in self._caches:
            if len(self._caches) >= self.max_caches:
                self._caches.pop(next(iter(self._caches)))
            config = vlm.model.config.get_text_config(decoder=True)
            self._caches[key] = StaticCache(config=config, max_cache_len=length)
        return self._caches[key]


def static_decoder(spec: ModelSpec) -> StaticDecoder | None:
    """The decoder the spec asks for: None for the eager and plain engines, compiled steps with
    `compile`."""
    if spec.engine == "plain" or (spec.engine == "eager" and not spec.compile):
        return None
    return StaticDecoder(compile_steps=spec.compile)


class _Layout:
    """Bucketed lengths of one batch: prefix slots, suffix slots, and the whole cache."""

    def __init__(self, prefix: int, prefilled: int, suffix: int, new_tokens: int) -> None:
        self.prefix, self.prefilled, self.suffix = prefix, prefilled, suffix
        self.total = prefix + suffix + new_tokens

    @classmethod
    def of(cls, prefix: PrefixBatch, rows: TaskRows, new_tokens: int) -> _Layout:
        prefilled = int(prefix.input_ids.shape[1])
        suffix = StaticDecoder.length_bucket(int(rows.input_ids.shape[1]), SUFFIX_STEP)
        bucket = StaticDecoder.length_bucket(prefilled, PREFIX_STEP)
        return cls(bucket, prefilled, suffix, new_tokens)

    def mask(self, prefix_mask: torch.Tensor, suffix_mask: torch.Tensor) -> torch.Tensor:
        """The full-width 2-D mask: prefix, gap, left-padded suffix, room for new tokens."""
        full = torch.zeros(prefix_mask.shape[0], self.total, dtype=torch.long)
        full[:, : self.prefilled] = prefix_mask
        width = suffix_mask.shape[1]
        full[:, self.prefix + self.suffix - width : self.prefix + self.suffix] = suffix_mask
        return full


def _pad_rows(rows: int, bucket: int) -> torch.Tensor:
    """Row indices filling a bucket: every row once, then the last row repeated."""
    index = torch.arange(bucket)
    return index.clamp(max=rows - 1)


def _left_pad(ids: torch.Tensor, width: int, pad_id: int) -> torch.Tensor:
    padded = torch.full((ids.shape[0], width), pad_id, dtype=ids.dtype)
    padded[:, width - ids.shape[1] :] = ids
    return padded


def _take_rows(cache: Any, source: Any, index: torch.Tensor, slots: int, position: int) -> None:
    """Cache row i takes row `index[i]` of `source`, its first `slots` slots.

    Writes then go on at `position`; slots between `slots` and `position` are a masked gap.
    """
    for target, layer in zip(cache.layers, source.layers, strict=True):
        keys, values = layer.keys[index, :, :slots], layer.values[index, :, :slots]
        _allocate(target, keys, values)
        target.keys[:, :, :slots].copy_(keys)
        target.values[:, :, :slots].copy_(values)
    _set_length(cache, position)


def _allocate(layer: Any, keys: torch.Tensor, values: torch.Tensor) -> None:
    if not getattr(layer, "is_initialized", False):
        layer.lazy_initialization(keys, values)


def _set_length(cache: Any, length: int) -> None:
    # In place: compiled steps hold this tensor's address.
    for layer in cache.layers:
        layer.cumulative_length.fill_(length)


def _compiled(step: StepFunction, vlm: Vlm) -> StepFunction:
    """`torch.compile` of one step; CUDA graphs on a GPU, where launch overhead dominates."""
    import torch._dynamo

    # One graph per bucket (rows x cache length x suffix width): allow enough of them.
    torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 64)
    mode = "reduce-overhead" if vlm.device.type == "cuda" else None
    return torch.compile(step, mode=mode, dynamic=False)
