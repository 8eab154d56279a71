"""A replay of a JSONL history over several processes, with the report one process would give.

Every worker reads the whole file but decodes, groups and replays only the posts whose id hashes
to it (a hash of the id, modulo the workers), so all of a post's verdicts meet in one worker. A
line whose post id cannot be read goes to worker 0, which skips it with the reason as one
process would.
Counts add up; the problem lines and each candidate's sample of changed posts are the first
ones in file order, so they are merged by the line a post or a problem first appears on.

Workers are forked: they inherit the candidates and the reviewers' labels without pickling.
What a single process does differently is refused by the caller (`--limit`, which takes the
first N posts of the file; `--compute-missing`; `--to-queue`).
"""

from __future__ import annotations

import gc
import hashlib
import multiprocessing
import queue
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec

from policies.policy_set import PolicySet
from replay.history import History, group_posts, take_verdict, within
from replay.metrics import SAMPLE, Labels, PolicyChange, ReplayReport, RuleChange
from replay.run import replay_posts
from review.report_io import (
    SHOWN_PROBLEMS,
    RawRecord,
    RecordLimits,
    SourceEmpty,
    SourceRecords,
    numbered_lines,
    raw_records,
)

PROGRESS_EVERY = 2000  # posts a worker replays between reports to the parent
WAIT_S = 0.5  # how often the parent looks at the progress while it waits


class _PostId(msgspec.Struct):
    post_id: str


_POST_ID = msgspec.json.Decoder(_PostId)
# How the pipeline and `model_dump_json` write a verdict: its post id first, compact. Such a
# line's id is read without decoding the line; any other takes msgspec's decode.
_LEADING_ID = b'{"post_id":"'


def worker_of(line: bytes, workers: int) -> int:
    """The worker that takes this line: its post id's hash, or 0 when no id can be read (an
    oversized line is b"")."""
    if not line:
        return 0
    post_id = _post_id(line)
    if post_id is None:
        return 0
    digest = hashlib.blake2b(post_id, digest_size=8).digest()
    return int.from_bytes(digest, "big") % workers


def _post_id(line: bytes) -> bytes | None:
    """The line's post id as UTF-8, or None where the line has none to read."""
    if line.startswith(_LEADING_ID):
        end = line.find(b'"', len(_LEADING_ID))
        if end > 0 and b"\\" not in line[len(_LEADING_ID) : end]:
            return line[len(_LEADING_ID) : end]
    try:
        return _POST_ID.decode(line).post_id.encode()
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


@dataclass
class Share:
    """What one worker sends back: its report, where its problems and sampled posts first
    appeared (line numbers), and how many records it read and skipped."""

    report: ReplayReport
    problems: list[tuple[int, str]] = field(default_factory=list)
    skipped: int = 0
    records: int = 0
    first_lines: dict[str, int] = field(default_factory=dict)  # sampled post id -> line


@dataclass(frozen=True)
class Job:
    """A replay to share out: everything a worker needs, inherited through fork."""

    path: str
    policies: PolicySet
    labels: Labels
    limits: RecordLimits
    window: tuple[datetime | None, datetime | None]
    workers: int
    decide_unchanged: bool


_JOB: Job | None = None  # set in the parent just before the workers fork


def replay_file(
    job: Job, progress: Callable[[int], None] | None = None
) -> tuple[ReplayReport, SourceRecords[Any]]:
    """The merged report of `job`, and the history's read (problem lines, counts skipped)."""
    global _JOB
    # An unreadable file is refused here, in the parent, with the reason one process gives.
    next(raw_records(job.path, None, job.limits)[1], None)
    context = multiprocessing.get_context("fork")
    results: Any = context.Queue()
    done = context.Array("q", job.workers)
    _JOB = job
    # The parent's objects move to a generation the collector leaves alone, so that a worker's
    # collections do not touch (and copy) every page it inherited.
    gc.freeze()
    try:
        processes = [
            context.Process(target=_work, args=(index, results, done), daemon=True)
            for index in range(job.workers)
        ]
        for process in processes:
            process.start()
    finally:
        _JOB = None
        gc.unfreeze()
    shares = _collect(results, processes, done, progress)
    for process in processes:
        process.join()
    return _merged(job, shares)


def _collect(
    results: Any, processes: list[Any], done: Any, progress: Callable[[int], None] | None
) -> list[Share]:
    """Each worker's share (in worker order), reporting progress while they work."""
    shares: dict[int, Share] = {}
    while len(shares) < len(processes):
        try:
            index, share = results.get(timeout=WAIT_S)
        except queue.Empty:
            dead = [p for i, p in enumerate(processes) if i not in shares and not p.is_alive()]
            if dead and results.empty():
                raise RuntimeError(
                    f"a replay worker stopped with exit code {dead[0].exitcode}"
                ) from None
        else:
            if isinstance(share, BaseException):
                raise share
            shares[index] = share
        if progress is not None:
            progress(sum(done[:]))
    return [shares[index] for index in range(len(processes))]


def _work(index: int, results: Any, done: Any) -> None:
    """One worker: its posts read, grouped, replayed and counted; its share put on `results`."""
    job = _JOB
    assert job is not None
    try:
        results.put((index, _share(job, index, done)))
    except BaseException as error:
        results.put((index, error))


def _share(job: Job, index: int, done: Any) -> Share:
    """Worker `index`'s share of the replay."""
    share = Share(ReplayReport())
    history, first_lines = _read_share(job, index, share)
    posts = within(group_posts(history.read.records, None, None), *job.window)
    every = PROGRESS_EVERY

    def progress(count: int) -> None:
        done[index] = count

    share.report = replay_posts(
        posts,
        job.policies,
        job.labels,
        progress=progress,
        every=every,
        decide_unchanged=job.decide_unchanged,
    )
    sampled = {
        changed.post_id for change in share.report.policies.values() for changed in change.sample
    }
    share.first_lines = {post_id: first_lines[post_id] for post_id in sampled}
    return share


def _read_share(job: Job, index: int, share: Share) -> tuple[History, dict[str, int]]:
    """This worker's verdicts of the file, and the line each of its posts first appears on."""
    history = History(SourceRecords[Any](job.path))
    read = history.read
    first_lines: dict[str, int] = {}
    workers, limits = job.workers, job.limits
    for number, line, size in numbered_lines(Path(job.path), limits.max_bytes):
        if worker_of(line, workers) != index:
            continue
        skipped = read.skipped
        take_verdict(history, RawRecord(f"{job.path}:{number}", line, size), limits)
        if read.skipped > skipped:
            if read.problems:
                share.problems.append((number, read.problems.pop()))
            continue
        first_lines.setdefault(read.records[-1].post_id, number)
    share.skipped, share.records = read.skipped, len(read.records)
    return history, first_lines


def _merged(job: Job, shares: list[Share]) -> tuple[ReplayReport, SourceRecords[Any]]:
    """One report from the workers' shares, and the history's read as one process saw it."""
    read = SourceRecords[Any](job.path)  # the name one process gives a file
    read.skipped = sum(share.skipped for share in shares)
    problems = sorted(problem for share in shares for problem in share.problems)
    read.problems = [text for _, text in problems[:SHOWN_PROBLEMS]]
    # Only their number is read from here on (`problem_lines`' total).
    read.records = [None] * sum(share.records for share in shares)
    if not read.records:
        raise SourceEmpty([*read.problem_lines(), f"{read.source}: no verdicts in it"])
    report = ReplayReport(policies={name: PolicyChange() for name in shares[0].report.policies})
    for share in shares:
        _add_report(report, share.report)
    for name, change in report.policies.items():
        change.sample = _first_changed(name, shares)
    return report, read


def _add_report(total: ReplayReport, part: ReplayReport) -> None:
    """Add `part`'s counts into `total` (samples are merged apart)."""
    total.posts += part.posts
    total.not_replayable += part.not_replayable
    total.reasons.update(part.reasons)
    for name, change in part.policies.items():
        _add_change(total.policies[name], change)


def _add_change(total: PolicyChange, part: PolicyChange) -> None:
    for counter in (
        "replayed",
        "changed",
        "unrecorded",
        "not_replayable_posts",
        "unlabelled_exposure",
        "overrides",
    ):
        setattr(total, counter, getattr(total, counter) + getattr(part, counter))
    total.not_replayable.update(part.not_replayable)
    total.transitions.update(part.transitions)
    for rule_id, rule in part.rules.items():
        _add_rule(total.rule(rule_id), rule)


def _add_rule(total: RuleChange, part: RuleChange) -> None:
    for name in RuleChange.__dataclass_fields__:
        setattr(total, name, getattr(total, name) + getattr(part, name))


def _first_changed(name: str, shares: list[Share]) -> list[Any]:
    """The candidate's first SAMPLE changed posts in file order, over every worker."""
    changed = [
        (share.first_lines[post.post_id], post)
        for share in shares
        for post in share.report.policies[name].sample
    ]
    return [post for _, post in sorted(changed, key=lambda pair: pair[0])[:SAMPLE]]
