"""Which tasks of a job still need the model, after the cache has answered what it could."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from enum import Enum

from operators.cache import (
    SignalCache,
    decode_embedding,
    decode_probability,
    encode_embedding,
    encode_probability,
)
from operators.jobs import ImageJob, ImageSignals
from operators.loading import Vlm


class TaskKind(Enum):
    """What one task row computes."""

    LABEL = "label"
    QUESTION = "question"
    DESCRIBE = "describe"


@dataclass(frozen=True)
class Task:
    """One row of model work: its kind, the caller's name for it, and the text after the image."""

    kind: TaskKind
    name: str
    text: str


@dataclass
class Work:
    """One job's pending work: the tasks and embedding the cache could not supply."""

    index: int
    job: ImageJob
    signals: ImageSignals
    tasks: list[Task] = field(default_factory=list)
    embed: bool = False


def job_tasks(vlm: Vlm, job: ImageJob) -> list[Task]:
    """The job's rows, worded with the spec's label and answer templates."""
    spec = vlm.spec
    tasks = [
        Task(TaskKind.LABEL, name, _yes_no(spec.label_question.format(label=text), vlm))
        for name, text in job.labels.items()
    ]
    tasks += [
        Task(TaskKind.QUESTION, name, _yes_no(text, vlm)) for name, text in job.questions.items()
    ]
    if job.describe:
        tasks.append(Task(TaskKind.DESCRIBE, "description", spec.describe_prompt))
    return tasks


def _yes_no(question: str, vlm: Vlm) -> str:
    return f"{question.strip()} {vlm.spec.answer_instruction}".strip()


def model_key(vlm: Vlm) -> str:
    """A short fingerprint of everything that changes an answer: checkpoint and prompt layout."""
    parts = [
        vlm.name,
        vlm.revision,
        str(vlm.model.dtype),
        vlm.layout.prefix,
        vlm.layout.suffix,
        vlm.spec.max_new_tokens,
    ]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:16]


def _task_key(cache: SignalCache, fingerprint: str, sha256: str, task: Task) -> str:
    kind = "d" if task.kind is TaskKind.DESCRIBE else "p"
    return cache.key(fingerprint, sha256, kind, task.text)


def plan_work(
    vlm: Vlm, cache: SignalCache | None, jobs: Sequence[tuple[int, ImageJob]]
) -> list[Work]:
    """Build each job's work; a cache fills in its hits and leaves the misses (one round trip)."""
    works = [
        Work(index, job, ImageSignals(job.image.sha256), job_tasks(vlm, job), job.embed)
        for index, job in jobs
    ]
    if cache is None:
        return works
    fingerprint = model_key(vlm)
    keys: list[str] = []
    for work in works:
        keys += [_task_key(cache, fingerprint, work.signals.sha256, task) for task in work.tasks]
        if work.embed:
            keys.append(cache.key(fingerprint, work.signals.sha256, "e"))
    values = iter(cache.get_many(keys))
    for work in works:
        _apply_hits(work, values)
    return works


def _apply_hits(work: Work, values: Iterator[bytes | None]) -> None:
    missing: list[Task] = []
    for task in work.tasks:
        value = next(values)
        if value is None:
            missing.append(task)
        elif task.kind is TaskKind.DESCRIBE:
            work.signals.description = value.decode("utf-8")
        elif task.kind is TaskKind.LABEL:
            work.signals.labels[task.name] = decode_probability(value)
        else:
            work.signals.answers[task.name] = decode_probability(value)
    if work.embed:
        value = next(values)
        if value is not None:
            work.signals.embedding = decode_embedding(value)
            work.embed = False
    asked = len(work.tasks) + int(work.job.embed)
    work.signals.cache_misses = len(missing) + int(work.embed)
    work.signals.cache_hits = asked - work.signals.cache_misses
    work.tasks = missing


def store_results(vlm: Vlm, cache: SignalCache | None, works: Sequence[Work]) -> None:
    """Write what the model just computed for these works; the cache never fails the batch."""
    if cache is None:
        return
    fingerprint = model_key(vlm)
    items: dict[str, bytes] = {}
    for work in works:
        signals = work.signals
        for task in work.tasks:
            items[_task_key(cache, fingerprint, signals.sha256, task)] = _task_value(signals, task)
        if work.embed and signals.embedding is not None:
            items[cache.key(fingerprint, signals.sha256, "e")] = encode_embedding(signals.embedding)
    cache.set_many(items)


def _task_value(signals: ImageSignals, task: Task) -> bytes:
    if task.kind is TaskKind.DESCRIBE:
        return (signals.description or "").encode("utf-8")
    if task.kind is TaskKind.LABEL:
        return encode_probability(signals.labels[task.name])
    return encode_probability(signals.answers[task.name])
