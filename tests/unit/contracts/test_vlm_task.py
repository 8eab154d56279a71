"""`VlmTask`: one instance per value in a process, however a task is made, so that tasks key
values by identity and a task from a replica finds the value the consumer asked for."""

from __future__ import annotations

import copy
import dataclasses
import pickle
import threading

import pytest

from contracts.vlm import About, TaskKind, VlmTask


def test_the_same_fields_give_the_same_task_however_it_is_made():
    task = VlmTask(TaskKind.QUESTION, "Is it for sale?", About.POST, "judge")
    assert VlmTask("question", "Is it for sale?", "post", "judge") is task
    assert pickle.loads(pickle.dumps(task)) is task
    assert copy.copy(task) is task and copy.deepcopy(task) is task
    assert dataclasses.replace(task, model="judge") is task
    assert {task: 0.9}[VlmTask(TaskKind.QUESTION, "Is it for sale?", About.POST, "judge")] == 0.9


def test_any_field_that_differs_makes_another_task():
    task = VlmTask(TaskKind.LABEL, "spam")
    others = [
        VlmTask(TaskKind.QUESTION, "spam"),
        VlmTask(TaskKind.LABEL, "spam "),
        VlmTask(TaskKind.LABEL, "spam", About.POST),
        VlmTask(TaskKind.LABEL, "spam", model="judge"),
        dataclasses.replace(task, prompt="ham"),
    ]
    assert all(other is not task and other != task for other in others)
    assert len({task, *others}) == 6


def test_fields_keep_their_types_and_stay_frozen():
    task = VlmTask("describe")
    assert task.kind is TaskKind.DESCRIBE and task.about is About.IMAGE
    assert repr(task) == (
        "VlmTask(kind=<TaskKind.DESCRIBE: 'describe'>, prompt='', about=<About.IMAGE: 'image'>, "
        "model='default')"
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        task.prompt = "changed"  # type: ignore[misc]  # the test is that it refuses
    with pytest.raises(ValueError, match="'guess' is not a valid TaskKind"):
        VlmTask("guess")


def test_threads_making_one_task_at_once_get_one_instance():
    made: list[VlmTask] = []
    start = threading.Barrier(8)

    def make() -> None:
        start.wait()
        made.append(VlmTask(TaskKind.LABEL, "made by eight threads at once"))

    threads = [threading.Thread(target=make) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(made) == 8 and all(task is made[0] for task in made)
