"""`vlmod replay --compute-missing`: values the records lack, computed through the producers.

The pipeline's own gatherer computes them (`pipelines.gathering`), as `vlmod moderate` builds
it: the config's producers and models, their answer cache first (Redis, when the config sets
it), retries as configured. A post is rebuilt from its record; only what its candidates lack
(and what that is computed from) is asked. Images kept inline were not recorded (a record
keeps an image's address only), so a value read from the images of such a post cannot be
computed, and the post stays not replayable, with that reason.
"""

from __future__ import annotations

import json
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from opentelemetry.context import Context

from contracts.history import PostRecord, RecordedValue
from contracts.producers import Input, Placement, ProducerRegistry, bind_all, request_key
from contracts.records import Post
from policies.policy_set import SignalKey, SignalPlan

if TYPE_CHECKING:
    from pipelines.config import PipelineConfig
    from pipelines.gathering import SignalGatherer
    from pipelines.journey import Journey
    from pipelines.signal_source import SignalSource

NO_IMAGES = "the post's inline images were not recorded"


@dataclass(frozen=True)
class Filled:
    """A record with the values computed for it, or why they could not be."""

    record: PostRecord | None
    failed: str | None = None


class MissingValues:
    """Computes values records lack, a batch of posts at a time, as the pipeline would."""

    def __init__(
        self,
        config: PipelineConfig,
        registry: ProducerRegistry,
        sources: SignalSource | Mapping[str, SignalSource] | None = None,
    ) -> None:
        self.registry = registry
        self.gatherer = _gatherer(config, registry, sources)

    def fill(self, wanted: Sequence[tuple[PostRecord, Iterable[SignalKey]]]) -> list[Filled]:
        """Each record with the (producer, request) values wanted of it computed and added."""
        filled: list[Filled | None] = [None] * len(wanted)
        journeys: list[tuple[int, Journey, set[SignalKey]]] = []
        for index, (record, keys) in enumerate(wanted):
            journey = _journey(record, set(keys))
            reason = self._cannot(record, set(journey.plan.requests))
            if reason is not None:
                filled[index] = Filled(None, reason)
            else:
                journeys.append((index, journey, _planned(journey)))
        batch = [journey for _, journey, _ in journeys]
        for stage in self.gatherer.stages():
            self.gatherer.gather(stage, batch)
        for index, journey, keys in journeys:
            filled[index] = self._kept(wanted[index][0], journey, keys)
        return [each for each in filled if each is not None]

    def _cannot(self, record: PostRecord, producers: set[str]) -> str | None:
        """Why the planned values cannot be computed from what the record kept, or None."""
        if not _inline_images(record):
            return None
        for name in producers:
            found = self.registry.get(name)
            if Input.IMAGES in found.inputs or found.placement is Placement.REPLICA:
                return NO_IMAGES
        return None

    def _kept(self, record: PostRecord, journey: Journey, keys: set[SignalKey]) -> Filled:
        """The record with the journey's new values, or the journey's failure."""
        if journey.failure is not None:
            return Filled(None, journey.failure.reason)
        added = []
        for producer, request in sorted(keys, key=repr):
            key = {"producer": producer, "request": request_key(request)}
            if (producer, request) in journey.unavailable:
                why = journey.unavailable[producer, request]
                added.append(RecordedValue(**key, unavailable=why))
            elif (producer, request) in journey.computed:
                value = json.loads(json.dumps(journey.computed[producer, request]))  # as recorded
                added.append(RecordedValue(**key, value=value))
        versions = {producer: self.registry.get(producer).version for producer, _ in keys}
        update = {
            "values": [*record.values, *added],
            "versions": {**versions, **record.versions},
        }
        return Filled(record.model_copy(update=update))


def _gatherer(
    config: PipelineConfig,
    registry: ProducerRegistry,
    sources: SignalSource | Mapping[str, SignalSource] | None,
) -> SignalGatherer:
    """The gatherer `vlmod moderate` builds for `config` (`pipelines.local.build_moderator`)."""
    from operators.images import ImageLoader
    from pipelines.gathering import SignalGatherer
    from pipelines.stages import ModelSources
    from pipelines.telemetry import telemetry
    from pipelines.wiring import build_model_sources, signal_cache

    bind_all(registry, config.producer_context())
    return SignalGatherer(
        registry=registry,
        models=ModelSources.of(config, sources or build_model_sources(config)),
        loader=ImageLoader(config.images),
        retry=config.retry,
        telemetry=telemetry(),
        cache=signal_cache(config),
    )


def _journey(record: PostRecord, keys: set[SignalKey]) -> Journey:
    """The post of `record`, its recorded values among `keys` known, planned to compute the rest.

    Images kept inline have no address in the record; the post is rebuilt without them (a plan
    that needs them is refused before it runs, `MissingValues._cannot`).
    """
    from pipelines.journey import Journey, SourceMessage

    recorded = record.computed()
    known: dict[SignalKey, Any] = {}
    requests: dict[str, set[Hashable]] = {}
    for producer, request in keys:
        text_key = (producer, request_key(request))
        if text_key in recorded:
            known[producer, request] = recorded[text_key]
        else:
            requests.setdefault(producer, set()).add(request)
    plan = SignalPlan({producer: frozenset(r) for producer, r in requests.items()})
    fields = dict(record.post)
    fields["images"] = [image for image in fields.get("images") or () if image.get("url")]
    post = Post.model_validate(fields)
    message = SourceMessage(b"", topic="replay")
    return Journey(message, Context(), post=post, plan=plan, computed=known)


def _planned(journey: Journey) -> set[SignalKey]:
    """The (producer, request) of every value the journey's plan computes."""
    return {(name, request) for name, each in journey.plan.requests.items() for request in each}


def _inline_images(record: PostRecord) -> bool:
    """True when the post had images kept inline, which a record does not keep."""
    return any(not image.get("url") for image in record.post.get("images") or ())
