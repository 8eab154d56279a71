"""Similar posts and cluster decisions in a real browser (Debian chromium, Playwright) against a
console over real Tansu and Redis: a reviewer opens a task, sees its near-duplicates first (by
the post embeddings the tasks carry), ticks them and decides the cluster. Each task gets one
decision naming the held task; a ticked task another reviewer claimed meanwhile is left to them.

Every wait is on a condition with a deadline. A screenshot of the panel goes to test-artifacts/.
"""

from __future__ import annotations

import random
import re

from contracts.review import PostEmbedding, ReviewTask
from demo.harness import wait_until
from tests.integration.browsers import (
    ARTIFACTS,
    browser_fixture,  # noqa: F401 (a fixture)
    claim,
    contexts_fixture,  # noqa: F401 (a fixture)
    log_in,
)
from tests.integration.consoles import Client, read_records, review_task

MODEL = "tests/tiny-embedder"


def _embedded(task: ReviewTask, vector: list[float]) -> ReviewTask:
    return task.model_copy(update={"embedding": PostEmbedding(model=MODEL, vector=vector)})


def _near(base: list[float], rng: random.Random) -> list[float]:
    return [x + rng.gauss(0, 0.01) for x in base]


def test_a_reviewer_decides_a_wave_of_near_duplicates_at_once_and_each_task_once(
    start_console, contexts, password_hash
):
    grant = {"password_argon2": password_hash, "queues": ["spam"]}
    console = start_console(reviewers={name: grant for name in ("ana", "ben", "dee")})
    rng = random.Random(23)
    wave = [rng.gauss(0, 1) for _ in range(64)]
    # ben's claim takes the first (priority 1), ana's the next; dee later takes `taken`.
    bens, held, taken, open_one = (
        _embedded(review_task(text=f"cheap followers {n}", priority=p), _near(wave, rng))
        for n, p in ((1, 1), (2, 5), (3, 6), (4, 7))
    )
    unlike = [
        _embedded(review_task(text=f"a recipe {n}", priority=9), [rng.gauss(0, 1) for _ in wave])
        for n in range(2)
    ]
    console.publish(bens, held, taken, open_one, *unlike)
    ben, dee = Client(console), Client(console)
    ben.log_in("ben")
    assert ben.claim() == bens.key

    ana = log_in(contexts(), console, "ana")
    assert claim(ana, console) == held.key
    rows = ana.locator("#similar-tasks tbody tr")
    wait_until(lambda: rows.count() == 5, what="five similar tasks listed")
    keys = [rows.nth(i).get_attribute("data-similar-key") for i in range(5)]
    assert set(keys[:3]) == {bens.key, taken.key, open_one.key}, "the near-duplicates first"
    assert set(keys[3:]) == {task.key for task in unlike}
    texts = ana.locator("#similar-tasks .similar-state").all_inner_texts()
    states = dict(zip(keys, texts, strict=True))
    assert states[bens.key] == "claimed" and states[taken.key] == "open"
    boxes = ana.locator("#similar-tasks input[name=cluster]")
    assert boxes.count() == 4, "every waiting task is selectable; the one ben holds is not"
    ARTIFACTS.mkdir(exist_ok=True)
    ana.screenshot(path=str(ARTIFACTS / "review-similar-posts.png"), full_page=True)

    for key in (taken.key, open_one.key):
        ana.check(f"#similar-tasks input[value='{key}']")
    dee.log_in("dee")
    assert dee.claim() == taken.key, "claimed by another reviewer after ana ticked it"
    ana.select_option("#overturn-action", "allow")
    ana.click("#overturn")
    ana.wait_for_url(re.compile(r"done=overturn&cluster=1&left=1$"))
    assert ana.locator("#cluster-decided").inner_text() == "1"

    topic = console.config.decisions_topic
    decisions = read_records(console, topic, 2, settle_s=2.0)
    by_key = {decision["key"]: decision for decision in decisions}
    assert len(decisions) == len(by_key) == 2, "one decision per task"
    assert set(by_key) == {held.verdict.key, open_one.verdict.key}
    for decision in decisions:
        assert decision["cluster_of"] == held.key and decision["reviewer"] == "ana"
        assert (decision["decision"], decision["action"]) == ("overturn", "allow")
    assert console.store.states([taken.key, bens.key]) == {
        taken.key: "claimed",
        bens.key: "claimed",
    }, "the tasks other reviewers hold are theirs still"
