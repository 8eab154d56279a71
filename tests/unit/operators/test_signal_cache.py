"""SignalCache in process: a hit skips the model; a partial hit computes only the rest."""

from __future__ import annotations

import logging

import pytest

from operators.cache import SignalCache, decode_embedding, encode_embedding
from operators.tasks import ImageJob, ImageSignals, VlmOperator
from operators.work import model_key

QUESTIONS = {"gun": "Is there a gun?", "cat": "Is it a cat?"}
LABELS = {"violence": "violence"}


def _job(image, **extra):
    return ImageJob(image, labels=LABELS, questions=QUESTIONS, describe=True, embed=True, **extra)


def test_hit_skips_the_model(vlm, images, count_calls):
    operator = VlmOperator(vlm, cache=SignalCache.in_memory())
    first = operator.run([_job(image) for image in images])
    vision = count_calls(vlm.vision_tower)
    second = operator.run([_job(image) for image in images])
    assert vision.calls == 0
    for cold, warm in zip(first, second, strict=True):
        assert warm.answers == pytest.approx(cold.answers)
        assert warm.labels == pytest.approx(cold.labels)
        assert warm.description == cold.description
        assert warm.embedding == pytest.approx(cold.embedding)
        assert (warm.cache_hits, warm.cache_misses) == (5, 0)
        assert cold.cache_misses == 5


def test_partial_hit_computes_only_missing(vlm, images, count_calls):
    cache = SignalCache.in_memory()
    operator = VlmOperator(vlm, cache=cache)
    operator.run([ImageJob(images[0], questions={"gun": QUESTIONS["gun"]}, embed=True)])
    text_model = count_calls(_text_model(vlm))
    [signals] = operator.run([ImageJob(images[0], questions=QUESTIONS, embed=True)])
    assert (signals.cache_hits, signals.cache_misses) == (2, 1)
    assert text_model.calls == 2  # prefill + one row: only "cat" was computed
    [uncached] = VlmOperator(vlm).run([ImageJob(images[0], questions=QUESTIONS, embed=True)])
    assert signals.answers == pytest.approx(uncached.answers, abs=1e-5)


def test_keys_separate_models_images_and_texts(vlm, vlms):
    cache = SignalCache.in_memory(namespace="t")
    keys = {
        cache.key(model_key(vlms["smolvlm"]), "a" * 64, "p", "Is it?"),
        cache.key(model_key(vlms["llava"]), "a" * 64, "p", "Is it?"),
        cache.key(model_key(vlm), "b" * 64, "p", "Is it?"),
        cache.key(model_key(vlm), "b" * 64, "p", "Is it not?"),
        cache.key(model_key(vlm), "b" * 64, "e"),
    }
    assert len(keys) == 5
    assert all(key.startswith("t:") for key in keys)


class _BrokenStore:
    def __init__(self):
        self.calls = 0

    def get_many(self, keys):
        self.calls += 1
        raise ConnectionError("Redis is down")

    def set_many(self, items, ttl_s):
        self.calls += 1
        raise ConnectionError("Redis is down")


def test_broken_cache_costs_only_speed(vlm, images, caplog):
    cache = SignalCache.in_memory()
    store = _BrokenStore()
    cache._store = store
    cache.retry_after_s = 60.0
    with caplog.at_level(logging.WARNING, logger="operators.cache"):
        results = VlmOperator(vlm, cache=cache).run([_job(image) for image in images])
        again = VlmOperator(vlm, cache=cache).run([_job(image) for image in images])
    assert all(isinstance(result, ImageSignals) for result in results + again)
    assert cache.errors == 1 and store.calls == 1, "then bypassed until retry_after_s"
    assert len([r for r in caplog.records if "unavailable" in r.message]) == 1


def test_embedding_codec_round_trips_float32():
    values = [0.5, -1.25, 3.0e-3]
    assert decode_embedding(encode_embedding(values)) == pytest.approx(values, rel=1e-6)


def test_ttl_expires_entries(monkeypatch):
    import operators.cache as module

    cache = SignalCache.in_memory(ttl_s=10)
    clock = [1000.0]
    monkeypatch.setattr(module.time, "monotonic", lambda: clock[0])
    cache.set_many({"k": b"v"})
    assert cache.get_many(["k"]) == [b"v"]
    clock[0] += 11
    assert cache.get_many(["k"]) == [None]


def _text_model(vlm):
    inner = vlm.model.model
    return getattr(inner, "text_model", None) or inner.language_model
