"""Settings of the pipeline's vision-language models: checkpoint, engine, cost, replica pool.

`model:` is the default model; `models:` names more, each with its own replica pool, and a
label or question of a policy asks one by name (`model: large`). A model's cost orders it:
the pipeline asks cheap models first and a dear one only where a rule is still open.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PositiveFloat,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WrapValidator,
)

from contracts.vlm import DEFAULT_MODEL
from operators.spec import ModelSpec

COST_RANKS = {"small": 0, "large": 1}
COST_DESCRIPTION = (
    "Its cost class: small, large, or a rank (0 = small, 1 = large, 2 larger still). Models "
    "run cheapest first; a dearer one is asked only for posts whose rules the cheaper ones' "
    "answers left open."
)
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


class ModelSettings(ModelSpec):
    """The VLM checkpoint and how to run it; `tiny:smolvlm` builds a random-weight model offline.

    The operators' `ModelSpec` plus what only the pipeline reads: the load-time check, torch's
    threads, and the model's cost.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", protected_namespaces=())

    name_or_path: str = Field("tiny:smolvlm", description="Hub id, local path, or tiny:<arch>.")
    self_check: Literal["fallback", "refuse"] = Field(
        "fallback",
        description="At load, the shared-prefix engine is checked against the plain one on "
        "probe posts. fallback: where any probability differs by more than 1e-3 (or the engine "
        "fails), run the plain engine and say so. refuse: refuse to start instead.",
    )
    torch_threads: int | None = Field(
        None,
        ge=1,
        description="CPU threads for torch in each replica; Ray sets one per whole CPU the "
        "replica reserves, at least one, which starves CPU-only replicas with fractional CPUs.",
    )
    cost: ModelCost = Field("small", description=COST_DESCRIPTION)

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
    upscale_delay_s: float = Field(
        30.0,
        ge=0,
        description="How long the load must stay above target before replicas are added.",
    )
    downscale_delay_s: float = Field(
        600.0,
        ge=0,
        description="How long the load must stay below target before replicas are removed.",
    )
    look_back_period_s: float = Field(
        30.0,
        gt=0,
        description="The window each scaling decision averages the load over. Callers "
        "report their queued calls every 10 s, so keep it above that (Serve warns otherwise); "
        "shorter reacts to a backlog sooner and to a lull as quickly.",
    )
    resources: dict[str, PositiveFloat] = Field(
        default_factory=dict,
        description="Custom Ray resources each replica takes, to place the pool on the nodes "
        "started with them (`ray start --resources '{\"model_node\": 1}'`); a replica waits "
        "until such a node has room.",
    )


class NamedModelSettings(ModelSettings):
    """A model under `models:`: the default model's settings, a cost class and its own pool."""

    model_config = ConfigDict(frozen=True, extra="forbid", protected_namespaces=())

    cost: ModelCost = Field(..., description=COST_DESCRIPTION)
    pool: ReplicaPoolSettings = Field(
        default_factory=ReplicaPoolSettings,
        description="Its replica pool: replicas, GPU and CPU share per replica, batching.",
    )


def autoscaling_config(pool: ReplicaPoolSettings) -> dict[str, Any]:
    """Serve's autoscaling of a deployment sized by `pool`."""
    return {
        "min_replicas": pool.min_replicas,
        "initial_replicas": max(1, pool.min_replicas),
        "max_replicas": pool.max_replicas,
        "target_ongoing_requests": pool.target_ongoing_requests,
        "upscale_delay_s": pool.upscale_delay_s,
        "downscale_delay_s": pool.downscale_delay_s,
        "look_back_period_s": pool.look_back_period_s,
    }


def actor_resources(
    num_cpus: float, num_gpus: float, resources: Mapping[str, float] | None = None
) -> dict[str, Any]:
    """Ray actor options for a share of CPU and, when asked for, of a GPU and custom resources."""
    options: dict[str, Any] = {"num_cpus": num_cpus}
    if num_gpus:
        options["num_gpus"] = num_gpus
    if resources:
        options["resources"] = dict(resources)
    return options
