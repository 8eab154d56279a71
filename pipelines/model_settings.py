"""Settings of the pipeline's vision-language models: checkpoint, engine, cost, replica pool.

`model:` is the default model; `models:` names more, each with its own replica pool, and a
label or question of a policy asks one by name (`model: large`). A model's cost orders it:
the pipeline asks cheap models first and a dear one only where a rule is still open.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WrapValidator,
)

from contracts.vlm import DEFAULT_MODEL

COST_RANKS = {"small": 0, "large": 1}
MODEL_NAME_PATTERN = r"^[a-z][a-z0-9_-]{0,39}$"


def _one_cost(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    """A cost, or one error saying every form a cost may take."""
    try:
        return handler(value)
    except ValidationError:
        raise ValueError(
            f"{value!r} is not a cost: small, large, or a rank 0, 1, 2... (0 = small, 1 = large)"
        ) from None


def _model_name(name: str) -> str:
    """A name under `models:`: not the default model's, and plain enough for a Serve app."""
    if name == DEFAULT_MODEL:
        raise ValueError(f"{name!r} is the name of `model:`; give this one another name")
    if not re.fullmatch(MODEL_NAME_PATTERN, name):
        raise ValueError(f"model name {name!r} does not match {MODEL_NAME_PATTERN}")
    return name


ModelCost = Annotated[
    Literal["small", "large"] | Annotated[int, Field(ge=0)], WrapValidator(_one_cost)
]
ModelName = Annotated[str, AfterValidator(_model_name)]


class ModelSettings(BaseModel):
    """The VLM checkpoint and how to run it; `tiny:smolvlm` builds a random-weight model offline."""

    model_config = ConfigDict(frozen=True, extra="forbid", protected_namespaces=())

    name_or_path: str = Field("tiny:smolvlm", description="Hub id, local path, or tiny:<arch>.")
    revision: str | None = Field(None, description="Checkpoint revision (branch, tag or commit).")
    dtype: str = Field("auto", description="auto, float32, bfloat16 or float16.")
    device: str = Field("auto", description="auto, cpu, cuda or cuda:N.")
    attn_implementation: str | None = Field(None, description="eager, sdpa or flash_attention_2.")
    max_new_tokens: int = Field(32, ge=1, description="Caption length for describe.")
    max_text_tokens: int = Field(
        512,
        ge=1,
        description="Most tokens of a post's text in the model's prompt; the rest is left out "
        "and the verdict's input_changes says how many.",
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
    preprocess_threads: int = Field(
        2,
        ge=0,
        description="Threads running the image processor on the next chunk of a batch while "
        "the model runs the current one; 0 runs it inline before each forward.",
    )
    fast_pixels: bool = Field(
        True,
        description="Resize and tile images in uint8 on the CPU and rescale + normalize them on "
        "the model's device, bit-exact with the processor (SmolVLM/Idefics3 and LLaVA/CLIP; "
        "other processors always run as they are). False always runs the processor.",
    )
    engine: Literal["eager", "static", "plain"] = Field(
        "eager",
        description="eager: a KV cache that grows with each step. static: the question pass and "
        "decode steps run on a preallocated KV cache with bucketed shapes (rows to a power of "
        "two, prefix to 64 tokens), reused batch after batch. plain: no shared prefix, each "
        "question one plain forward of its whole prompt; slow, the reference the others are "
        "checked against at load.",
    )
    self_check: Literal["fallback", "refuse"] = Field(
        "fallback",
        description="At load, the shared-prefix engine is checked against the plain one on "
        "probe posts. fallback: where any probability differs by more than 1e-3 (or the engine "
        "fails), run the plain engine and say so. refuse: refuse to start instead.",
    )
    compile: bool = Field(
        False,
        description="torch.compile the vision tower (dynamic tile counts) and the static "
        "engine's question pass and decode steps (CUDA graphs on a GPU); implies engine: "
        "static. Each new bucket compiles once.",
    )
    local_files_only: bool = Field(False, description="Never contact a model hub.")
    torch_threads: int | None = Field(
        None,
        ge=1,
        description="CPU threads for torch in each replica; Ray sets one per whole CPU the "
        "replica reserves, at least one, which starves CPU-only replicas with fractional CPUs.",
    )
    cost: ModelCost = Field(
        "small",
        description="Its cost class: small, large, or a rank (0 = small, 1 = large, 2 larger "
        "still). Models run cheapest first; a dearer one is asked only for posts whose rules "
        "the cheaper ones' answers left open.",
    )

    @property
    def cost_rank(self) -> int:
        """Its cost as a rank: 0 for small, 1 for large, an int as it is."""
        return COST_RANKS[self.cost] if isinstance(self.cost, str) else self.cost


class ReplicaPoolSettings(BaseModel):
    """One model's replica pool on Ray Serve: its size, GPU and CPU shares, batching."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    min_replicas: int = Field(1, ge=0, description="Fewest model replicas.")
    max_replicas: int = Field(1, ge=1, description="Most model replicas.")
    num_gpus: float = Field(0.0, ge=0, description="GPU share per replica; fractions allowed.")
    num_cpus: float = Field(1.0, ge=0, description="CPU share per replica.")
    max_batch_size: int = Field(
        32,
        ge=1,
        description="Most calls combined into one model batch: an HTTP post or a consumer "
        "micro-batch each. The model splits a batch past its row limit into several forwards.",
    )
    batch_wait_timeout_s: float = Field(
        0.0, ge=0, description="Longest wait to fill a batch; 0 batches what queued meanwhile."
    )
    target_ongoing_requests: float = Field(
        8, gt=0, description="Autoscaling target: consumer micro-batches queued per replica."
    )


class NamedModelSettings(ModelSettings):
    """A model under `models:`: the default model's settings, a cost class and its own pool."""

    model_config = ConfigDict(frozen=True, extra="forbid", protected_namespaces=())

    cost: ModelCost = Field(
        ...,
        description="Its cost class: small, large, or a rank (0 = small, 1 = large, 2 larger "
        "still). Models run cheapest first; a dearer one is asked only for posts whose rules "
        "the cheaper ones' answers left open.",
    )
    pool: ReplicaPoolSettings = Field(
        default_factory=ReplicaPoolSettings,
        description="Its replica pool: replicas, GPU and CPU share per replica, batching.",
    )
