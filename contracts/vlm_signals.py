"""The vision-language model's signals as producers: labels, questions, a caption, an embedding.

All four run on the model replica, and one replica batch computes the tasks of all four
together (each image encoded once, each prompt prefix computed once), so their requests are
`VlmTask`s that the consumer ships as they are. A label or question is about each image
(`about: image`, the max over the post's images) or about the whole post (`about: post`: its
text and every image, in order, in one prompt):

    signals:
      questions:
        minor: "Does the image show a child?"          # about each image
        offsite_payment:
          ask: "Does this post ask the buyer to pay or talk outside the platform?"
          about: post                                   # the text and every image together
      labels:
        threat: {ask: "a threat of violence", about: post}

A label or question may name the model it is asked of (`model: large`, one of the pipeline's
`models:`); without one it goes to the default model (`model:`). The pipeline asks cheaper
models first, so a large model is asked only where a small one's answers left a rule open:

    questions:
      weapon: "Is there a weapon?"                          # the default model
      weapon_large: {ask: "Is there a weapon?", model: large}
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from functools import lru_cache
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    create_model,
    field_validator,
)

from contracts.producers import (
    Ask,
    Cost,
    Input,
    Placement,
    ProducerDefaults,
    ProducerJob,
    SignalProducer,
    Variable,
)
from contracts.vlm import DEFAULT_MODEL, About, TaskKind, VlmTask, empty_value

VLM_VERSION = "replica"  # the replica's own cache key carries the model and prompt fingerprint


class AskSpec(BaseModel):
    """A label or question with what it is about."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    ask: str = Field(..., min_length=1, description="The label text or the yes/no question.")
    about: About = Field(
        About.IMAGE,
        description="image: asked of each image, the max over images. post: the text and "
        "every image together, in one prompt.",
    )
    model: str = Field(
        DEFAULT_MODEL,
        description="The model asked: a name under the pipeline's `models:`, or `default` "
        "(`model:`). A model of a larger cost is asked only where cheaper ones left a rule open.",
    )


PromptSpec = str | AskSpec


def _prompt_form(value: Any) -> str:
    """Which form a prompt is written in, so an error names only that form's problem."""
    return "text" if isinstance(value, str) else "spec"


@lru_cache(maxsize=16)
def prompt_type(models: tuple[str, ...]) -> Any:
    """The type of one prompt: its text, or an AskSpec whose `model:` is one of `models`."""
    # The AskSpec class is built at run time, which a static checker cannot follow.
    spec = Annotated[ask_spec_for(models), Tag("spec")]  # type: ignore[valid-type]
    return Annotated[Annotated[str, Tag("text")] | spec, Discriminator(_prompt_form)]


@lru_cache(maxsize=16)
def ask_spec_for(models: tuple[str, ...]) -> type[AskSpec]:
    """AskSpec that accepts only `models` as `model:` (one class per set, so schemas are cached)."""

    def known(name: str) -> str:
        if name not in models:
            raise ValueError(f"unknown model {name!r}; the pipeline has {', '.join(models)}")
        return name

    validators = {"known_model": field_validator("model")(known)}
    return create_model("AskSpec", __base__=AskSpec, __validators__=validators)


class _ReplicaProducer(ProducerDefaults):
    """What the four model producers share: they run on the replica, in one batch."""

    name: str
    variables: tuple[Variable, ...]
    inputs = frozenset({Input.TEXT, Input.IMAGES})
    placement = Placement.REPLICA
    cost = Cost.MODEL
    version = VLM_VERSION
    after: tuple[str, ...] = ()

    def empty(self, request: Hashable) -> Any:
        """What the model gives a post with nothing to look at: 0.0, "", or []."""
        assert isinstance(request, VlmTask)
        return empty_value(request)

    def compute(self, jobs: Sequence[ProducerJob]) -> list[Mapping[Hashable, Any] | Exception]:
        """Never called: the consumer ships these requests to the model replica."""
        raise NotImplementedError("model tasks are computed by the replica pool")


class _PromptProducer(_ReplicaProducer):
    """Named prompts, each a label or a question about each image or the whole post.

    `models` are the names a prompt's `model:` may take: the pipeline's models.
    """

    kind: TaskKind

    def __init__(self, models: Sequence[str] = (DEFAULT_MODEL,)) -> None:
        self.models = tuple(models)
        # The prompt type is built at run time from the models: a static checker cannot follow.
        self.config: Any = dict[str, prompt_type(self.models)]  # type: ignore[misc]

    def asks(self, value: Mapping[str, PromptSpec]) -> list[Ask]:
        """One ask per named prompt."""
        variable = self.variables[0].name
        return [Ask(variable, name, self.task(spec)) for name, spec in value.items()]

    def task(self, spec: PromptSpec) -> VlmTask:
        """The model task a prompt asks for."""
        if isinstance(spec, str):
            return VlmTask(self.kind, spec.strip(), About.IMAGE)
        return VlmTask(self.kind, spec.ask.strip(), spec.about, spec.model)


class LabelSignals(_PromptProducer):
    """`signals.labels`: name -> label text; conditions read `labels.<name>` = P(label)."""

    name = "labels"
    kind = TaskKind.LABEL
    variables = (Variable("labels", "map(string, double)", keyed=True, item="label"),)


class QuestionSignals(_PromptProducer):
    """`signals.questions`: name -> yes/no question; conditions read `answers.<name>` = P(yes)."""

    name = "questions"
    kind = TaskKind.QUESTION
    variables = (Variable("answers", "map(string, double)", keyed=True, item="question"),)


class _FlagProducer(_ReplicaProducer):
    """`signals.<name>: true` asks for one value."""

    task: VlmTask
    config = bool

    def asks(self, value: bool) -> list[Ask]:
        """The one value, when switched on."""
        return [Ask(self.variables[0].name, None, self.task)] if value else []


class CaptionSignals(_FlagProducer):
    """`signals.describe: true`; conditions read `description`, the images' captions."""

    name = "describe"
    task = VlmTask(TaskKind.DESCRIBE)
    variables = (Variable("description", "string", description="captions of the images, joined"),)


class EmbeddingSignals(_FlagProducer):
    """`signals.embed: true`; `embedding` is the mean projected image embedding (cached)."""

    name = "embed"
    task = VlmTask(TaskKind.EMBED)
    variables = (Variable("embedding", "list(double)", description="mean image embedding"),)


# The post's own embedding (text and images in one prompt), computed by the `embed` producer's
# model: what heads score, and what review tasks carry with `review_embeddings: true`.
EMBED_PRODUCER = EmbeddingSignals.name
POST_EMBEDDING = VlmTask(TaskKind.EMBED, "", About.POST)


def vlm_producers(models: Sequence[str] = (DEFAULT_MODEL,)) -> list[SignalProducer]:
    """The model's four producers, in registration order; prompts may ask any of `models`."""
    return [LabelSignals(models), QuestionSignals(models), CaptionSignals(), EmbeddingSignals()]
