"""Replay: decide recorded posts again with candidate policies, and measure what would change.

- `history.read_history`: verdicts (the first of a post carries its `PostRecord`) from a JSONL
  file, a topic or the PostgreSQL sink, grouped by post (`RecordedPost`).
- `engine.Replayer`: one post decided again by every candidate, from its record alone; a value
  the record lacks that could change a decision makes the post not replayable, with the reason.
  `fast` and `terms` give the policy engine's outcome without a CEL environment per post.
- `compute.MissingValues`: `--compute-missing`, values computed through the pipeline's gatherer.
- `metrics`: transitions, overrides, exposure and per-rule precision against reviewers.
- `run.replay_posts`, `render`: the whole replay, as JSON or a summary.
- `sample.StratifiedSample`, `to_queue`: `--to-queue`, a stratified sample of the changed posts
  as replay-QA review tasks, whose decisions `metrics.labels_from` reads as labels.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from contracts.lazy import lazy_exports

if TYPE_CHECKING:
    from replay.compute import MissingValues
    from replay.engine import PostReplay, Replayer
    from replay.history import RecordedPost, group_posts, read_history
    from replay.metrics import Labels, ReplayReport, labels_from, wilson
    from replay.render import render_json, render_text
    from replay.run import replay_posts
    from replay.sample import StratifiedSample, allocate, replay_key
    from replay.to_queue import publish, replay_task

__all__ = [
    "Labels",
    "MissingValues",
    "PostReplay",
    "RecordedPost",
    "ReplayReport",
    "Replayer",
    "StratifiedSample",
    "allocate",
    "group_posts",
    "labels_from",
    "publish",
    "read_history",
    "render_json",
    "render_text",
    "replay_key",
    "replay_posts",
    "replay_task",
    "wilson",
]
__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "replay.compute": ["MissingValues"],
        "replay.engine": ["PostReplay", "Replayer"],
        "replay.history": ["RecordedPost", "group_posts", "read_history"],
        "replay.metrics": ["Labels", "ReplayReport", "labels_from", "wilson"],
        "replay.render": ["render_json", "render_text"],
        "replay.run": ["replay_posts"],
        "replay.sample": ["StratifiedSample", "allocate", "replay_key"],
        "replay.to_queue": ["publish", "replay_task"],
    },
)
