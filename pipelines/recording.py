"""A post's `PostRecord`: what its policies read, taken from its journey when it is decided.

The record holds the post as policies read it, whether its text was cut, every producer value
computed for it (or why one could not be had) keyed by `(producer, request_key(request))` and
sorted by that key, and the version of each producer that computed a value. A model producer's
version also names the checkpoint and revision of each model that answered it, as
`replica default=ORG/ID@REVISION`, since the producer's own version (`replica`) leaves the model
to the replica's cache keys.

Values go into the record as JSON data that reads back equal: a tuple becomes a list, and a
value JSON cannot hold exactly (NaN, a non-string map key, an object) raises, which ends the
post as a dead letter at the route stage instead of recording something a replay would misread.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from operator import itemgetter
from typing import Any

from contracts.history import RECORD_VERSION, PostRecord
from contracts.producers import Placement, ProducerRegistry, request_key
from contracts.vlm import VlmTask
from pipelines.journey import Journey
from pipelines.stages import ModelSources
from policies.truncation import TRUNCATED_FIELD

__all__ = ["Recorder", "recordable"]

VERSIONS_KEPT = 1024  # producer-and-model sets whose versions are remembered; a handful in use


@dataclass
class Recorder:
    """Builds each decided post's record; remembers the version strings it has made.

    The registry and the models' references (asked once per source) do not change while a
    pipeline runs, so a producer asking the same models has the same version every time.
    """

    registry: ProducerRegistry
    models: ModelSources
    _versions: dict[tuple[str, frozenset[str]], str] = field(default_factory=dict)

    def record(self, journey: Journey) -> PostRecord:
        """The record of a decided post: its fields, every value computed for it, versions."""
        scope = journey.policy_scope()
        post = {name: value for name, value in scope.post.items() if name != TRUNCATED_FIELD}
        values = [
            {
                "producer": producer,
                "request": _request_key(request),
                "value": recordable(value, producer, request),
            }
            for (producer, request), value in journey.computed.items()
        ]
        values += [
            {"producer": producer, "request": _request_key(request), "unavailable": reason}
            for (producer, request), reason in journey.unavailable.items()
        ]
        # Sorted: a post's values are computed in an order that hashing varies from run to run.
        values.sort(key=BY_KEY)
        # One validation of plain data is cheaper than building each RecordedValue in Python.
        return PostRecord.model_validate(
            {
                "version": RECORD_VERSION,
                "post": post,
                "truncated": scope.truncated,
                "values": values,
                "versions": self.versions(journey.computed),
            }
        )

    def versions(self, keys: Iterable[tuple[str, Hashable]]) -> dict[str, str]:
        """The version of each producer in `keys`; a model producer's names the models asked."""
        asked: dict[str, set[str]] = {}
        for producer, request in keys:
            names = asked.get(producer)
            if names is None:
                names = asked[producer] = set()
            if type(request) is VlmTask:
                names.add(request.model)
        found = {}
        for producer, names in asked.items():
            key = (producer, frozenset(names))
            version = self._versions.get(key)
            if version is None:
                if len(self._versions) >= VERSIONS_KEPT:
                    self._versions.clear()
                version = self._versions[key] = self._version(producer, names)
            found[producer] = version
        return found

    def _version(self, producer: str, models: set[str]) -> str:
        if producer not in self.registry:
            raise ValueError(f"record: producer {producer!r} gave a value but is not registered")
        made = self.registry.get(producer)
        version = str(made.version)
        if made.placement is Placement.REPLICA and models:
            version += " " + ", ".join(self._model_version(name) for name in sorted(models))
        return version

    def _model_version(self, name: str) -> str:
        ref = self.models.ref(name)
        return f"{name}={ref.name}@{ref.revision}" if ref.revision else f"{name}={ref.name}"


BY_KEY = itemgetter("producer", "request")

# A model task's repr (a dataclass with enums) costs microseconds; a post asks dozens, and
# policies ask the same few hundred again and again.
_request_key = lru_cache(maxsize=4096)(request_key)


def recordable(value: Any, producer: str = "", request: Hashable = None) -> Any:
    """`value` as JSON data that reads back equal to it; raises for what JSON cannot hold."""
    kind = type(value)
    if value is None or kind is str or kind is bool or kind is int:
        return value
    if kind is float:
        if math.isfinite(value):
            return value
    elif kind is list or kind is tuple:
        # An embedding: hundreds of floats, checked in two C-level passes.
        if value and set(map(type, value)) == {float} and math.isfinite(sum(value)):
            return value if kind is list else list(value)
        return [recordable(item, producer, request) for item in value]
    elif kind is dict and all(type(key) is str for key in value):
        return {key: recordable(item, producer, request) for key, item in value.items()}
    where = f"{producer} {request_key(request)}" if producer else "a value"
    raise ValueError(f"record: {where} holds {value!r:.60}, which JSON cannot hold exactly")
