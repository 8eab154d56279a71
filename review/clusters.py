"""Deciding a cluster: one reviewer's decision on a task, applied to similar waiting tasks.

On the task page a reviewer ticks similar tasks (`review.similar_tasks`) and upholds or
overturns. The task they hold is decided as ever; then each ticked task is leased to them
(`TaskStore.claim_key`: never one another reviewer holds, one decided already, or a review they
may not take) and decided with the same final action: upheld where its verdict already has
that action, overturned to it otherwise. Every task gets its own `ReviewDecision`, each with
`cluster_of` naming the task the reviewer held. A task that cannot be had is left as it was and
named with the reason; the others are decided all the same.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from contracts.records import Action
from contracts.review import DecisionKind, ReviewTask
from review.decision_build import DecisionChoice, DecisionInvalid
from review.decisions import DecisionDesk, Submitted
from review.task_meta import TaskStage
from review.tasks import AlreadyDecided, LeaseLost, TaskStore

MAX_CLUSTER = 50  # ticked tasks one decision takes; the panel lists fewer
DECIDED_ALONE = frozenset({TaskStage.APPEAL, TaskStage.ADJUDICATION})


@dataclass(frozen=True)
class ClusterDecided:
    """What a cluster decision did: the held task's decision, the others decided, the refused."""

    first: Submitted | None
    decided: tuple[str, ...] = ()
    refused: tuple[tuple[str, str], ...] = ()  # (task key, why)


def cluster_action(task: ReviewTask, choice: DecisionChoice) -> Action:
    """The final action a cluster decision gives every task: the held task's, as decided."""
    if choice.kind == DecisionKind.UPHOLD:
        return task.verdict.action
    if choice.kind == DecisionKind.OVERTURN and choice.action is not None:
        return choice.action
    raise DecisionInvalid("similar tasks are decided with uphold or overturn, not " + choice.kind)


def member_choice(task: ReviewTask, action: Action, note: str | None, first: str) -> DecisionChoice:
    """The choice that gives `task` the final `action`: uphold when its verdict has it."""
    if task.verdict.action == action:
        return DecisionChoice(DecisionKind.UPHOLD, note=note, cluster_of=first)
    return DecisionChoice(DecisionKind.OVERTURN, action, note=note, cluster_of=first)


def decide_cluster(
    desk: DecisionDesk,
    store: TaskStore,
    first: ReviewTask,
    members: Sequence[str],
    reviewer: str,
    choice: DecisionChoice,
    may_work: Callable[[str], bool],
) -> ClusterDecided:
    """Decide `first` (held by `reviewer`), then each of `members` with the same final action."""
    members = [key for key in dict.fromkeys(members) if key != first.key]
    if len(members) > MAX_CLUSTER:
        raise DecisionInvalid(f"{len(members)} similar tasks ticked; at most {MAX_CLUSTER} at once")
    action = cluster_action(first, choice)
    submitted = desk.submit(first.key, reviewer, replace(choice, cluster_of=first.key))
    decided, refused = [], []
    choose = member_choice_for(action, choice, first)
    for key in members:
        why = _decide_member(desk, store, key, reviewer, choose, may_work)
        if why is None:
            decided.append(key)
        else:
            refused.append((key, why))
    return ClusterDecided(submitted, tuple(decided), tuple(refused))


def member_choice_for(
    action: Action, choice: DecisionChoice, first: ReviewTask
) -> Callable[[ReviewTask], DecisionChoice]:
    """Each member's choice, from the cluster's action and note."""
    return lambda task: member_choice(task, action, choice.note, first.key)


def _decide_member(
    desk: DecisionDesk,
    store: TaskStore,
    key: str,
    reviewer: str,
    choose: Callable[[ReviewTask], DecisionChoice],
    may_work: Callable[[str], bool],
) -> str | None:
    """None once `key` is decided; else why it was left as it was."""
    task = store.get(key)
    if task is None:
        return "not a known task"
    if not may_work(task.queue):
        return f"in queue {task.queue}, which you do not work"
    meta = store.meta(key)
    if meta is not None and meta.stage in DECIDED_ALONE:
        return f"an {meta.stage.value} is decided on its own"
    try:
        store.claim_key(key, reviewer)
        desk.submit(key, reviewer, choose(task))
    except (LeaseLost, AlreadyDecided, DecisionInvalid) as error:
        return error.reason
    return None
