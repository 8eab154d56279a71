"""What to load and how to prompt it: one frozen record, built once at start-up.

The pipeline's `model:` section is this record plus the pipeline's own settings
(`pipelines.model_settings.ModelSettings`), so every field here is settable there too.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    field_validator,
)

DEFAULT_ANSWER_INSTRUCTION = "Answer yes or no."
DEFAULT_LABEL_QUESTION = "Does this image show {label}?"
DEFAULT_POST_LABEL_QUESTION = "Does this post show or contain {label}?"
DEFAULT_DESCRIBE_PROMPT = "Describe this image in one sentence."
ENGINES = ("eager", "static", "plain")


def _one_engine(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    """An engine, or one error naming them all."""
    try:
        return handler(value)
    except ValidationError:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, not {value!r}") from None


Engine = Annotated[Literal["eager", "static", "plain"], WrapValidator(_one_engine)]


class ModelSpec(BaseModel):
    """A checkpoint (hub id or local path) plus the settings every task shares.

    >>> ModelSpec(name_or_path="HuggingFaceTB/SmolVLM-256M-Instruct", dtype="bfloat16").device
    'auto'
    """

    model_config = ConfigDict(frozen=True, extra="forbid", protected_namespaces=())

    name_or_path: str = Field(description="Hub id or local path of the checkpoint.")
    revision: str | None = Field(None, description="Checkpoint revision (branch, tag or commit).")
    dtype: str = Field("auto", description="auto, float32, bfloat16 or float16.")
    device: str = Field("auto", description="auto, cpu, cuda or cuda:N.")
    attn_implementation: str | None = Field(None, description="eager, sdpa or flash_attention_2.")
    max_new_tokens: int = Field(32, ge=1, description="Caption length for describe.")
    engine: Engine = Field(
        "eager",
        description="eager: a KV cache that grows with each step. static: the question pass and "
        "decode steps run on a preallocated KV cache with bucketed shapes (rows to a power of "
        "two, prefix to 64 tokens), reused batch after batch. plain: no shared prefix, each "
        "question one plain forward of its whole prompt; slow, the reference the others are "
        "checked against at load.",
    )
    compile: bool = Field(
        False,
        description="torch.compile the vision tower (dynamic tile counts) and the static "
        "engine's question pass and decode steps (CUDA graphs on a GPU); implies engine: "
        "static. Each new bucket compiles once.",
    )
    local_files_only: bool = Field(False, description="Never contact a model hub.")
    trust_remote_code: bool = Field(
        False, description="Run Python code shipped with the checkpoint (transformers' flag)."
    )
    system_prompt: str | None = Field(
        None, description="A system message before every prompt; none sends none."
    )
    answer_instruction: str = Field(
        DEFAULT_ANSWER_INSTRUCTION, description="Said after every yes/no question."
    )
    label_question: str = Field(
        DEFAULT_LABEL_QUESTION,
        description="The question asked of each image for a label; must contain {label}.",
    )
    post_label_question: str = Field(
        DEFAULT_POST_LABEL_QUESTION,
        description="The question asked of a whole post for a label; must contain {label}.",
    )
    describe_prompt: str = Field(
        DEFAULT_DESCRIBE_PROMPT, description="The instruction that asks for a caption."
    )
    yes_words: tuple[str, ...] = Field(
        ("yes", "Yes", "YES"),
        min_length=1,
        description="Answers read as yes; each the tokenizer spells as one token counts.",
    )
    no_words: tuple[str, ...] = Field(
        ("no", "No", "NO"),
        min_length=1,
        description="Answers read as no; each the tokenizer spells as one token counts.",
    )
    max_rows_per_forward: int = Field(
        256, ge=1, description="Most task rows in one forward; larger batches run as several."
    )
    max_text_tokens: int = Field(
        512,
        ge=1,
        description="Most tokens of a post's text in the model's prompt; the rest is left out "
        "and the verdict's input_changes says how many.",
    )
    preprocess_threads: int = Field(
        2,
        ge=0,
        description="Threads running the image processor on the next chunk of a batch while "
        "the model runs the current one; 0 runs it inline before each forward.",
    )
    image_splitting: bool | None = Field(
        None,
        description="Split images into tiles (SmolVLM/Idefics3); none keeps the checkpoint's "
        "setting. Off: one tile of the whole image, the cheapest.",
    )
    max_image_edge: int | None = Field(
        None,
        ge=1,
        description="Longest image edge in pixels before tiling; caps the tiles per image at "
        "ceil(edge / tile)^2 + 1 (SmolVLM-256M: 512 px tiles of 64 tokens each).",
    )
    # The model sees the same pixels either way, so the answer-cache key
    # (`operators.work.model_key`) leaves this out.
    fast_pixels: bool = Field(
        True,
        description="Resize and tile images in uint8 on the CPU and rescale + normalize them on "
        "the model's device, bit-exact with the processor (SmolVLM/Idefics3 and LLaVA/CLIP; "
        "other processors always run as they are). False always runs the processor.",
    )
    extra_load_kwargs: dict[str, str] = Field(
        default_factory=dict,
        description="More keyword arguments to the model's from_pretrained, as strings.",
    )

    @field_validator("label_question", "post_label_question")
    @classmethod
    def _has_label_placeholder(cls, question: str, info: ValidationInfo) -> str:
        if "{label}" not in question:
            raise ValueError(f"{info.field_name} must contain the placeholder {{label}}")
        return question

    def replaced(self, **changes: Any) -> Self:
        """A copy with `changes`, validated as a new one would be."""
        return self.model_validate({**dict(self), **changes})

    def spec(self, **changes: Any) -> ModelSpec:
        """Only the operators' settings, as a plain ModelSpec, with `changes`, validated."""
        fields = {name: getattr(self, name) for name in ModelSpec.model_fields}
        return ModelSpec.model_validate({**fields, **changes})
