"""Typed, frozen configuration of the runtime; unknown keys are refused."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveFloat,
    PositiveInt,
    create_model,
    field_validator,
    model_validator,
)

from contracts.decoding import PostLimits
from contracts.errors import ConfigInvalid
from contracts.producers import ProducerContext
from contracts.vlm import DEFAULT_MODEL
from kafka_io.clients import consumer_overrides_for
from kafka_io.settings import KafkaSettings, TopicSettings
from operators.limits import ImageLimits
from operators.specialists.settings import (
    BankSettings,
    NsfwSettings,
    OcrSettings,
    PostBudgetSettings,
)
from pipelines.model_settings import (
    ModelName,
    ModelSettings,
    NamedModelSettings,
    ReplicaPoolSettings,
)
from policies.settings_files import read_config_yaml, validate_config
from sinks.settings import SinkSettings, default_sinks

if TYPE_CHECKING:
    from contracts.producers import ProducerRegistry

# Keys of `specialists:` that say where the specialists run; never a producer's section.
PLACEMENT_KEYS = frozenset({"placement", "pool"})

__all__ = [  # the shipped producers' sections
    "BankSettings",
    "NsfwSettings",
    "OcrSettings",
    "PostBudgetSettings",
]


class PoolSettings(ReplicaPoolSettings):
    """The default model's replica pool and the consumers that feed every model's pool."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    consumers: int = Field(1, ge=1, description="Kafka consumer actors in the group.")
    consumer_num_cpus: float = Field(0.5, ge=0, description="CPU share per consumer actor.")
    consumer_resources: dict[str, PositiveFloat] = Field(
        default_factory=dict,
        description="Custom Ray resources each consumer actor takes, to place consumers on the "
        "nodes started with them.",
    )
    max_poll_records: int = Field(64, ge=1, description="Most posts handed out per poll.")
    max_in_flight_batches: int = Field(
        4, ge=1, description="Batches in flight per consumer while it is behind (full polls)."
    )
    in_flight_caught_up: int = Field(
        1,
        ge=1,
        description="Batches in flight per consumer once a poll comes back short of a full "
        "batch (it has caught up), at most `max_in_flight_batches`: posts arriving meanwhile "
        "wait and go on as one batch.",
    )
    consumer_gc_thresholds: tuple[PositiveInt, PositiveInt, PositiveInt] | None = Field(
        None,
        description="The consumer actor's garbage-collector thresholds (Python's "
        "`gc.set_threshold`, 700, 10, 10 by default) once it has caught up (and at start); "
        "`consumer_gc_thresholds_behind` while it is behind. Absent: Python's.",
    )
    consumer_gc_thresholds_behind: tuple[PositiveInt, PositiveInt, PositiveInt] | None = Field(
        (50000, 50, 100),
        description="The consumer actor's collector thresholds while it is behind (its polls "
        "hand out full batches); once a poll comes back short it goes back to "
        "`consumer_gc_thresholds`. Rarer collections take less CPU a post under a backlog, and "
        "a long one at a modest rate lengthens the latency tail (docs/benchmarks.md). Null: the "
        "same thresholds throughout.",
    )
    replica_grpc_max_bytes: int = Field(
        1_048_576,
        ge=0,
        le=4_194_304,
        description="Calls from a consumer or the API to a replica pool (models, specialists) "
        "carrying at most this many bytes of images and text, and asking for no embeddings, go "
        "by value over Serve's gRPC channel to the replica (about a tenth less consumer CPU a "
        "post, docs/benchmarks.md); larger ones through Ray's object store, as does a call gRPC "
        "refuses for its size (4 MiB). 0: every call through the object store.",
    )
    max_consumers: int | None = Field(
        None,
        ge=1,
        description="Most consumer actors. Above `consumers`, `vlmod run` adds a consumer for "
        "each `lag_per_consumer` messages the group is behind, up to the input topics' "
        "partition count, and removes them again once the lag has stayed low for "
        "`consumer_downscale_delay_s`. Absent: always `consumers`.",
    )
    lag_per_consumer: int = Field(
        1000, ge=1, description="Messages behind per consumer when sizing from lag."
    )
    lag_check_s: float = Field(15.0, gt=0, description="Seconds between reads of the lag.")
    consumer_downscale_delay_s: float = Field(
        300.0, ge=0, description="Seconds the lag must ask for fewer consumers before one stops."
    )

    @model_validator(mode="after")
    def _max_consumers_above_consumers(self) -> PoolSettings:
        if self.max_consumers is not None and self.max_consumers < self.consumers:
            raise ValueError(
                f"max_consumers ({self.max_consumers}) is below consumers ({self.consumers})"
            )
        return self


class RetrySettings(BaseModel):
    """Retries of inference failures before a post goes to the dead-letter topic."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_attempts: int = Field(3, ge=1, description="Tries before dead-lettering.")
    backoff_base_s: float = Field(0.2, ge=0, description="Delay before the second try.")
    backoff_cap_s: float = Field(5.0, ge=0, description="Longest delay between tries.")
    max_batch_attempts: int = Field(
        3,
        ge=1,
        description="Times a consumed batch may fail as a whole before its posts are run one "
        "by one and the one that fails is dead-lettered, so no message stalls its partition.",
    )


class PostSettings(BaseModel):
    """Bounds on one post's input and on the time its policies may take."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_text_chars: int = Field(
        PostLimits.max_text_chars,
        ge=1,
        description="Longer text is cut to this many characters; verdicts say so.",
    )
    max_depth: int = Field(
        PostLimits.max_depth,
        ge=2,
        le=200,
        description="Deepest JSON nesting accepted; deeper posts fail validate.",
    )
    policy_time_budget_ms: float = Field(
        250.0,
        gt=0,
        description="Time one post's policies may take; rules past it are reported as rule "
        "errors and the post still gets a verdict.",
    )

    def limits(self, max_images: int) -> PostLimits:
        """The decoder's limits."""
        return PostLimits(
            max_images=max_images, max_text_chars=self.max_text_chars, max_depth=self.max_depth
        )


class ApiSettings(BaseModel):
    """Limits of the HTTP moderation API."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_request_bytes: int = Field(
        16_000_000, gt=0, description="Largest request body; bigger ones get 413 unread."
    )


class SpecialistSettings(BaseModel):
    """Settings of the producers that run before the model: `post`, where they run (`placement`,
    `pool`), then a section per producer.

    Each producer that takes settings declares their model (`settings_model`); `load_config`
    checks every section against the producers the pipeline registers (`checked_model`), so an
    unknown producer or key is refused with its position. Built in code, each section is given
    as an instance of its producer's `settings_model`.
    """

    model_config = ConfigDict(frozen=True, extra="allow")

    post: PostBudgetSettings = Field(
        default_factory=PostBudgetSettings, description="Per-post limits of the image specialists."
    )
    placement: Literal["consumer", "pool"] = Field(
        "consumer",
        description="Where the consumer-side producers of specialist cost (nsfw, ocr, banks, "
        "profanity) run. consumer: in each Kafka consumer. pool: on a Ray Serve deployment of "
        "their own, sized by `pool`, so they scale apart from the consumers; the consumer keeps "
        "the cache and sends only the misses.",
    )
    pool: ReplicaPoolSettings = Field(
        default_factory=ReplicaPoolSettings,
        description="The specialists' replica pool when `placement: pool`: replicas, CPU share, "
        "autoscaling (the batching settings are not read).",
    )


class TelemetrySettings(BaseModel):
    """OpenTelemetry export."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    exporter: Literal["none", "console", "otlp"] = Field("none", description="Span exporter.")
    otlp_endpoint: str | None = Field(None, description="OTLP collector endpoint.")
    service_name: str = Field("vlm-moderation", description="service.name resource attribute.")


class PipelineConfig(BaseModel):
    """Everything `vlmod run` needs; unknown keys are refused."""

    model_config = ConfigDict(frozen=True, extra="forbid", protected_namespaces=())

    kafka: KafkaSettings = Field(
        default_factory=lambda: KafkaSettings(bootstrap_servers="localhost:9092"),
        description="Broker connection.",
    )
    consumer_group: str = Field("vlmod", min_length=1, description="Kafka consumer group.")
    consumer_overrides: dict[str, Any] = Field(
        default_factory=dict,
        description="Consumer settings by kafka-python's names, e.g. session_timeout_ms "
        "(translated for kafka.consumer: librdkafka).",
    )
    topics: TopicSettings = Field(default_factory=TopicSettings, description="Topic names.")
    redis_url: str | None = Field(
        None, description="Redis for the answer cache and the hash banks; none: uncached, no banks."
    )
    cache_ttl_s: int = Field(7 * 24 * 3600, gt=0, description="Lifetime of cached answers.")
    model: ModelSettings = Field(
        default_factory=ModelSettings,
        description="The default VLM, named `default`: labels and questions naming no model "
        "ask it. Its replica pool is `pool`.",
    )
    models: dict[ModelName, NamedModelSettings] = Field(
        default_factory=dict,
        description="More models by name, each with its own cost class and replica pool; a "
        "policy's label or question asks one with `model: NAME`.",
    )
    policy_dir: str = Field("policies/examples", description="Directory of policy files.")
    review_embeddings: bool = Field(
        False,
        description="Ask the default model for every post's post embedding (text and images "
        "read together, in the prefill its questions share) and send it with the post's review "
        "tasks: the review console finds each task's similar posts by it and lets a reviewer "
        "decide them together. A post its rules decided before the model now calls the model.",
    )
    pool: PoolSettings = Field(default_factory=PoolSettings, description="Replicas and consumers.")
    retry: RetrySettings = Field(default_factory=RetrySettings, description="Inference retries.")
    images: ImageLimits = Field(default_factory=ImageLimits, description="Image limits.")
    posts: PostSettings = Field(
        default_factory=PostSettings, description="Post input and policy-time limits."
    )
    telemetry: TelemetrySettings = Field(
        default_factory=TelemetrySettings, description="OpenTelemetry."
    )
    producers: list[str] = Field(
        default_factory=list,
        description="More signal producers, as package.module:ClassName, registered after the "
        "model's own and the shipped ones; policies name them under `signals:`.",
    )
    api: ApiSettings = Field(default_factory=ApiSettings, description="HTTP API limits.")
    sinks: list[SinkSettings] = Field(
        default_factory=default_sinks,
        description="Where outcomes are written before a batch is committed: kafka (the "
        "topics), postgres (the verdict history), webhook, or another sink by entry point or "
        "package.module:Class. Absent: kafka alone.",
    )
    specialists: SpecialistSettings = Field(
        default_factory=SpecialistSettings,
        description="The per-post budget (`post`), and a section per producer that takes "
        "settings (`ocr`, `nsfw`, `banks`, `shieldgemma`, ...), by its name.",
    )

    _overrides_the_consumer_takes = field_validator("consumer_overrides")(consumer_overrides_for)

    def model_names(self) -> tuple[str, ...]:
        """Every model's name: `default` (`model:`), then those under `models:`."""
        return (DEFAULT_MODEL, *self.models)

    def model_settings(self, name: str) -> ModelSettings:
        """The settings of the model called `name`."""
        return self.model if name == DEFAULT_MODEL else self.models[name]

    def replica_pool(self, name: str) -> ReplicaPoolSettings:
        """The replica pool of the model called `name` (`pool` for the default model)."""
        return self.pool if name == DEFAULT_MODEL else self.models[name].pool

    def producer_context(self) -> ProducerContext:
        """What producers that need a store or settings are bound to: `specialists:` sections
        as the models they were validated into, not parsed again."""
        sections = {k: v for k, v in self.specialists if k not in PLACEMENT_KEYS}
        models = {name: self.model_settings(name).name_or_path for name in self.model_names()}
        return ProducerContext(
            redis_url=self.redis_url, settings=sections, images=self.images, models=models
        )


def load_config(path: str | Path) -> PipelineConfig:
    """Read a pipeline YAML file; every problem is reported as FILE:LINE:COL: message.

    `specialists:` is checked against the producers the file's pipeline registers (the
    installed ones and its `producers:`), each section against that producer's settings.
    """
    from pipelines.producer_registry import pipeline_registry

    doc = read_config_yaml(path, needs="kafka.bootstrap_servers")
    config = validate_config(doc, PipelineConfig)
    return validate_config(doc, checked_model(pipeline_registry(config)))


def config_of(dump: Mapping[str, Any]) -> PipelineConfig:
    """A config an actor or replica was handed (`model_dump`), validated again as `load_config`
    did: each `specialists:` section into its producer's settings model, not a plain dict."""
    from pipelines.producer_registry import pipeline_registry

    registry = pipeline_registry(PipelineConfig.model_validate(dump))
    return checked_model(registry).model_validate(dump)


def checked_model(registry: ProducerRegistry) -> type[PipelineConfig]:
    """PipelineConfig whose `specialists:` holds `post` and the sections of `registry`'s
    producers that declare settings, and refuses any other key."""
    sections: dict[str, Any] = {
        producer.name: (model, Field(default_factory=model, description=_described(model)))
        for producer in registry
        if (model := registry.traits(producer.name).settings_model) is not None
    }
    taken = sorted(set(sections) & {"post", *PLACEMENT_KEYS})
    if taken:
        raise ConfigInvalid(f"producer {taken[0]!r} takes settings under a name specialists: keeps")
    specialists = create_model("SpecialistSettings", __base__=_CheckedSpecialists, **sections)
    field = Field(default_factory=specialists, description="Per-post budget, then per producer.")
    checked: type[PipelineConfig] = create_model(
        "PipelineConfig", __base__=PipelineConfig, specialists=(specialists, field)
    )
    return checked


class _CheckedSpecialists(SpecialistSettings):
    """SpecialistSettings that refuses keys no registered producer takes."""

    model_config = ConfigDict(frozen=True, extra="forbid")


def _described(model: type[BaseModel]) -> str:
    return (model.__doc__ or model.__name__).strip().splitlines()[0]
