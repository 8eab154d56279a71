"""A Moderator built from a config, and single-post moderation for the HTTP API and the CLI."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from contracts.producers import ProducerRegistry, bind_all
from contracts.records import DeadLetter, Post, Verdict
from pipelines.config import PipelineConfig
from pipelines.gathering import SignalGatherer
from pipelines.producer_registry import pipeline_registry
from pipelines.signal_source import SignalSource
from pipelines.specialist_work import SpecialistSource
from pipelines.stages import ModelSources
from pipelines.steps import REVIEW_EMBEDDING, Moderator, SourceMessage
from pipelines.telemetry import Telemetry, telemetry
from pipelines.wiring import build_model_sources, signal_cache
from policies.policy_set import PolicySet, SignalPlan


def build_moderator(
    config: PipelineConfig,
    policies: Any,
    sources: SignalSource | Mapping[str, SignalSource],
    tele: Telemetry | None = None,
    registry: ProducerRegistry | None = None,
    specialists: SpecialistSource | None = None,
) -> Moderator:
    """A Moderator over `policies` (a PolicySet, or anything with `.current()`) and `sources`.

    `sources` has one source per model of the config, by name; a single source is the default
    model's. `registry` must be the one the policies were loaded with (default: the config's).
    `specialists`, when given, runs the specialist-cost producers (`specialists.placement:
    pool`); without it they run here, whatever the placement.
    """
    from operators.images import ImageLoader

    current = policies.current if hasattr(policies, "current") else (lambda: policies)
    tele = tele or telemetry()
    registry = registry or pipeline_registry(config)
    bind_all(registry, config.producer_context())
    gatherer = SignalGatherer(
        registry=registry,
        models=ModelSources.of(config, sources),
        loader=ImageLoader(config.images),
        retry=config.retry,
        telemetry=tele,
        cache=signal_cache(config),
        specialists=specialists,
    )
    return Moderator(
        policies=current,
        gatherer=gatherer,
        topics=config.topics,
        telemetry=tele,
        limits=config.posts.limits(config.images.max_images),
        policy_budget_s=config.posts.policy_time_budget_ms / 1000,
        always=REVIEW_EMBEDDING if config.review_embeddings else SignalPlan(),
    )


@dataclass
class LocalModerator:
    """Moderates single posts through the same steps as the streaming pipeline."""

    moderator: Moderator

    @classmethod
    def from_config(
        cls,
        config: PipelineConfig,
        sources: SignalSource | Mapping[str, SignalSource] | None = None,
        specialists: SpecialistSource | None = None,
    ) -> LocalModerator:
        """Watched policies from the config's directory; signals from `sources` or in-process;
        the specialists on `specialists` (the pool) or here."""
        from policies.watch import PolicyWatcher

        registry = pipeline_registry(config)
        watcher = PolicyWatcher(config.policy_dir, registry=registry).start()
        sources = sources or build_model_sources(config)
        moderator = build_moderator(
            config, watcher, sources, registry=registry, specialists=specialists
        )
        return cls(moderator)

    @classmethod
    def with_policies(
        cls,
        config: PipelineConfig,
        policies: PolicySet,
        registry: ProducerRegistry | None = None,
    ) -> LocalModerator:
        """A moderator over a fixed PolicySet (loaded with `registry`, default: the config's)
        and the config's models, in-process."""
        sources = build_model_sources(config)
        return cls(build_moderator(config, policies, sources, registry=registry))

    def moderate_one(
        self, post: Post | dict[str, Any] | bytes
    ) -> tuple[Verdict | None, DeadLetter | None]:
        """The most severe verdict for `post`, or its dead letter; bytes decode as from Kafka.

        The verdict carries the post's record (`Verdict.record`), whichever verdict the step
        list put it on: it is the one verdict a caller keeps.
        """
        message = SourceMessage(message_bytes(post), topic="local", partition=0, offset=0)
        [outcome] = self.moderator.moderate([message])
        if outcome.dead_letter is not None:
            return None, outcome.dead_letter
        verdict = outcome.most_severe()
        if verdict is not None and verdict.record is None:
            records = [active.verdict.record for active in outcome.verdicts]
            record = next((each for each in records if each is not None), None)
            verdict = verdict.model_copy(update={"record": record})
        return verdict, None


def message_bytes(post: Post | dict[str, Any] | bytes) -> bytes:
    """The message value for `post`: raw bytes as they are, records and dicts as JSON."""
    if isinstance(post, bytes):
        return post
    body = post.model_dump(mode="json") if isinstance(post, Post) else post
    return json.dumps(body).encode()
