"""The stages a batch runs through, cheapest first, and the models each stage asks.

Producers run by cost class (`Cost`). The model's class splits further by the models' cost
ranks (`cost: small | large | N` in the config), so a small model's answers are known, and
each post planned again, before a large model is asked: a cascade written as ordinary rules.

>>> from contracts.producers import Cost
>>> from pipelines.signal_source import NoopSignals
>>> models = ModelSources(
...     {"default": NoopSignals(), "large": NoopSignals()}, {"default": 0, "large": 1}
... )
>>> [str(stage) for stage in stages_of([Cost.TRIVIAL, Cost.MODEL], {Cost.MODEL}, models)]
['trivial', 'model (cost 0: default)', 'model (cost 1: large)']
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from contracts.errors import ConfigInvalid
from contracts.producers import Cost
from contracts.records import ModelRef
from contracts.vlm import DEFAULT_MODEL
from pipelines.signal_source import SignalSource

if TYPE_CHECKING:
    from pipelines.config import PipelineConfig


@dataclass(frozen=True)
class CostStage:
    """One step of a batch: the producers of a cost class; for the model's, the models of a rank."""

    cost: Cost
    rank: int = 0  # the models' cost rank; 0 for a class the model replica has no part in
    models: tuple[str, ...] = ()  # the models asked in this stage; none outside the model's class

    def __str__(self) -> str:
        name = self.cost.name.lower()
        return f"{name} (cost {self.rank}: {', '.join(self.models)})" if self.models else name


@dataclass(frozen=True)
class ModelSources:
    """The pipeline's models by name: each one's signal source and cost rank."""

    sources: Mapping[str, SignalSource]
    ranks: Mapping[str, int]

    @classmethod
    def of(
        cls, config: PipelineConfig, sources: SignalSource | Mapping[str, SignalSource]
    ) -> ModelSources:
        """`sources` (one source: the default model's) ranked by `config`'s model costs."""
        named = sources if isinstance(sources, Mapping) else {DEFAULT_MODEL: sources}
        if set(named) != set(config.model_names()):
            wanted, given = ", ".join(config.model_names()), ", ".join(named)
            reason = f"models: the config names {wanted}; sources were given for {given}"
            raise ConfigInvalid(reason)
        ranks = {name: config.model_settings(name).cost_rank for name in named}
        return cls(dict(named), ranks)

    @property
    def default(self) -> SignalSource:
        """The default model's source: tasks that name no model go to it."""
        return self.sources[DEFAULT_MODEL]

    def ref(self, name: str) -> ModelRef:
        """The model called `name`, as verdicts record it."""
        return self.sources[name].model

    def at(self, rank: int) -> tuple[str, ...]:
        """The models of cost rank `rank`, in configuration order."""
        return tuple(name for name, each in self.ranks.items() if each == rank)


def stages_of(
    costs: Iterable[Cost], model_costs: set[Cost], models: ModelSources
) -> list[CostStage]:
    """Each cost class, cheapest first; a class the model replica computes, once per model rank.

    `model_costs` are the classes of the replica's producers (placement REPLICA).
    """
    stages = []
    for cost in sorted(set(costs)):
        if cost not in model_costs:
            stages.append(CostStage(cost))
            continue
        ranks = sorted(set(models.ranks.values()))
        stages += [CostStage(cost, rank, models.at(rank)) for rank in ranks]
    return stages
