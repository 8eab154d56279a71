"""run_posts: one prompt per post (text + every image) next to per-image tasks, in one batch."""

from __future__ import annotations

import dataclasses

import pytest

from operators.cache import SignalCache
from operators.exceptions import ImagePreprocessError, UnsupportedTask
from operators.jobs import About, ImageJob, PostJob, PostSignals, TaskKind, VlmTask
from operators.tasks import VlmOperator
from operators.work import model_key
from tests.unit.operators.reference import plain_probability

SPAM = VlmTask(
    TaskKind.QUESTION, "Does this post ask the buyer to pay off the platform?", About.POST
)
THREAT = VlmTask(TaskKind.LABEL, "a threat of violence", About.POST)
WEAPON = VlmTask(TaskKind.QUESTION, "Is there a weapon?")
VIOLENCE = VlmTask(TaskKind.LABEL, "violence")
DESCRIBE = VlmTask(TaskKind.DESCRIBE)
EMBED = VlmTask(TaskKind.EMBED)
SHORT_TEXT = "Selling my old bike, DM me on the other app and pay there."
LONG_TEXT = "the quick brown fox jumps over the lazy dog " * 200  # past max_text_tokens


@pytest.mark.parametrize("count", [0, 1, 3])
@pytest.mark.parametrize("text", [SHORT_TEXT, LONG_TEXT], ids=["short", "long"])
def test_post_question_matches_a_plain_forward(vlm, images, count, text):
    job = PostJob(tuple(images[:count]), text, (SPAM, THREAT, WEAPON))
    [signals] = VlmOperator(vlm).run_posts([job])
    assert (signals.text_tokens_cut > 0) == (text == LONG_TEXT)
    for task in (SPAM, THREAT):
        expected = plain_probability(vlm, images[:count], text, task)
        assert signals.values[task] == pytest.approx(expected, abs=1e-4)


def test_post_without_text_matches_a_plain_forward(vlm, images):
    [signals] = VlmOperator(vlm).run_posts([PostJob(tuple(images[:2]), None, (SPAM,))])
    expected = plain_probability(vlm, images[:2], None, SPAM)
    assert signals.values[SPAM] == pytest.approx(expected, abs=1e-4)


def test_an_image_twice_in_a_post_fills_both_places(vlm, images):
    job = PostJob((images[0], images[1], images[0]), SHORT_TEXT, (SPAM,))
    [signals] = VlmOperator(vlm).run_posts([job])
    expected = plain_probability(vlm, job.images, SHORT_TEXT, SPAM)
    assert signals.values[SPAM] == pytest.approx(expected, abs=1e-4)


def test_post_label_uses_the_post_wording(vlm, images):
    wording = vlm.spec.post_label_question.format(label=THREAT.prompt)
    question = VlmTask(TaskKind.QUESTION, wording, About.POST)
    [signals] = VlmOperator(vlm).run_posts(
        [PostJob(tuple(images[:1]), SHORT_TEXT, (THREAT, question))]
    )
    assert signals.values[THREAT] == pytest.approx(signals.values[question], abs=1e-5)


def test_image_level_tasks_are_what_image_jobs_give(vlm, images):
    """About IMAGE: max over the images, captions joined, embeddings averaged."""
    operator = VlmOperator(vlm)
    tasks = (WEAPON, VIOLENCE, DESCRIBE, EMBED)
    [post] = operator.run_posts([PostJob(tuple(images[:2]), SHORT_TEXT, tasks)])
    alone = operator.run(
        [ImageJob(i, {"v": "violence"}, {"w": WEAPON.prompt}, True, True) for i in images[:2]]
    )
    assert post.values[WEAPON] == pytest.approx(max(a.answers["w"] for a in alone), abs=1e-5)
    assert post.values[VIOLENCE] == pytest.approx(max(a.labels["v"] for a in alone), abs=1e-5)
    assert post.values[DESCRIBE] == " | ".join(a.description for a in alone if a.description)
    mean = [sum(column) / 2 for column in zip(*(a.embedding for a in alone), strict=True)]
    assert post.values[EMBED] == pytest.approx(mean, abs=1e-5)


def test_mixed_batch_equals_each_post_alone(vlm, images):
    operator = VlmOperator(vlm)
    jobs = [
        PostJob(tuple(images[:2]), SHORT_TEXT, (SPAM, WEAPON, DESCRIBE)),
        PostJob((images[2],), None, (WEAPON, THREAT, EMBED)),
        PostJob((), "text only, no picture", (SPAM, THREAT, WEAPON)),
        PostJob(tuple(images[1:4]), LONG_TEXT, (THREAT, VIOLENCE)),
    ]
    batched = operator.run_posts(jobs)
    for job, together in zip(jobs, batched, strict=True):
        [alone] = operator.run_posts([job])
        assert together.text_tokens_cut == alone.text_tokens_cut
        for task in job.tasks:
            if task.kind is TaskKind.DESCRIBE:
                assert together.values[task] == alone.values[task]
            else:
                assert together.values[task] == pytest.approx(alone.values[task], abs=1e-4)


def test_one_vision_encode_per_unique_image(vlm, images, count_calls):
    """Two posts share an image; image- and post-level prefixes all take the one encoding."""
    vision = count_calls(vlm.vision_tower)
    jobs = [
        PostJob((images[0], images[1]), "first post", (WEAPON, SPAM, EMBED)),
        PostJob((images[1], images[2]), "second post", (WEAPON, THREAT, DESCRIBE)),
    ]
    results = VlmOperator(vlm).run_posts(jobs)
    assert all(isinstance(result, PostSignals) for result in results)
    assert vision.calls == 1
    assert vision.images == 3


def test_text_only_post_runs_the_language_model_alone(vlm, count_calls):
    vision = count_calls(vlm.vision_tower)
    text_model = count_calls(_text_model(vlm))
    tasks = (SPAM, THREAT, WEAPON, DESCRIBE, EMBED)
    [signals] = VlmOperator(vlm).run_posts([PostJob((), SHORT_TEXT, tasks)])
    assert vision.calls == 0
    assert text_model.calls == 2  # one prefill, one batched pass over both questions
    assert 0.0 < signals.values[SPAM] < 1.0
    assert (signals.values[WEAPON], signals.values[DESCRIBE], signals.values[EMBED]) == (
        0.0,
        "",
        [],
    )


@pytest.mark.parametrize("text", [None, "", "   \n"])
def test_post_with_nothing_costs_no_model_call(vlm, count_calls, text):
    text_model = count_calls(_text_model(vlm))
    [signals] = VlmOperator(vlm).run_posts([PostJob((), text, (SPAM, WEAPON, DESCRIBE, EMBED))])
    assert text_model.calls == 0
    assert signals.values == {SPAM: 0.0, WEAPON: 0.0, DESCRIBE: "", EMBED: []}


def test_repeated_post_question_is_a_cache_hit(vlm, images, count_calls):
    operator = VlmOperator(vlm, SignalCache.in_memory())
    job = PostJob(tuple(images[:2]), SHORT_TEXT, (SPAM, THREAT))
    [cold] = operator.run_posts([job])
    text_model = count_calls(_text_model(vlm))
    vision = count_calls(vlm.vision_tower)
    [warm] = operator.run_posts([job])
    assert text_model.calls == vision.calls == 0
    assert warm.values == pytest.approx(cold.values)
    assert (cold.cache_hits, cold.cache_misses) == (0, 2)
    assert (warm.cache_hits, warm.cache_misses) == (2, 0)


def test_post_key_covers_text_and_image_order(vlm, images):
    operator = VlmOperator(vlm, SignalCache.in_memory())
    operator.run_posts([PostJob((images[0], images[1]), SHORT_TEXT, (SPAM,))])
    others = [
        PostJob((images[1], images[0]), SHORT_TEXT, (SPAM,)),
        PostJob((images[0], images[1]), SHORT_TEXT + "!", (SPAM,)),
        PostJob((images[0],), SHORT_TEXT, (SPAM,)),
    ]
    assert all(result.cache_misses == 1 for result in operator.run_posts(others))


def test_model_key_covers_the_post_prompt(vlm):
    budget = dataclasses.replace(vlm, spec=vlm.spec.replaced(max_text_tokens=64))
    wording = dataclasses.replace(
        vlm, spec=vlm.spec.replaced(post_label_question="Is {label} in this post?")
    )
    assert len({model_key(vlm), model_key(budget), model_key(wording)}) == 3


def test_a_bad_image_fails_only_its_post(vlm, images, degenerate_image):
    operator = VlmOperator(vlm)
    jobs = [
        PostJob((images[0], degenerate_image), SHORT_TEXT, (SPAM, WEAPON)),
        PostJob((images[0],), SHORT_TEXT, (SPAM, WEAPON)),
    ]
    bad, good = operator.run_posts(jobs)
    assert isinstance(bad, ImagePreprocessError)
    [alone] = operator.run_posts(jobs[1:])
    assert good.values == pytest.approx(alone.values, abs=1e-4)


def test_tasks_spelled_as_plain_strings_are_the_same_tasks(vlm, images):
    """A task that crossed a wire as strings keys the same value as the enum-built one."""
    plain = VlmTask("question", SPAM.prompt, "post")
    [signals] = VlmOperator(vlm).run_posts([PostJob((images[0],), SHORT_TEXT, (plain, EMBED))])
    [reference] = VlmOperator(vlm).run_posts([PostJob((images[0],), SHORT_TEXT, (SPAM, EMBED))])
    assert signals.values[SPAM] == pytest.approx(reference.values[SPAM], abs=1e-6)
    assert signals.values[EMBED] == pytest.approx(reference.values[EMBED], abs=1e-6)


def test_caption_about_the_post_is_refused_as_a_value(vlm, images):
    job = PostJob((images[0],), SHORT_TEXT, (VlmTask(TaskKind.DESCRIBE, "", About.POST),))
    [result] = VlmOperator(vlm).run_posts([job])
    assert isinstance(result, UnsupportedTask)
    assert result.stage == "infer"


def test_chunks_respect_max_rows_per_forward(vlm, images, monkeypatch):
    from operators import tasks

    small = dataclasses.replace(vlm, spec=vlm.spec.replaced(max_rows_per_forward=3))
    seen = []
    real = tasks.run_forward

    def spy(vlm_, prefix, rows, embed, steps=None):
        seen.append(rows.size)
        return real(vlm_, prefix, rows, embed, steps)

    monkeypatch.setattr(tasks, "run_forward", spy)
    jobs = [PostJob((image,), SHORT_TEXT, (SPAM, WEAPON)) for image in images]
    chunked = VlmOperator(small).run_posts(jobs)
    assert len(seen) > 1 and max(seen) <= 3
    monkeypatch.setattr(tasks, "run_forward", real)
    whole = VlmOperator(vlm).run_posts(jobs)
    for a, b in zip(chunked, whole, strict=True):
        assert a.values == pytest.approx(b.values, abs=1e-4)


def test_chunks_group_posts_of_similar_prompt_length(vlm, images, monkeypatch):
    """Text-only posts and image posts, interleaved, go to separate forwards."""
    from operators import tasks

    small = dataclasses.replace(vlm, spec=vlm.spec.replaced(max_rows_per_forward=2))
    forwards = []
    real = tasks.run_forward

    def spy(vlm_, prefix, rows, embed, steps=None):
        forwards.append(sorted({int(n) for n in prefix.attention_mask.sum(dim=1)}))
        return real(vlm_, prefix, rows, embed, steps)

    monkeypatch.setattr(tasks, "run_forward", spy)
    text_only = PostJob((), SHORT_TEXT, (SPAM,))
    jobs = [job for image in images[:2] for job in (text_only, PostJob((image,), None, (WEAPON,)))]
    results = VlmOperator(small).run_posts(jobs)
    # Unsorted, each forward would hold one text post and one image post.
    assert len(forwards) == 2 and all(len(lengths) == 1 for lengths in forwards), forwards
    monkeypatch.setattr(tasks, "run_forward", real)
    for job, result in zip(jobs, results, strict=True):
        [alone] = VlmOperator(vlm).run_posts([job])
        assert result.values == pytest.approx(alone.values, abs=1e-4)


def _text_model(vlm):
    inner = vlm.model.model
    return getattr(inner, "text_model", None) or inner.language_model
