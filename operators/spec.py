"""What to load and how to prompt it: one frozen record, built once at start-up."""

from __future__ import annotations

from dataclasses import dataclass, field

DEFAULT_ANSWER_INSTRUCTION = "Answer yes or no."
DEFAULT_LABEL_QUESTION = "Does this image show {label}?"
DEFAULT_DESCRIBE_PROMPT = "Describe this image in one sentence."


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
    compile: bool = False
    local_files_only: bool = False
    trust_remote_code: bool = False
    system_prompt: str | None = None
    answer_instruction: str = DEFAULT_ANSWER_INSTRUCTION
    label_question: str = DEFAULT_LABEL_QUESTION
    describe_prompt: str = DEFAULT_DESCRIBE_PROMPT
    yes_words: tuple[str, ...] = ("yes", "Yes", "YES")
    no_words: tuple[str, ...] = ("no", "No", "NO")
    max_rows_per_forward: int = 256
    extra_load_kwargs: dict[str, str] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ValueError("max_new_tokens must be at least 1")
        if "{label}" not in self.label_question:
            raise ValueError("label_question must contain the placeholder {label}")
