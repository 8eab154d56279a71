"""A post's model tasks: which are still open, what goes to a model, what comes back.

Pure functions over a `Journey`; `pipelines.gathering` calls the models with them.
"""

from __future__ import annotations

from collections.abc import Collection, Hashable, Sequence

from contracts.records import ProducerRun
from contracts.vlm import DEFAULT_MODEL, About, VlmTask, empty_value
from pipelines.journey import Journey
from pipelines.signal_records import InferenceRequest, InferenceResult


def open_requests(
    journey: Journey, producers: Sequence[str], models: Collection[str] | None = None
) -> frozenset[Hashable]:
    """Requests of `producers` in the journey's plan that are not computed yet.

    With `models`, only the model tasks that ask one of them.
    """
    plan, computed = journey.plan.requests, journey.computed
    found = [
        request
        for name in producers
        for request in plan.get(name, ())
        if (name, request) not in computed and (models is None or model_of(request) in models)
    ]
    return frozenset(found) if found else _NONE


def has_open_requests(
    journey: Journey, producers: Sequence[str], models: Collection[str] | None = None
) -> bool:
    """True when `open_requests` would find one (it stops at the first)."""
    plan, computed = journey.plan.requests, journey.computed
    return any(
        (name, request) not in computed and (models is None or model_of(request) in models)
        for name in producers
        for request in plan.get(name, ())
    )


_NONE: frozenset[Hashable] = frozenset()


def model_of(request: Hashable) -> str:
    """The model a request asks: a model task's own, else the default model."""
    return request.model if isinstance(request, VlmTask) else DEFAULT_MODEL


def record_model_runs(
    journey: Journey,
    replica: list[str],
    request: InferenceRequest,
    result: InferenceResult,
    ms: float,
    made: dict[tuple[str, bool], ProducerRun] | None = None,
) -> None:
    """Each model producer that had tasks in the post's replica call, sharing the call's time.

    `made` (one per call) lends the same record to every post of the call that has it alike.
    """
    cached = result.failure is None and result.cache_hits > 0 and result.cache_misses == 0
    for name in replica:
        planned = journey.plan.requests.get(name)
        if not planned or request.tasks.isdisjoint(planned):
            continue
        run = made.get((name, cached)) if made is not None else None
        if run is None:
            run = ProducerRun(name=name, ms=round(ms, 3), cached=cached)
            if made is not None:
                made[(name, cached)] = run
        journey.ran(run)


def inference_request(
    journey: Journey, replica: list[str], model: str, found_text: Sequence[str] = ()
) -> InferenceRequest:
    """The tasks for `model` that need a model: none about images when the post has none.

    The text is the post's, then any text found in it (`found_text` producers, e.g. OCR):
    all of it untrusted, all of it read by the tasks about the whole post.
    """
    post = journey.post
    assert post is not None
    tasks = frozenset(t for t in open_requests(journey, replica, {model}) if isinstance(t, VlmTask))
    if not post.images:
        tasks = frozenset(t for t in tasks if t.about is About.POST and post.text)
    return InferenceRequest(
        post_id=post.id,
        images=journey.images or (),
        tasks=tasks,
        text=with_found_text(post.text, journey, found_text),
        trace_headers=tuple(journey.trace_headers),
    )


FOUND_TEXT_HEADING = "\n\nText found in the images:\n"


def with_found_text(text: str | None, journey: Journey, found_text: Sequence[str]) -> str | None:
    """The post's text followed by what producers read in its images, when they ran."""
    found = [
        value
        for (name, _), value in journey.computed.items()
        if name in found_text and isinstance(value, str) and value.strip()
    ]
    if not found:
        return text
    return (text or "") + FOUND_TEXT_HEADING + "\n".join(found)


def answer_without_model(
    journey: Journey, replica: list[str], model: str, request: InferenceRequest
) -> None:
    """`model`'s tasks with nothing to look at (image tasks, on a post without) get empty values."""
    if journey.post is not None and journey.post.images:
        return  # every task goes to the model (`inference_request`)
    for name in replica:
        for task in open_requests(journey, [name], {model}):
            if isinstance(task, VlmTask) and task not in request.tasks:
                journey.computed[(name, task)] = empty_value(task)
