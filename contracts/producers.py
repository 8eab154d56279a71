"""Signal producers: one protocol and one registry for everything that computes a signal.

A producer owns one key under a policy's `signals:` (its `name`). From the policy's value there
it derives `Ask`s: which CEL variable (and item of it) each answer lands in, and the request it
computes for that answer. Requests are hashable and policy-independent, so two policies asking
the same thing share one computation, and `(producer, request)` keys every computed value.

Each producer declares its inputs, where it runs (the consumer's CPU or the model replica), a
cost class and a version. The planner runs the cheapest producers first and skips any whose
result can no longer change a verdict; the cache keys a value by the content it read, the
producer, its version and the request.

Adding a producer is one module and one line: in code, `registry.register(LinkSignals())`; for
every process of a deployment, an entry point in the package that ships it,

    [project.entry-points."vlmod.producers"]
    links = "operators.specialists.links:LinkSignals"

or a `producers:` entry in the pipeline config.

A producer's `compute` imports heavy libraries (models, runtimes) only when first called, so
that reading its declaration (what `vlmod policy check` does) costs nothing.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from contracts.errors import ConfigInvalid

if TYPE_CHECKING:
    from pydantic import BaseModel

    from contracts.records import Post

RESERVED_VARIABLES = frozenset({"text", "post"})
SettingsT = TypeVar("SettingsT", bound="BaseModel")


class Placement(StrEnum):
    """Where a producer runs."""

    CONSUMER = "consumer"  # in the consumer, on its CPU, before any model call
    REPLICA = "replica"  # on the model replica pool (GPU); its requests are `VlmTask`s


class Cost(IntEnum):
    """How much one post costs a producer; cheaper classes run first."""

    TRIVIAL = 1  # string work on the post itself: microseconds
    SPECIALIST = 2  # a small model or an index lookup on the CPU: milliseconds
    MODEL = 3  # the vision-language model


class Input(StrEnum):
    """What of a post a producer reads; its cache key hashes exactly these."""

    TEXT = "text"
    IMAGES = "images"
    META = "meta"
    SIGNALS = "signals"  # values other producers computed first (see `after`)


@dataclass(frozen=True)
class Variable:
    """A CEL variable a producer gives conditions."""

    name: str
    cel_type: str  # e.g. "double", "string", "map(string, double)"
    keyed: bool = False  # True: conditions read items by name (`answers.minor`)
    item: str = "item"  # what an item is called in messages: "label", "question", "bank"
    description: str = ""


@dataclass(frozen=True)
class Ask:
    """One value a policy asks for: where it lands (variable, item) and what computes it.

    `needs` lists other producers' values this one is computed from, as (producer, request):
    the planner asks for them too, so `profanity_ocr` brings the OCR text it scores.
    """

    variable: str
    item: str | None
    request: Hashable
    needs: tuple[tuple[str, Hashable], ...] = ()


@dataclass(frozen=True)
class Unavailable:
    """A value that could not be had for a reason outside the post (a store is down).

    The post is still judged: rules reading the value become rule errors naming `reason`,
    and every other rule decides as usual.
    """

    reason: str


@dataclass(frozen=True)
class ProducerOutput:
    """One post's values, plus what a reviewer needs to trust them.

    `values` maps each request to its value (or `Unavailable`); `evidence` is JSON data for the
    verdict (OCR boxes and confidences, a bank match's distance); `notes` say in words what was
    done to the input (an image downscaled, one too plain to hash). A plain mapping of values
    is the same as a ProducerOutput without evidence.
    """

    values: Mapping[Hashable, Any]
    evidence: Mapping[str, Any] = field(default_factory=dict)
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class ProducerContext:
    """What a deployment gives producers that need more than the post: stores and settings.

    A producer with a `bind(context)` method gets it once, before its first `compute`.
    `settings` holds the sections of the pipeline config's `specialists:` by producer name, each
    the instance of that producer's `settings_model` the config was validated into when it was
    loaded (`post` is the per-post budget); `settings_for` hands one out, never parsing again.
    `images` is the config's `images:` section, an `operators.limits.ImageLimits` (contracts
    cannot name it; None: its defaults), whose `max_bytes` and `max_pixels` bound every image a
    producer decodes, as they bound the model's. `models` names each model's checkpoint by the
    pipeline's name for it (`default` is `model:`), for producers that read a model's output
    and must know which model gave it.
    """

    redis_url: str | None = None
    settings: Mapping[str, BaseModel] = field(default_factory=dict)
    images: Any = None
    models: Mapping[str, str] = field(default_factory=dict)

    def settings_for(self, name: str, model: type[SettingsT]) -> SettingsT:
        """The validated section of producer `name`, or `model`'s defaults when there is none."""
        section = self.settings.get(name)
        if section is None:
            return model()
        if not isinstance(section, model):
            kind = type(section).__name__
            raise ConfigInvalid(f"specialists.{name}: expected {model.__name__}, got {kind}")
        return section


@dataclass(frozen=True)
class ProducerJob:
    """One post's work for one producer."""

    post: Post
    requests: frozenset[Hashable]
    images: tuple[bytes, ...] = ()  # the post's fetched images, when the producer reads them
    signals: Mapping[str, Mapping[Hashable, Any]] = field(default_factory=dict)  # by producer
    # The same images decoded once for every producer of the stage that declares `image_fit`
    # (an `operators.decoded.DecodedImages`); None when the caller did not decode them.
    decoded: Any = None
    # Why the post is decided again (`contracts.records.RECHECK_HEADER`), or None: a store it
    # reads has changed, so a producer that keeps a copy of a store reads the store now.
    recheck: str | None = None


class SignalProducer(Protocol):
    """Everything that computes a signal a policy can read (plain class attributes will do).

    The members from `adds_text` on are traits with defaults: a producer that inherits
    `ProducerDefaults` has them, and one that leaves them out gets the same defaults
    (`traits_of`), so a producer written before they were declared keeps working.
    """

    @property
    def name(self) -> str:
        """The key it owns under `signals:`, and its registry name."""
        ...

    @property
    def variables(self) -> tuple[Variable, ...]:
        """The CEL variables it gives conditions."""
        ...

    @property
    def inputs(self) -> frozenset[Input]:
        """What of a post it reads."""
        ...

    @property
    def placement(self) -> Placement:
        """Where it runs."""
        ...

    @property
    def cost(self) -> Cost:
        """Its cost class; cheaper classes run first."""
        ...

    @property
    def version(self) -> str:
        """Its model and version: part of every cache key."""
        ...

    @property
    def config(self) -> Any:
        """The type of the policy's value under `signals.<name>` (pydantic validates it)."""
        ...

    @property
    def after(self) -> tuple[str, ...]:
        """Producers whose values it reads (Input.SIGNALS)."""
        ...

    def asks(self, value: Any) -> list[Ask]:
        """What a policy's (validated) value under `signals.<name>` asks for."""
        ...

    def compute(
        self, jobs: Sequence[ProducerJob]
    ) -> Sequence[Mapping[Hashable, Any] | ProducerOutput | Exception]:
        """A value for every request of every job, in order; an Exception fails that post."""
        ...

    @property
    def adds_text(self) -> bool:
        """True when its values are text found in the post (OCR): whole-post model questions
        read them with the post's (untrusted) text. Default False."""
        ...

    @property
    def cacheable(self) -> bool:
        """False when its values depend on more than the content read (a bank that changes),
        so they are never cached. Default True."""
        ...

    @property
    def retryable(self) -> tuple[type[BaseException], ...]:
        """Its errors a retry may cure, besides the pipeline's own transient ones (a failed
        fetch or model call, any error not raised on purpose). Default none."""
        ...

    def empty(self, request: Hashable) -> Any:
        """Its value for a post with nothing in it (nsfw 0.0, ocr ""), which policy tests read
        for values they do not pin; `NO_EMPTY` (the default) leaves them unset."""
        ...

    def bind(self, context: ProducerContext) -> None:
        """Take the deployment's stores and settings, once, before the first `compute`.
        Default: ignore them."""
        ...

    @property
    def settings_model(self) -> type[BaseModel] | None:
        """The pydantic model of its section under the pipeline config's `specialists:`: the
        section is validated into it once, when the config loads, and the producer reads that
        instance with `context.settings_for(name, model)`; None (the default): it takes none,
        and a section is refused."""
        ...

    @property
    def image_fit(self) -> Callable[[int, int], tuple[int, int]] | None:
        """The (width, height) it reads a width x height image at, when it reads the shared
        decoded images (`job.decoded`); None (the default): it decodes `job.images` itself."""
        ...


class _NoEmpty:
    """The type of `NO_EMPTY`."""

    def __repr__(self) -> str:
        return "NO_EMPTY"


NO_EMPTY: Any = _NoEmpty()  # `empty(request)` of a producer with no empty value


class ProducerDefaults:
    """The traits' defaults (see `SignalProducer`); inherit it and override what differs."""

    adds_text: bool = False
    cacheable: bool = True
    retryable: tuple[type[BaseException], ...] = ()
    image_fit: Callable[[int, int], tuple[int, int]] | None = None
    settings_model: type[BaseModel] | None = None

    def empty(self, request: Hashable) -> Any:
        """No empty value: policy tests must pin this producer's values."""
        return NO_EMPTY

    def bind(self, context: ProducerContext) -> None:
        """Nothing to take from the deployment."""


TRAITS = ("adds_text", "cacheable", "retryable", "empty", "bind", "image_fit", "settings_model")


@dataclass(frozen=True)
class Traits:
    """A producer's traits, its own or the defaults: what the pipeline and policy tests read."""

    adds_text: bool
    cacheable: bool
    retryable: tuple[type[BaseException], ...]
    empty: Callable[[Hashable], Any]
    bind: Callable[[ProducerContext], None]
    image_fit: Callable[[int, int], tuple[int, int]] | None
    settings_model: type[BaseModel] | None


def traits_of(producer: SignalProducer) -> Traits:
    """`producer`'s traits; the defaults of `ProducerDefaults` for any it leaves out."""
    defaults = ProducerDefaults()
    found = {name: getattr(producer, name, getattr(defaults, name)) for name in TRAITS}
    return Traits(
        adds_text=bool(found["adds_text"]),
        cacheable=bool(found["cacheable"]),
        retryable=tuple(found["retryable"]),
        empty=found["empty"],
        bind=found["bind"],
        image_fit=found["image_fit"],
        settings_model=found["settings_model"],
    )


def as_output(output: Mapping[Hashable, Any] | ProducerOutput) -> ProducerOutput:
    """A producer's result for one post as a ProducerOutput (a plain mapping has no evidence)."""
    return output if isinstance(output, ProducerOutput) else ProducerOutput(values=output)


def bind_all(producers: Iterable[SignalProducer], context: ProducerContext) -> None:
    """Give every producer the deployment's context."""
    for producer in producers:
        traits_of(producer).bind(context)


class ProducerRegistry:
    """The producers a deployment knows, by name; explicit, never filled by an import."""

    def __init__(self, producers: Iterable[SignalProducer] = ()) -> None:
        self._producers: dict[str, SignalProducer] = {}
        self._traits: dict[str, Traits] = {}
        self._variables: dict[str, tuple[SignalProducer, Variable]] = {}
        for producer in producers:
            self.register(producer)

    def register(self, producer: SignalProducer) -> None:
        """Add `producer`; refuse a second producer of a name or of a variable."""
        if producer.name in self._producers:
            raise ValueError(f"a producer named {producer.name!r} is already registered")
        for variable in producer.variables:
            owner = self._variables.get(variable.name)
            if variable.name in RESERVED_VARIABLES or owner:
                taken = f"producer {owner[0].name!r}" if owner else "the post itself"
                raise ValueError(f"variable {variable.name!r} is already given by {taken}")
        unknown = [name for name in producer.after if name not in self._producers]
        if unknown:
            raise ValueError(f"{producer.name!r} reads {unknown}: register those first")
        self._producers[producer.name] = producer
        self._traits[producer.name] = traits_of(producer)
        for variable in producer.variables:
            self._variables[variable.name] = (producer, variable)

    def __iter__(self) -> Iterator[SignalProducer]:
        return iter(self._producers.values())

    def __contains__(self, name: object) -> bool:
        return name in self._producers

    def get(self, name: str) -> SignalProducer:
        """The producer registered as `name`."""
        return self._producers[name]

    def traits(self, name: str) -> Traits:
        """The traits of the producer registered as `name` (its own, or the defaults)."""
        return self._traits[name]

    def costs(self) -> list[Cost]:
        """The cost classes present, cheapest first: the planner's stages."""
        return sorted({producer.cost for producer in self})


def content_hash(producer: SignalProducer, job: ProducerJob) -> str:
    """sha256 of exactly what `producer` reads of the post (its declared inputs)."""
    digest = hashlib.sha256()
    post = job.post
    if Input.TEXT in producer.inputs:
        digest.update(b"t" + (post.text or "").encode("utf-8", "surrogatepass"))
    if Input.IMAGES in producer.inputs:
        for image in job.images:
            digest.update(b"i" + hashlib.sha256(image).digest())
    if Input.META in producer.inputs:
        digest.update(b"m" + json.dumps(post.meta, sort_keys=True, default=str).encode())
    if Input.SIGNALS in producer.inputs:
        for name in producer.after:
            values = sorted(job.signals.get(name, {}).items(), key=lambda kv: repr(kv[0]))
            digest.update(b"s" + repr(values).encode())
    return digest.hexdigest()


def request_key(request: Hashable) -> str:
    """A request as stable text (`repr`): the signal cache's keys and replay records use it."""
    return repr(request)


def cache_key(producer: SignalProducer, content: str, request: Hashable) -> str:
    """Content hash + producer + its version + the request (the prompt, for model tasks)."""
    material = json.dumps([producer.name, producer.version, content, request_key(request)])
    return "vlmod:signal:v2:" + hashlib.sha256(material.encode()).hexdigest()[:40]
