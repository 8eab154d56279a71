"""What to load and how to prompt it: one frozen record, built once at start-up."""

from __future__ import annotations

from dataclasses import dataclass, field

DEFAULT_ANSWER_INSTRUCTION = "Answer yes or no."
DEFAULT_LABEL_QUESTION = "Does this image show {label}?"
DEFAULT_POST_LABEL_QUESTION = "Does this post show or contain {label}?"
DEFAULT_DESCRIBE_PROMPT = "Describe this image in one sentence."
ENGINES = ("eager", "static", "plain")


@dataclass(frozen=True)
class ModelSpec:
    """A checkpoint (hub id or local path) plus the settings every task shares.

    >>> ModelSpec("HuggingFaceTB/SmolVLM-256M-Instruct", dtype="bfloat16").device
    'auto'
    """

    name_or_path: str
    revision: str | None = None
    dtype: str = "auto"
    device: str = "auto"
    attn_implementation: str | None = None
    max_new_tokens: int = 32
    # "eager": dynamic KV cache, any shape. "static": the question pass and decode steps on a
    # preallocated cache with bucketed shapes. `compile` compiles those steps (implies static).
    # "plain": no shared prefix; each task one plain forward of its whole prompt (the reference).
    engine: str = "eager"
    compile: bool = False
    local_files_only: bool = False
    trust_remote_code: bool = False
    system_prompt: str | None = None
    answer_instruction: str = DEFAULT_ANSWER_INSTRUCTION
    label_question: str = DEFAULT_LABEL_QUESTION
    post_label_question: str = DEFAULT_POST_LABEL_QUESTION
    describe_prompt: str = DEFAULT_DESCRIBE_PROMPT
    yes_words: tuple[str, ...] = ("yes", "Yes", "YES")
    no_words: tuple[str, ...] = ("no", "No", "NO")
    max_rows_per_forward: int = 256
    max_text_tokens: int = 512  # tokens of post text in a post-level prompt; the rest is cut
    # Threads that run the processor on the next chunk's images while a forward runs; 0 runs
    # it inline before each forward.
    preprocess_threads: int = 2
    # Tiling cost knobs for processors that split images into tiles (Idefics3/SmolVLM); None
    # keeps the checkpoint's own setting. Tiles per image are at most ceil(edge / tile)^2 + 1.
    image_splitting: bool | None = None
    max_image_edge: int | None = None  # px; images are resized to this longest edge first
    # Known processors (SmolVLM/Idefics3, LLaVA/CLIP): resize and tile in uint8 on the CPU and
    # rescale + normalize on the model's device, bit-exact with the processor. False always
    # runs the checkpoint's processor. The model sees the same pixels either way, so the
    # answer-cache key (`operators.work.model_key`) leaves this out.
    fast_pixels: bool = True
    extra_load_kwargs: dict[str, str] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise ValueError(f"engine must be one of {', '.join(ENGINES)}, not {self.engine!r}")
        if self.max_new_tokens < 1:
            raise ValueError("max_new_tokens must be at least 1")
        for name in ("label_question", "post_label_question"):
            if "{label}" not in getattr(self, name):
                raise ValueError(f"{name} must contain the placeholder {{label}}")
        if self.max_text_tokens < 1:
            raise ValueError("max_text_tokens must be at least 1")
        if self.preprocess_threads < 0:
            raise ValueError("preprocess_threads must be 0 (inline) or more")
        if self.max_image_edge is not None and self.max_image_edge < 1:
            raise ValueError("max_image_edge must be at least 1 pixel")
